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

// maxDiagramRows bounds what a diagram keeps per connection: a ladder of a
// million block uploads helps no one, and memory must not follow the
// capture.
const maxDiagramRows = 400

// Diagram collects what a ladder diagram needs and writes it as one
// self-contained HTML page with an SVG per connection.
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
}

type diagramConn struct {
	c       *Conn
	rows    []diagramRow
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
	if len(dc.rows) >= maxDiagramRows {
		dc.dropped++
		return
	}
	dc.rows = append(dc.rows, r)
}

// Message adds an arrow.
func (d *Diagram) Message(m *Message) {
	dc := d.conn(m.Conn)
	r := diagramRow{fromClient: m.FromClient, t: m.Time, packet: m.Packet}
	var label []string
	label = append(label, fmt.Sprintf("#%d", m.Seq))
	if m.Msg == nil {
		label = append(label, "undecodable frame")
		r.bad = true
	} else {
		label = append(label, string(m.Msg.Operation())+" "+string(m.Msg.Type()))
		if st, ok := m.Msg.Status(); ok {
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
	dgTop     = 70
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
svg{background:#fff;border:1px solid #ddd;border-radius:6px}
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
<h1>STEP ladder diagram</h1><p class="meta">%s · times are seconds from the first packet · red: errors, orange: warnings</p>
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
	c := dc.c
	rows := len(dc.rows)
	height := dgTop + rows*dgRow + 40
	if dc.dropped > 0 {
		height += dgRow
	}
	fmt.Fprintf(b, "<h2>Connection c%d</h2><p class=\"meta\">client %s · server %s · user %s</p>\n",
		c.ID, html.EscapeString(c.Client.String()), html.EscapeString(c.Server.String()), html.EscapeString(orDash(c.Summary.User)))
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="ladder diagram of connection c%d">`+"\n",
		dgWidth, height, c.ID)
	fmt.Fprintf(b, `<text class="lanehead" x="%d" y="30">client %s</text><text class="lanehead" x="%d" y="30">server %s</text>`+"\n",
		dgLeft, html.EscapeString(c.Client.String()), dgRight, html.EscapeString(c.Server.String()))
	fmt.Fprintf(b, `<line class="lane" x1="%d" y1="42" x2="%d" y2="%d"/><line class="lane" x1="%d" y1="42" x2="%d" y2="%d"/>`+"\n",
		dgLeft, dgLeft, height-10, dgRight, dgRight, height-10)
	for i, r := range dc.rows {
		y := dgTop + i*dgRow
		rel := r.t.Sub(d.start).Seconds()
		fmt.Fprintf(b, `<text class="time" x="%d" y="%d">%.6f</text><text class="time" x="%d" y="%d">pkt %d</text>`+"\n",
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
			fmt.Fprintf(b, `<circle cx="%d" cy="%d" r="5" fill="%s"/>`, x, y+4, noteColor(r))
			fmt.Fprintf(b, `<text class="%s" x="%d" y="%d">⚠ %s</text>`+"\n", cls, dgLeft+12, y+8, html.EscapeString(r.label))
			continue
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
	if dc.dropped > 0 {
		y := dgTop + rows*dgRow
		fmt.Fprintf(b, `<text class="note" x="%d" y="%d">… %d more messages and notes not drawn</text>`+"\n", dgLeft+14, y+8, dc.dropped)
	}
	b.WriteString("</svg>\n")
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
