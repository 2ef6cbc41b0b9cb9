package stepdump

import (
	"fmt"
	"html"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// maxDiagramItems bounds what a diagram keeps per connection: rows and
// collapsed runs. With runs collapsed a transfer of any length takes a few
// items, but memory must not follow the capture whatever it holds.
const maxDiagramItems = 400

// maxRunRows bounds the rows a collapsed run keeps for its expansion.
const maxRunRows = 2000

// Diagram collects what a ladder diagram needs and writes it as one
// self-contained HTML page with a ladder per connection. Runs of identical
// exchanges (block after block of one transfer, each answered 200) are
// drawn as one row that expands on click; errors, notes and the first and
// last exchanges of a run are always drawn.
type Diagram struct {
	Title string
	conns []*diagramConn
	byID  map[int]*diagramConn
	start time.Time
}

type diagramRow struct {
	note       bool
	fromClient bool
	t          time.Time
	packet     int64
	label      string
	detail     string
	bad        bool
	warn       bool

	// What makes exchanges identical: operation, type, status (responses),
	// binary length; and the block they are about.
	op       string
	status   int
	binLen   uint32
	block    int64
	hasBlock bool
}

// runnable reports whether r may be part of a collapsed run: a block
// request or its 200 answer, without error or warning.
func (r *diagramRow) runnable() bool {
	return !r.note && !r.bad && !r.warn && r.hasBlock && (r.fromClient || r.status == int(spec.StatusOK))
}

// diagramItem is a row or a collapsed run.
type diagramItem struct {
	row *diagramRow
	run *diagramRun
}

// diagramRun is a run of identical exchanges being collected, then drawn.
type diagramRun struct {
	op                string
	reqLen, respLen   uint32
	haveReq, haveResp bool
	head, tail        []diagramRow // the first and last two rows, drawn
	middle            []diagramRow // the collapsed rows, up to maxRunRows
	more              int          // collapsed rows beyond those
	reqs, resps       int          // in the collapsed part
	lo, hi            int64        // its block range
}

// accepts reports whether r continues the run.
func (run *diagramRun) accepts(r *diagramRow) bool {
	if !r.runnable() || r.op != run.op {
		return false
	}
	if r.fromClient {
		return !run.haveReq || r.binLen == run.reqLen
	}
	return !run.haveResp || r.binLen == run.respLen
}

func (run *diagramRun) add(r diagramRow) {
	if r.fromClient && !run.haveReq {
		run.reqLen, run.haveReq = r.binLen, true
	}
	if !r.fromClient && !run.haveResp {
		run.respLen, run.haveResp = r.binLen, true
	}
	if len(run.head) < 2 {
		run.head = append(run.head, r)
		return
	}
	// Three rows wait in the tail: when the run ends on a request whose
	// answer broke it, that request leaves and the last exchange remains.
	run.tail = append(run.tail, r)
	if len(run.tail) > 3 {
		run.collapse(run.tail[0])
		run.tail = append(run.tail[:0], run.tail[1:]...)
	}
}

// collapse counts m into the collapsed part.
func (run *diagramRun) collapse(m diagramRow) {
	if m.fromClient {
		run.reqs++
	} else {
		run.resps++
	}
	if run.reqs+run.resps == 1 || m.block < run.lo {
		run.lo = m.block
	}
	if run.reqs+run.resps == 1 || m.block > run.hi {
		run.hi = m.block
	}
	if len(run.middle) < maxRunRows {
		run.middle = append(run.middle, m)
	} else {
		run.more++
	}
}

// finish settles the tail: the last exchange stays drawn, and a request
// the run ends on is handed back to be drawn after it.
func (run *diagramRun) finish() (trailing *diagramRow) {
	if n := len(run.tail); n > 0 && run.tail[n-1].fromClient {
		r := run.tail[n-1]
		trailing = &r
		run.tail = run.tail[:n-1]
	}
	for len(run.tail) > 2 {
		run.collapse(run.tail[0])
		run.tail = run.tail[1:]
	}
	return trailing
}

// label describes the collapsed part: "UPLOAD FILE blocks 2–13105: 13104 × 200".
func (run *diagramRun) label() string {
	s := fmt.Sprintf("%s blocks %d–%d: ", run.op, run.lo, run.hi)
	if run.reqs == run.resps {
		return s + fmt.Sprintf("%d × 200", run.resps)
	}
	return s + fmt.Sprintf("%d requests, %d × 200", run.reqs, run.resps)
}

type diagramConn struct {
	c       *Conn
	items   []diagramItem
	run     *diagramRun
	dropped int
}

// NewDiagram returns an empty diagram.
func NewDiagram(title string) *Diagram {
	return &Diagram{Title: title, byID: make(map[int]*diagramConn)}
}

// CaptureStart sets the time origin.
func (d *Diagram) CaptureStart(t time.Time) { d.start = t }

func (d *Diagram) conn(c *Conn) *diagramConn {
	dc := d.byID[c.ID]
	if dc == nil {
		dc = &diagramConn{c: c}
		d.byID[c.ID] = dc
		d.conns = append(d.conns, dc)
	}
	return dc
}

func (dc *diagramConn) add(r diagramRow) {
	if dc.run != nil && dc.run.accepts(&r) {
		dc.run.add(r)
		return
	}
	dc.endRun()
	if r.runnable() {
		dc.run = &diagramRun{op: r.op}
		dc.run.add(r)
		return
	}
	dc.item(diagramItem{row: &r})
}

func (dc *diagramConn) item(it diagramItem) {
	if len(dc.items) >= maxDiagramItems {
		dc.dropped++
		return
	}
	dc.items = append(dc.items, it)
}

// endRun draws the run being collected: its rows one by one when there
// are few, its first and last two rows around one collapsed row otherwise.
func (dc *diagramConn) endRun() {
	run := dc.run
	if run == nil {
		return
	}
	dc.run = nil
	trailing := run.finish()
	rows := func(rs []diagramRow) {
		for i := range rs {
			dc.item(diagramItem{row: &rs[i]})
		}
	}
	rows(run.head)
	if n := run.reqs + run.resps; n > 0 && n < 4 {
		rows(run.middle)
	} else if n > 0 {
		dc.item(diagramItem{run: run})
	}
	rows(run.tail)
	if trailing != nil {
		dc.item(diagramItem{row: trailing})
	}
}

// Message adds an arrow.
func (d *Diagram) Message(m *Message) {
	dc := d.conn(m.Conn)
	r := diagramRow{fromClient: m.FromClient, t: m.Time, packet: m.Packet, binLen: m.BinaryLen}
	var label []string
	label = append(label, fmt.Sprintf("#%d", m.Seq))
	if m.Msg == nil {
		label = append(label, "undecodable frame")
		r.bad = true
	} else {
		r.op = string(m.Msg.Operation()) + " " + string(m.Msg.Type())
		label = append(label, r.op)
		if st, ok := m.Msg.Status(); ok {
			r.status = int(st)
			label = append(label, strconv.Itoa(int(st)))
			if st != spec.StatusOK {
				r.bad = true
				if msg := m.Msg.StatusMsg(); msg != "" {
					if len(msg) > 48 {
						msg = msg[:45] + "..."
					}
					label = append(label, strconv.Quote(msg))
				}
			}
		}
		if k, err := m.Msg.Key(); err == nil {
			if len(k) > 24 {
				k = k[:21] + "..."
			}
			label = append(label, "key="+k)
		}
		if bi, err := m.Msg.BlockIndex(); err == nil {
			label = append(label, fmt.Sprintf("block %d", bi))
			r.block, r.hasBlock = bi, true
		}
	}
	r.label = strings.Join(label, " ")
	size := fmt.Sprintf("json %d", m.JSONLen)
	if m.BinaryLen > 0 {
		size += fmt.Sprintf(" + binary %d", m.BinaryLen)
	}
	if m.Request != nil {
		size += " · " + fmtLatency(m.Latency)
	}
	if len(m.Missing) > 0 {
		size += " · bytes missing"
		r.bad = true
	}
	if m.CharCount {
		size += " · JSON length counts characters"
		r.warn = true
	}
	r.detail = size
	dc.add(r)
}

// Note adds a remark beside the ladder.
func (d *Diagram) Note(n *Note) {
	if n.Conn == nil || n.Severity == Info && n.Kind != NoteMidStream {
		return
	}
	dc := d.conn(n.Conn)
	text := n.Kind + ": " + n.Text
	if len(text) > 150 {
		text = text[:147] + "..."
	}
	dc.add(diagramRow{note: true, fromClient: n.FromClient, t: n.Time, packet: n.Packet, label: text,
		bad: n.Severity == Error, warn: n.Severity == Warning})
}

// ConnEnd does nothing: the diagram is written at the end.
func (d *Diagram) ConnEnd(*Conn) {}

const (
	dgLeft    = 150 // client lane x
	dgRight   = 650 // server lane x
	dgWidth   = 1180
	dgRow     = 40
	dgHead    = 50 // the lane heads
	dgNoteCol = 680
)

// WriteHTML writes the page.
func (d *Diagram) WriteHTML(w io.Writer) error {
	var b strings.Builder
	title := html.EscapeString(d.Title)
	fmt.Fprintf(&b, `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>STEP ladder: %s</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;background:#fafafa;color:#222}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 6px}
p.meta{margin:0 0 8px;color:#555;font-size:13px}
.ladder{display:inline-block;background:#fff;border:1px solid #ddd;border-radius:6px;padding:0 0 12px}
.ladder svg{display:block}
details.run>summary{list-style:none;cursor:pointer}
details.run>summary::-webkit-details-marker{display:none}
details.run>summary:hover{background:#f0f4fa}
details.run[open]>summary .runtxt{font-weight:600}
.runbar{fill:#dce9f5;stroke:#1f6fb2;stroke-width:1.5}
.runtxt{fill:#1f6fb2}
.lane{stroke:#888;stroke-width:2;stroke-dasharray:4 4}
.lanehead{font-weight:600;font-size:14px;text-anchor:middle}
.req{stroke:#1f6fb2;stroke-width:2;fill:none}
.resp{stroke:#2c8a3c;stroke-width:2;fill:none}
.bad{stroke:#c62828;stroke-width:2.5;fill:none}
.warn{stroke:#d98c00;stroke-width:2.5;fill:none}
.lbl{font-size:12px;font-family:ui-monospace,Menlo,Consolas,monospace}
.det{font-size:11px;fill:#666;font-family:ui-monospace,Menlo,Consolas,monospace}
.badtxt{fill:#c62828;font-weight:600}
.warntxt{fill:#a86a00}
.time{font-size:11px;fill:#777;text-anchor:end;font-family:ui-monospace,Menlo,Consolas,monospace}
.note{font-size:11px;font-family:ui-monospace,Menlo,Consolas,monospace}
</style></head><body>
<h1>STEP ladder diagram</h1><p class="meta">%s · times are seconds from the first packet · red: errors, orange: warnings · a bar stands for a run of identical exchanges: click it to show them</p>
<svg width="0" height="0" style="position:absolute;border:0" aria-hidden="true"><defs>
<marker id="ah-req" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#1f6fb2"/></marker>
<marker id="ah-resp" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#2c8a3c"/></marker>
<marker id="ah-bad" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#c62828"/></marker>
<marker id="ah-warn" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#d98c00"/></marker>
</defs></svg>
`, title, title)
	if len(d.conns) == 0 {
		b.WriteString("<p>No STEP connection in this capture.</p>\n")
	}
	for _, dc := range d.conns {
		d.writeConn(&b, dc)
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func (d *Diagram) writeConn(b *strings.Builder, dc *diagramConn) {
	dc.endRun()
	c := dc.c
	fmt.Fprintf(b, "<h2>Connection c%d</h2><p class=\"meta\">client %s · server %s · user %s</p>\n",
		c.ID, html.EscapeString(c.Client.String()), html.EscapeString(c.Server.String()), html.EscapeString(orDash(c.Summary.User)))
	fmt.Fprintf(b, `<div class="ladder" role="img" aria-label="ladder diagram of connection c%d">`+"\n", c.ID)
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">`, dgWidth, dgHead)
	fmt.Fprintf(b, `<text class="lanehead" x="%d" y="30">client %s</text><text class="lanehead" x="%d" y="30">server %s</text>`,
		dgLeft, html.EscapeString(c.Client.String()), dgRight, html.EscapeString(c.Server.String()))
	d.lanes(b, 42, dgHead)
	b.WriteString("</svg>\n")
	var seg []*diagramRow
	flush := func() {
		d.rowsSVG(b, seg, "")
		seg = seg[:0]
	}
	for _, it := range dc.items {
		if it.row != nil {
			seg = append(seg, it.row)
			continue
		}
		flush()
		d.runHTML(b, it.run)
	}
	if dc.dropped > 0 {
		seg = append(seg, &diagramRow{note: true, t: d.start, label: fmt.Sprintf("… %d more messages and notes not drawn", dc.dropped)})
	}
	flush()
	b.WriteString("</div>\n")
}

// lanes draws the two lanes from y1 to y2.
func (d *Diagram) lanes(b *strings.Builder, y1, y2 int) {
	fmt.Fprintf(b, `<line class="lane" x1="%d" y1="%d" x2="%d" y2="%d"/><line class="lane" x1="%d" y1="%d" x2="%d" y2="%d"/>`,
		dgLeft, y1, dgLeft, y2, dgRight, y1, dgRight, y2)
}

// rowsSVG draws rows as one SVG of the ladder's width.
func (d *Diagram) rowsSVG(b *strings.Builder, rows []*diagramRow, class string) {
	if len(rows) == 0 {
		return
	}
	height := len(rows) * dgRow
	cls := ""
	if class != "" {
		cls = ` class="` + class + `"`
	}
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg"%s width="%d" height="%d">`, cls, dgWidth, height)
	d.lanes(b, 0, height)
	b.WriteString("\n")
	for i, r := range rows {
		d.row(b, r, i*dgRow+dgRow/2-4)
	}
	b.WriteString("</svg>\n")
}

// runHTML draws a collapsed run: one row that opens, on a click, onto the
// rows it stands for.
func (d *Diagram) runHTML(b *strings.Builder, run *diagramRun) {
	first := run.middle[0]
	last := run.middle[len(run.middle)-1]
	b.WriteString(`<details class="run"><summary>`)
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d">`, dgWidth, dgRow)
	d.lanes(b, 0, dgRow)
	y := dgRow/2 - 4
	fmt.Fprintf(b, `<text class="time" x="%d" y="%d">%.6f</text><text class="time" x="%d" y="%d">pkt %d–%d</text>`,
		dgLeft-14, y+4, first.t.Sub(d.start).Seconds(), dgLeft-14, y+17, first.packet, last.packet)
	fmt.Fprintf(b, `<rect class="runbar" x="%d" y="%d" width="%d" height="10" rx="3"/>`, dgLeft, y+1, dgRight-dgLeft)
	fmt.Fprintf(b, `<text class="lbl runtxt" x="%d" y="%d">▸ %s</text>`, dgLeft+14, y-4, html.EscapeString(run.label()))
	det := "click to show each exchange"
	if run.more > 0 {
		det = fmt.Sprintf("click to show the first %d of its %d messages", len(run.middle), run.reqs+run.resps)
	}
	fmt.Fprintf(b, `<text class="det" x="%d" y="%d">%s</text>`, dgNoteCol, y+10, det)
	b.WriteString("</svg></summary>\n")
	rows := make([]*diagramRow, 0, len(run.middle)+1)
	for i := range run.middle {
		rows = append(rows, &run.middle[i])
	}
	if run.more > 0 {
		rows = append(rows, &diagramRow{note: true, t: last.t, packet: last.packet,
			label: fmt.Sprintf("… %d more exchanges of this run not kept", run.more)})
	}
	d.rowsSVG(b, rows, "expanded")
	b.WriteString("</details>\n")
}

// row draws one arrow or note at y.
func (d *Diagram) row(b *strings.Builder, r *diagramRow, y int) {
	rel := r.t.Sub(d.start).Seconds()
	fmt.Fprintf(b, `<text class="time" x="%d" y="%d">%.6f</text><text class="time" x="%d" y="%d">pkt %d</text>`,
		dgLeft-14, y+4, rel, dgLeft-14, y+17, r.packet)
	if r.note {
		cls := "note"
		switch {
		case r.bad:
			cls += " badtxt"
		case r.warn:
			cls += " warntxt"
		}
		x := dgLeft
		if !r.fromClient {
			x = dgRight
		}
		fmt.Fprintf(b, `<circle cx="%d" cy="%d" r="5" fill="%s"/>`, x, y+4, noteColor(*r))
		fmt.Fprintf(b, `<text class="%s" x="%d" y="%d">⚠ %s</text>`+"\n", cls, dgLeft+12, y+8, html.EscapeString(r.label))
		return
	}
	x1, x2 := dgLeft, dgRight
	cls, marker := "req", "ah-req"
	if !r.fromClient {
		x1, x2 = dgRight, dgLeft
		cls, marker = "resp", "ah-resp"
	}
	txt := "lbl"
	switch {
	case r.bad:
		cls, marker, txt = "bad", "ah-bad", "lbl badtxt"
	case r.warn:
		cls, marker, txt = "warn", "ah-warn", "lbl warntxt"
	}
	fmt.Fprintf(b, `<line class="%s" x1="%d" y1="%d" x2="%d" y2="%d" marker-end="url(#%s)"/>`, cls, x1, y, x2, y+12, marker)
	fmt.Fprintf(b, `<text class="%s" x="%d" y="%d">%s</text>`, txt, dgLeft+14, y-4, html.EscapeString(r.label))
	fmt.Fprintf(b, `<text class="det" x="%d" y="%d">%s</text>`+"\n", dgNoteCol, y+10, html.EscapeString(r.detail))
}

func noteColor(r diagramRow) string {
	switch {
	case r.bad:
		return "#c62828"
	case r.warn:
		return "#d98c00"
	}
	return "#888"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
