package stepdump_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/stepdump"
	"github.com/stepkit/stepkit/stepdump/capgen"
)

// teachingCapture writes the lesson's capture: two clients upload the same
// file of blocks 20480-byte blocks at the same time over a 2 ms round
// trip, one stop-and-wait as the course's clients do (c1), one with
// window blocks in flight (c2).
func teachingCapture(t *testing.T, blocks, window int) string {
	t.Helper()
	const rtt = 2 * time.Millisecond
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	server := netip.MustParseAddrPort("10.0.0.1:1379")
	data := capgen.Pattern(blocks*20480-300, 3)

	// Packets 5µs apart: the link is fast, the round trip is what counts.
	sw := capgen.NewConn(netip.MustParseAddrPort("10.0.0.2:40001"), server, t0, 0)
	sw.Step = 5 * time.Microsecond
	s := capgen.NewSession(sw, "stopwait")
	s.Think = rtt
	sw.Handshake()
	s.Login()
	s.Upload("lesson.bin", data, 20480)
	s.Bye()
	sw.Close()

	pl := capgen.NewConn(netip.MustParseAddrPort("10.0.0.3:40002"), server, t0, 0)
	pl.Step = 5 * time.Microsecond
	p := capgen.NewSession(pl, "pipelined")
	p.Think = rtt
	pl.Handshake()
	p.Login()
	plan := p.SavePlan("lesson.bin", int64(len(data)), 20480)
	// window requests go out; each is answered a round trip after it was
	// sent, and each answer lets the next request go.
	due := make([]time.Time, plan.Total)
	next := int64(0)
	send := func() {
		if next < plan.Total {
			p.Request(p.UploadReq(plan, next, data))
			due[next] = pl.Now().Add(rtt)
			next++
		}
	}
	for next < int64(window) && next < plan.Total {
		send()
	}
	for i := int64(0); i < plan.Total; i++ {
		if w := due[i].Sub(pl.Now()); w > 0 {
			pl.Wait(w)
		}
		p.Write(false, capgen.Frame(p.UploadResp(plan, i, data)))
		send()
	}
	p.Bye()
	pl.Close()

	path := filepath.Join(t.TempDir(), "lesson.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := capgen.NewWriter(f, capgen.Ethernet, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteAll(sw, pl); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeGraphs runs dump --summary --graphs on a capture and returns the
// page's path, its text and the summary.
func writeGraphs(t *testing.T, capture string) (string, string, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "graphs.html")
	f, err := os.Open(capture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sum bytes.Buffer
	if _, err := stepdump.Run(context.Background(), f, &sum, stepdump.Config{Name: capture, Summary: true, Graphs: out}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return out, string(b), sum.String()
}

// seqGraph is what the test reads back from a time-sequence SVG.
type seqGraph struct {
	inFlightMax  int
	inFlightMean float64
	rate         float64
	sent, acked  [][2]float64
}

var (
	seqSVG   = regexp.MustCompile(`(?s)<svg class="graph seq"[^>]*data-conn="(\d+)" data-in-flight-max="(\d+)" data-in-flight-mean="([\d.]+)" data-rate="([\d.]+)">(.*?)</svg>`)
	sentLine = regexp.MustCompile(`<polyline class="seq-sent" points="([^"]*)"`)
	ackLine  = regexp.MustCompile(`<polyline class="seq-acked" points="([^"]*)"`)
)

func points(t *testing.T, s string) [][2]float64 {
	var out [][2]float64
	for _, f := range strings.Fields(s) {
		x, y, ok := strings.Cut(f, ",")
		if !ok {
			t.Fatalf("bad point %q", f)
		}
		xf, err1 := strconv.ParseFloat(x, 64)
		yf, err2 := strconv.ParseFloat(y, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad point %q", f)
		}
		out = append(out, [2]float64{xf, yf})
	}
	return out
}

func seqGraphs(t *testing.T, page string) map[int]seqGraph {
	t.Helper()
	out := map[int]seqGraph{}
	for _, m := range seqSVG.FindAllStringSubmatch(page, -1) {
		id, _ := strconv.Atoi(m[1])
		g := seqGraph{}
		g.inFlightMax, _ = strconv.Atoi(m[2])
		g.inFlightMean, _ = strconv.ParseFloat(m[3], 64)
		g.rate, _ = strconv.ParseFloat(m[4], 64)
		s, a := sentLine.FindStringSubmatch(m[5]), ackLine.FindStringSubmatch(m[5])
		if s == nil || a == nil {
			t.Fatalf("connection %d's time-sequence graph has no curves", id)
		}
		g.sent, g.acked = points(t, s[1]), points(t, a[1])
		out[id] = g
	}
	return out
}

// finishX is where a curve reaches its top (smallest y on screen).
func finishX(pts [][2]float64) float64 {
	best := pts[0]
	for _, p := range pts {
		if p[1] < best[1] {
			best = p
		}
	}
	return best[0]
}

// maxGap is the largest vertical distance, in pixels, between the sent
// curve and the answered one below it.
func maxGap(sent, acked [][2]float64) float64 {
	at := func(pts [][2]float64, x float64) float64 {
		y := pts[0][1]
		for _, p := range pts {
			if p[0] > x {
				break
			}
			y = p[1]
		}
		return y
	}
	var gap float64
	for _, p := range sent {
		gap = max(gap, at(acked, p[0])-p[1])
	}
	return gap
}

// TestGraphsStopAndWaitAgainstPipelined draws the lesson: the pipelined
// client's curve is steeper and ends sooner, with many blocks in flight
// between sent and answered, where the stop-and-wait client's two curves
// nearly touch.
func TestGraphsStopAndWaitAgainstPipelined(t *testing.T) {
	const blocks, window = 200, 8
	_, page, sum := writeGraphs(t, teachingCapture(t, blocks, window))
	if strings.Contains(page, "<script") || strings.Contains(page, "http://") && !strings.Contains(page, `xmlns="http://www.w3.org/2000/svg"`) {
		t.Fatal("the page must hold no script and fetch nothing")
	}
	for _, ref := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		t.Fatalf("the page refers to %s", ref[1])
	}
	gs := seqGraphs(t, page)
	sw, pl := gs[1], gs[2]
	if len(gs) != 2 {
		t.Fatalf("%d time-sequence graphs, want 2", len(gs))
	}
	t.Logf("stop-and-wait: in flight %.2f/%d, %.0f B/s; pipelined: in flight %.2f/%d, %.0f B/s",
		sw.inFlightMean, sw.inFlightMax, sw.rate, pl.inFlightMean, pl.inFlightMax, pl.rate)
	if sw.inFlightMax != 1 || sw.inFlightMean != 1 {
		t.Errorf("stop-and-wait: in flight %.2f on average, %d at most; want 1 and 1", sw.inFlightMean, sw.inFlightMax)
	}
	if pl.inFlightMax != window || pl.inFlightMean < window-1 {
		t.Errorf("pipelined: in flight %.2f on average, %d at most; want about %d", pl.inFlightMean, pl.inFlightMax, window)
	}
	if pl.rate < 4*sw.rate {
		t.Errorf("pipelined rate %.0f B/s is not well above stop-and-wait's %.0f B/s", pl.rate, sw.rate)
	}
	// On the shared axes the pipelined curve reaches the same height in a
	// fraction of the width: it is steeper.
	swEnd, plEnd := finishX(sw.sent), finishX(pl.sent)
	if plEnd-90 > (swEnd-90)/3 {
		t.Errorf("pipelined curve tops out at x=%.0f, stop-and-wait's at x=%.0f: not steeper", plEnd, swEnd)
	}
	// The gap between sent and answered holds window blocks for the
	// pipelined client, one request for the stop-and-wait one.
	swGap, plGap := maxGap(sw.sent, sw.acked), maxGap(pl.sent, pl.acked)
	t.Logf("largest gap: %.1f px stop-and-wait, %.1f px pipelined", swGap, plGap)
	if plGap < 5*swGap || plGap < 5 {
		t.Errorf("pipelined gap %.1f px against stop-and-wait's %.1f px: want many blocks in flight drawn", plGap, swGap)
	}
	// The summary gives the numbers behind the pictures.
	for _, want := range []string{
		fmt.Sprintf("%d block requests, in flight 1.0 on average, 1 at most (stop-and-wait)", blocks),
		"at most (pipelined)",
		"latency     p50 2.",
		"stall       ",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
}

// TestGraphsRenderInChromium renders the lesson's graphs, a 10 000-block
// transfer and a 3-block one in headless Chromium and looks for each
// graph's colours: the curves, the in-flight gap, the I/O bars and the
// latency bars.
func TestGraphsRenderInChromium(t *testing.T) {
	chromium := requireTool(t, "chromium")
	for _, tc := range []struct {
		name    string
		capture string
		colours []string
	}{
		// A stop-and-wait transfer has nothing in flight to shade.
		{"lesson", teachingCapture(t, 200, 8), []string{"blue", "green", "orange", "purple"}},
		{"long", longTransfer(t, 10000, 5000), []string{"blue", "green", "purple"}},
		{"short", longTransfer(t, 3, -1), []string{"blue", "green", "purple"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page, text, _ := writeGraphs(t, tc.capture)
			if n := strings.Count(text, `<svg class="graph seq"`); n == 0 {
				t.Fatal("no time-sequence graph")
			}
			if len(text) > 2<<20 {
				t.Fatalf("page of %d bytes: the series are not thinned", len(text))
			}
			img := screenshot(t, chromium, page, 1040, 1500)
			if dir := os.Getenv("STEPDUMP_GRAPHS_SHOTS"); dir != "" {
				if f, err := os.Create(filepath.Join(dir, tc.name+".png")); err == nil {
					png.Encode(f, img)
					f.Close()
				}
			}
			// The in-flight fill is #f4a261 at 55% over white.
			colours := map[string][3]uint32{"blue": {0x1f, 0x6f, 0xb2}, "green": {0x2c, 0x8a, 0x3c}, "orange": {249, 204, 168}, "purple": {0x7b, 0x5e, 0xa7}}
			counts := map[string]int{}
			b := img.Bounds()
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					r, g, bl, _ := img.At(x, y).RGBA()
					for name, c := range colours {
						if absDiff(r>>8, c[0]) < 30 && absDiff(g>>8, c[1]) < 30 && absDiff(bl>>8, c[2]) < 30 {
							counts[name]++
						}
					}
				}
			}
			t.Logf("pixels: %v", counts)
			for _, name := range tc.colours {
				if counts[name] < 100 {
					t.Errorf("the screenshot has %d %s pixels", counts[name], name)
				}
			}
		})
	}
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}

// TestJSONSummaryTiming: dump --json --summary carries the numbers the
// text summary prints beside the graphs, connection by connection.
func TestJSONSummaryTiming(t *testing.T) {
	const blocks, window = 60, 6
	capture := teachingCapture(t, blocks, window)
	f, err := os.Open(capture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	if _, err := stepdump.Run(context.Background(), f, &out, stepdump.Config{Name: capture, JSON: true, Summary: true}); err != nil {
		t.Fatal(err)
	}
	type timing struct {
		BlockRequests int     `json:"block_requests"`
		InFlightMean  float64 `json:"in_flight_mean"`
		InFlightMax   int     `json:"in_flight_max"`
		Answers       int64   `json:"answers"`
		LatencyMS     struct {
			P50, P90, P99, Max float64
		} `json:"latency_ms"`
		Rate  float64 `json:"answered_bytes_per_s"`
		Stall struct {
			MS    float64 `json:"ms"`
			After struct {
				Packet  int64  `json:"packet"`
				Message string `json:"message"`
			} `json:"after"`
		} `json:"stall"`
	}
	got := map[int]timing{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var o struct {
			Kind   string  `json:"kind"`
			Conn   int     `json:"conn"`
			Timing *timing `json:"timing"`
		}
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if o.Kind == "summary" {
			if o.Timing == nil {
				t.Fatalf("connection %d's summary has no timing: %s", o.Conn, line)
			}
			got[o.Conn] = *o.Timing
		}
	}
	sw, pl := got[1], got[2]
	if len(got) != 2 || sw.BlockRequests != blocks || pl.BlockRequests != blocks {
		t.Fatalf("timings %+v: want two connections of %d block requests", got, blocks)
	}
	if sw.InFlightMax != 1 || sw.InFlightMean != 1 || pl.InFlightMax != window || pl.InFlightMean < window-1 {
		t.Errorf("in flight: stop-and-wait %.2f/%d, pipelined %.2f/%d; want 1/1 and about %d", sw.InFlightMean, sw.InFlightMax, pl.InFlightMean, pl.InFlightMax, window)
	}
	// Each answer comes a 2 ms round trip after its request.
	for i, tm := range []timing{sw, pl} {
		if tm.LatencyMS.P50 < 2 || tm.LatencyMS.P50 > 2.5 || tm.LatencyMS.Max < tm.LatencyMS.P99 || tm.Answers < blocks {
			t.Errorf("connection %d: latency %+v over %d answers, want p50 about 2 ms", i+1, tm.LatencyMS, tm.Answers)
		}
		if tm.Stall.MS <= 0 || tm.Stall.After.Packet <= 0 || tm.Stall.After.Message == "" {
			t.Errorf("connection %d: stall %+v, want where it was", i+1, tm.Stall)
		}
	}
	if pl.Rate < 4*sw.Rate {
		t.Errorf("answered rate: pipelined %.0f B/s, stop-and-wait %.0f B/s", pl.Rate, sw.Rate)
	}
	// The text summary of the same capture says the same.
	_, _, text := writeGraphs(t, capture)
	if want := fmt.Sprintf("%d block requests, in flight %.1f on average, %d at most (pipelined)", blocks, pl.InFlightMean, pl.InFlightMax); !strings.Contains(text, want) {
		t.Errorf("text summary lacks %q:\n%s", want, text)
	}
}

// TestGraphsDownloadClimbs: a download's blocks travel in the answers, and
// its time-sequence curve and rate count them: a stop-and-wait download
// of a file climbs as the upload of the same file does.
func TestGraphsDownloadClimbs(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	server := netip.MustParseAddrPort("10.0.0.1:1379")
	data := capgen.Pattern(50*20480, 5)
	var conns []*capgen.Conn
	for i, download := range []bool{false, true} {
		c := capgen.NewConn(netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), uint16(40001+i)), server, t0, 0)
		c.Step = 5 * time.Microsecond
		s := capgen.NewSession(c, "student")
		s.Think = 2 * time.Millisecond
		c.Handshake()
		s.Login()
		if download {
			s.Download("data.bin", data, 20480)
		} else {
			s.Upload("data.bin", data, 20480)
		}
		s.Bye()
		c.Close()
		conns = append(conns, c)
	}
	path := filepath.Join(t.TempDir(), "updown.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := capgen.NewWriter(f, capgen.Ethernet, false, 0)
	if err == nil {
		err = w.WriteAll(conns...)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	_, page, _ := writeGraphs(t, path)
	gs := seqGraphs(t, page)
	up, down := gs[1], gs[2]
	t.Logf("upload %.0f B/s, download %.0f B/s", up.rate, down.rate)
	if down.rate < up.rate/2 || down.rate > up.rate*2 {
		t.Errorf("download rate %.0f B/s against the upload's %.0f B/s: the blocks in the answers are not counted", down.rate, up.rate)
	}
	// Both curves reach the top of the shared axis: the file's bytes.
	top := func(pts [][2]float64) float64 {
		m := math.Inf(1)
		for _, p := range pts {
			m = math.Min(m, p[1])
		}
		return m
	}
	if u, d := top(up.acked), top(down.acked); math.Abs(u-d) > 0.1*(200-u) {
		t.Errorf("answered curves top out at y=%.0f (upload) and y=%.0f (download): want about the same height", u, d)
	}
}
