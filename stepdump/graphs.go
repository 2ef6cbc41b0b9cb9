package stepdump

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"
)

// Graph geometry: the plot area sits inside margins for the axes.
const (
	grWidth  = 960
	grHalf   = 475 // two graphs side by side
	grLeft   = 90
	grRight  = 30
	grTop    = 34
	grBottom = 44
	grSeqH   = 300
	grIOH    = 200
	grLatH   = 200
	grLatBin = 40 // bars of the latency histogram
)

// WriteHTML writes the graphs of every connection as one self-contained
// page of inline SVG. The connections share their axes (time from each
// one's first message, bytes, bytes per second, latency), so that a
// faster transfer is a steeper curve next to a slower one.
func (tl *Timeline) WriteHTML(w io.Writer, title string) error {
	var b strings.Builder
	t := html.EscapeString(title)
	fmt.Fprintf(&b, `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>STEP over time: %s</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;background:#fafafa;color:#222}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 6px} h3{font-size:13px;margin:12px 0 2px;color:#444}
p.meta{margin:0 0 8px;color:#555;font-size:13px}
.pair{display:flex;gap:10px;width:960px}.pair>div{flex:1}
.graph{display:block;background:#fff;border:1px solid #ddd;border-radius:6px;margin:0 0 8px}
.axis{stroke:#444;stroke-width:1}
.grid{stroke:#e4e4e4;stroke-width:1}
.tick{font-size:11px;fill:#555;font-family:ui-monospace,Menlo,Consolas,monospace}
.axlbl{font-size:12px;fill:#333}
.seq-sent{stroke:#1f6fb2;stroke-width:2;fill:none}
.seq-acked{stroke:#2c8a3c;stroke-width:2;fill:none}
.inflight{fill:#f4a261;fill-opacity:0.55;stroke:none}
.io-up{fill:#1f6fb2}
.io-down{fill:#2c8a3c}
.lat{fill:#7b5ea7}
.pct{stroke:#c62828;stroke-width:1.5;stroke-dasharray:4 3}
.pcttxt{font-size:11px;fill:#c62828;font-family:ui-monospace,Menlo,Consolas,monospace}
.key{font-size:12px}
</style></head><body>
<h1>STEP over time</h1><p class="meta">%s · per connection: requests sent and answered (the shaded gap is what is in flight), bytes per second, and how long answers took · the connections share their axes</p>
`, t, t)
	conns := tl.sorted()
	if len(conns) == 0 {
		b.WriteString("<p>No STEP connection in this capture.</p>\n")
	}
	sc := tl.scales(conns)
	for _, ct := range conns {
		ct.writeHTML(&b, sc)
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// scales are the axes the connections share.
type scales struct {
	dur           time.Duration
	bytes         int64
	rate          float64
	latLo, latHi  float64 // log10 of seconds
	haveLatencies bool
}

func (tl *Timeline) scales(conns []*connTimeline) scales {
	s := scales{dur: time.Millisecond, bytes: 1, rate: 1, latLo: math.Inf(1), latHi: math.Inf(-1)}
	for _, ct := range conns {
		s.dur = max(s.dur, ct.last.Sub(ct.first))
		s.bytes = max(s.bytes, ct.sent)
		for _, bin := range ct.bins {
			s.rate = max(s.rate, float64(bin.up+bin.down)/ct.binWidth.Seconds())
		}
		if ct.lat.n > 0 {
			s.haveLatencies = true
			s.latLo = math.Min(s.latLo, math.Log10(max(ct.lat.min, time.Microsecond).Seconds()))
			s.latHi = math.Max(s.latHi, math.Log10(max(ct.lat.max, time.Microsecond).Seconds()))
		}
	}
	if s.haveLatencies {
		// A decade at least, so that one latency is not a wall.
		mid := (s.latLo + s.latHi) / 2
		if s.latHi-s.latLo < 1 {
			s.latLo, s.latHi = mid-0.5, mid+0.5
		}
		pad := (s.latHi - s.latLo) * 0.03
		s.latLo, s.latHi = s.latLo-pad, s.latHi+pad
	}
	return s
}

// plot maps data to the pixels of one graph.
type plot struct {
	w, h           int
	x0, x1, y0, y1 float64 // data ranges
}

func (p plot) px(x float64) float64 {
	return grLeft + (x-p.x0)/(p.x1-p.x0)*float64(p.w-grLeft-grRight)
}

func (p plot) py(y float64) float64 {
	return float64(p.h-grBottom) - (y-p.y0)/(p.y1-p.y0)*float64(p.h-grTop-grBottom)
}

// frame draws the axes, grid and ticks; xs and ys format the tick values.
func (p plot) frame(b *strings.Builder, xlabel, ylabel string, xs, ys func(float64) string, logX bool) {
	bottom, top := float64(p.h-grBottom), float64(grTop)
	left, right := float64(grLeft), float64(p.w-grRight)
	var xt []float64
	if logX {
		for e := math.Ceil(p.x0); e <= p.x1; e++ {
			xt = append(xt, e)
		}
	} else {
		xt = niceTicks(p.x0, p.x1, p.w/120)
	}
	for _, x := range xt {
		fmt.Fprintf(b, `<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/><text class="tick" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`,
			p.px(x), top, p.px(x), bottom, p.px(x), bottom+16, html.EscapeString(xs(x)))
	}
	for _, y := range niceTicks(p.y0, p.y1, 5) {
		fmt.Fprintf(b, `<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/><text class="tick" x="%.1f" y="%.1f" text-anchor="end">%s</text>`,
			left, p.py(y), right, p.py(y), left-6, p.py(y)+4, html.EscapeString(ys(y)))
	}
	fmt.Fprintf(b, `<line class="axis" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/><line class="axis" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`,
		left, bottom, right, bottom, left, top, left, bottom)
	fmt.Fprintf(b, `<text class="axlbl" x="%.1f" y="%d" text-anchor="middle">%s</text>`, (left+right)/2, p.h-6, html.EscapeString(xlabel))
	fmt.Fprintf(b, `<text class="axlbl" x="14" y="%.1f" text-anchor="middle" transform="rotate(-90 14 %.1f)">%s</text>`,
		(top+bottom)/2, (top+bottom)/2, html.EscapeString(ylabel))
}

func (ct *connTimeline) writeHTML(b *strings.Builder, sc scales) {
	c := ct.c
	st := ct.stats()
	fmt.Fprintf(b, "<h2>Connection c%d</h2><p class=\"meta\">client %s · server %s · user %s · %s</p>\n",
		c.ID, html.EscapeString(c.Client.String()), html.EscapeString(c.Server.String()),
		html.EscapeString(orDash(c.Summary.User)), html.EscapeString(st.inFlightText()))
	fmt.Fprintf(b, "<p class=\"meta\">%s · %s</p>\n", html.EscapeString(st.latencyText()), html.EscapeString(st.stallText(ct.first)))
	ct.seqSVG(b, sc, st)
	b.WriteString(`<div class="pair">`)
	ct.ioSVG(b, sc)
	ct.latencySVG(b, sc, st)
	b.WriteString("</div>\n")
}

// seqSVG draws the time-sequence graph: bytes of the exchanges sent and
// answered against time (seqPoint), the gap between them shaded.
func (ct *connTimeline) seqSVG(b *strings.Builder, sc scales, st TimeStats) {
	p := plot{w: grWidth, h: grSeqH, x0: 0, x1: sc.dur.Seconds(), y0: 0, y1: float64(sc.bytes)}
	fmt.Fprintf(b, `<h3>Time-sequence: requests sent and answered</h3><svg class="graph seq" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="time-sequence graph of connection c%d" data-conn="%d" data-in-flight-max="%d" data-in-flight-mean="%.2f" data-rate="%.0f">`,
		grWidth, grSeqH, ct.c.ID, ct.c.ID, st.InFlightMax, st.InFlightMean, st.Rate)
	p.frame(b, "seconds from the connection's first message", "bytes of requests and answers", fmtSeconds, siBytes, false)
	// Step curves: a value holds until the next point.
	var sent, acked []string
	lastX, lastS, lastA := p.px(0), p.py(0), p.py(0)
	sent = append(sent, fmt.Sprintf("%.1f,%.1f", lastX, lastS))
	acked = append(acked, fmt.Sprintf("%.1f,%.1f", lastX, lastA))
	for _, pt := range ct.pts {
		x := p.px(pt.t.Seconds())
		s, a := p.py(float64(pt.sent)), p.py(float64(pt.acked))
		if s != lastS {
			sent = append(sent, fmt.Sprintf("%.1f,%.1f %.1f,%.1f", x, lastS, x, s))
			lastS = s
		}
		if a != lastA {
			acked = append(acked, fmt.Sprintf("%.1f,%.1f %.1f,%.1f", x, lastA, x, a))
			lastA = a
		}
		lastX = x
	}
	sent = append(sent, fmt.Sprintf("%.1f,%.1f", lastX, lastS))
	acked = append(acked, fmt.Sprintf("%.1f,%.1f", lastX, lastA))
	// The gap: along the sent curve, back along the answered one.
	gap := append([]string(nil), sent...)
	for i := len(acked) - 1; i >= 0; i-- {
		f := strings.Fields(acked[i])
		for j := len(f) - 1; j >= 0; j-- {
			gap = append(gap, f[j])
		}
	}
	fmt.Fprintf(b, `<polygon class="inflight" points="%s"/>`, strings.Join(gap, " "))
	fmt.Fprintf(b, `<polyline class="seq-sent" points="%s"/><polyline class="seq-acked" points="%s"/>`, strings.Join(sent, " "), strings.Join(acked, " "))
	key := float64(grLeft)
	fmt.Fprintf(b, `<rect x="%.0f" y="12" width="14" height="4" fill="#1f6fb2"/><text class="key" x="%.0f" y="18">sent</text>`, key, key+20)
	fmt.Fprintf(b, `<rect x="%.0f" y="12" width="14" height="4" fill="#2c8a3c"/><text class="key" x="%.0f" y="18">answered</text>`, key+70, key+90)
	fmt.Fprintf(b, `<rect x="%.0f" y="8" width="14" height="10" fill="#f4a261"/><text class="key" x="%.0f" y="18">in flight</text>`, key+170, key+190)
	b.WriteString("</svg>\n")
}

// ioSVG draws bytes per second over time, both directions stacked.
func (ct *connTimeline) ioSVG(b *strings.Builder, sc scales) {
	p := plot{w: grHalf, h: grIOH, x0: 0, x1: sc.dur.Seconds(), y0: 0, y1: sc.rate}
	fmt.Fprintf(b, `<div><h3>I/O: bytes per second (intervals of %s)</h3><svg class="graph io" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="I/O graph of connection c%d" data-conn="%d">`,
		html.EscapeString(fmtLatency(ct.binWidth)), grHalf, grIOH, ct.c.ID, ct.c.ID)
	p.frame(b, "seconds from the connection's first message", "bytes per second", fmtSeconds, siRate, false)
	w := ct.binWidth.Seconds()
	for i, bin := range ct.bins {
		if bin.up+bin.down == 0 {
			continue
		}
		x0, x1 := p.px(float64(i)*w), p.px(float64(i+1)*w)
		width := math.Max(x1-x0, 0.8)
		up, all := p.py(float64(bin.up)/w), p.py(float64(bin.up+bin.down)/w)
		base := p.py(0)
		if bin.up > 0 {
			fmt.Fprintf(b, `<rect class="io-up" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, x0, up, width, base-up)
		}
		if bin.down > 0 {
			fmt.Fprintf(b, `<rect class="io-down" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, x0, all, width, up-all)
		}
	}
	key := float64(grLeft)
	fmt.Fprintf(b, `<rect x="%.0f" y="9" width="14" height="8" fill="#1f6fb2"/><text class="key" x="%.0f" y="18">client → server</text>`, key, key+20)
	fmt.Fprintf(b, `<rect x="%.0f" y="9" width="14" height="8" fill="#2c8a3c"/><text class="key" x="%.0f" y="18">server → client</text>`, key+140, key+160)
	b.WriteString("</svg></div>\n")
}

// latencySVG draws how many answers took how long, on a log scale of
// time, with the percentiles marked.
func (ct *connTimeline) latencySVG(b *strings.Builder, sc scales, st TimeStats) {
	if !sc.haveLatencies || ct.lat.n == 0 {
		b.WriteString("<div><p class=\"meta\">No answered request: no latency to draw.</p></div>\n")
		return
	}
	counts := make([]int64, grLatBin)
	for bk, n := range ct.lat.counts {
		l := math.Log10(latencyOf(bk).Seconds())
		i := int((l - sc.latLo) / (sc.latHi - sc.latLo) * grLatBin)
		counts[min(max(i, 0), grLatBin-1)] += n
	}
	var top int64 = 1
	for _, n := range counts {
		top = max(top, n)
	}
	p := plot{w: grHalf, h: grLatH, x0: sc.latLo, x1: sc.latHi, y0: 0, y1: float64(top)}
	fmt.Fprintf(b, `<div><h3>Latency of the answers (%d)</h3><svg class="graph latency" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="latency distribution of connection c%d" data-conn="%d">`,
		ct.lat.n, grHalf, grLatH, ct.c.ID, ct.c.ID)
	p.frame(b, "time from request to answer (log scale)", "answers", func(x float64) string {
		return fmtLatency(time.Duration(math.Pow(10, x) * float64(time.Second)))
	}, func(y float64) string { return fmt.Sprintf("%.0f", y) }, true)
	step := (sc.latHi - sc.latLo) / grLatBin
	for i, n := range counts {
		if n == 0 {
			continue
		}
		x0, x1 := p.px(sc.latLo+float64(i)*step), p.px(sc.latLo+float64(i+1)*step)
		y := p.py(float64(n))
		fmt.Fprintf(b, `<rect class="lat" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%d answers</title></rect>`,
			x0+0.5, y, math.Max(x1-x0-1, 1), p.py(0)-y, n)
	}
	for i, pc := range []struct {
		name string
		d    time.Duration
	}{{"p50", st.P50}, {"p90", st.P90}, {"p99", st.P99}} {
		x := p.px(math.Log10(max(pc.d, time.Microsecond).Seconds()))
		tx, anchor := x+3, "start"
		if x > float64(p.w-grRight-110) {
			tx, anchor = x-3, "end" // near the right edge: to the left
		}
		fmt.Fprintf(b, `<line class="pct" x1="%.1f" y1="%d" x2="%.1f" y2="%d"/><text class="pcttxt" x="%.1f" y="%d" text-anchor="%s">%s %s</text>`,
			x, grTop, x, grLatH-grBottom, tx, grTop+12+14*i, anchor, pc.name, html.EscapeString(fmtLatency(pc.d)))
	}
	b.WriteString("</svg></div>\n")
}

// niceTicks returns round values from lo to hi, about n of them.
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		return []float64{lo}
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		out = append(out, v)
	}
	return out
}

func fmtSeconds(s float64) string {
	switch {
	case s == 0:
		return "0"
	case s < 1e-3:
		return fmt.Sprintf("%.0fµs", s*1e6)
	case s < 1:
		return fmt.Sprintf("%.4gms", s*1e3)
	}
	return fmt.Sprintf("%.4gs", s)
}

// siBytes labels an axis: round decimal values read best there.
func siBytes(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.3g GB", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.3g MB", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.3g kB", v/1e3)
	}
	return fmt.Sprintf("%.0f B", v)
}

func siRate(v float64) string { return siBytes(v) + "/s" }

// inFlightText says how many blocks went out together.
func (s TimeStats) inFlightText() string {
	if s.BlockRequests == 0 {
		return "no block requests"
	}
	kind := "pipelined"
	if s.InFlightMax <= 1 {
		kind = "stop-and-wait"
	}
	return fmt.Sprintf("%d block requests, in flight %.1f on average, %d at most (%s)",
		s.BlockRequests, s.InFlightMean, s.InFlightMax, kind)
}

func (s TimeStats) latencyText() string {
	if s.Answers == 0 {
		return "no answered request"
	}
	return fmt.Sprintf("latency of %d answers: p50 %s, p90 %s, p99 %s, max %s",
		s.Answers, fmtLatency(s.P50), fmtLatency(s.P90), fmtLatency(s.P99), fmtLatency(s.MaxLatency))
}

// stallText names the longest silence and the messages around it; times
// are from origin.
func (s TimeStats) stallText(origin time.Time) string {
	if s.Stall <= 0 {
		return "no stall"
	}
	return fmt.Sprintf("longest stall %s at %.6fs, after %s (packet %d), before %s (packet %d)",
		fmtLatency(s.Stall), s.StallFrom.Time.Sub(origin).Seconds(), s.StallFrom.Label, s.StallFrom.Packet, s.StallTo.Label, s.StallTo.Packet)
}
