package stepdump

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stepkit/stepkit/spec"
)

// Collector keeps the connections a run saw, for summaries and diagrams.
// It bounds nothing: use it for what is kept per connection only.
type Collector struct {
	Conns []*Conn
}

// ConnEnd records c.
func (c *Collector) ConnEnd(conn *Conn) { c.Conns = append(c.Conns, conn) }

// Sorted returns the connections in ID order.
func (c *Collector) Sorted() []*Conn {
	out := append([]*Conn(nil), c.Conns...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Multi fans events out to several handlers.
type Multi []Handler

func (m Multi) Message(x *Message) {
	for _, h := range m {
		h.Message(x)
	}
}

func (m Multi) Note(n *Note) {
	for _, h := range m {
		h.Note(n)
	}
}

func (m Multi) ConnEnd(c *Conn) {
	for _, h := range m {
		h.ConnEnd(c)
	}
}

// CaptureStart passes the first packet's time on.
func (m Multi) CaptureStart(t time.Time) {
	for _, h := range m {
		if s, ok := h.(interface{ CaptureStart(time.Time) }); ok {
			s.CaptureStart(t)
		}
	}
}

// ANSI colours for a terminal.
const (
	ansiReset  = "\x1b[0m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
	ansiDim    = "\x1b[2m"
	ansiBold   = "\x1b[1m"
)

// TextWriter prints one line per message and per note.
type TextWriter struct {
	w       *bufio.Writer
	Color   bool
	Verbose bool
	// Quiet drops the per-message lines (for --summary alone).
	Quiet bool
	// LineBuffered flushes after every line, for a live capture on a pipe.
	LineBuffered bool
	// Times, when set, adds each connection's in-flight, latency and
	// stall numbers to its summary.
	Times []TimeStats
	start time.Time
}

// NewTextWriter writes to w; call Flush at the end.
func NewTextWriter(w io.Writer) *TextWriter {
	return &TextWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

// Flush writes what is buffered.
func (t *TextWriter) Flush() error { return t.w.Flush() }

// CaptureStart sets the origin of the relative times.
func (t *TextWriter) CaptureStart(ts time.Time) { t.start = ts }

func (t *TextWriter) rel(ts time.Time) float64 {
	if t.start.IsZero() {
		t.start = ts
	}
	return ts.Sub(t.start).Seconds()
}

func (t *TextWriter) paint(color, s string) string {
	if !t.Color {
		return s
	}
	return color + s + ansiReset
}

func arrow(fromClient bool) string {
	if fromClient {
		return "→"
	}
	return "←"
}

// Message prints m.
func (t *TextWriter) Message(m *Message) {
	if t.Quiet {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%11.6f %7s c%-2d %s #%-3d ", t.rel(m.Time), "pkt "+strconv.FormatInt(m.Packet, 10), m.Conn.ID, arrow(m.FromClient), m.Seq)
	b.WriteString(t.describe(m))
	b.WriteByte('\n')
	if t.Verbose {
		if m.Msg != nil {
			js := m.Msg.AppendJSON(nil)
			fmt.Fprintf(&b, "%32s%s\n", "", t.paint(ansiDim, string(js)))
		}
		if m.BinaryLen > 0 {
			sum := m.BinaryMD5
			if sum == "" {
				sum = "unknown (bytes missing)"
			}
			fmt.Fprintf(&b, "%32s%s\n", "", t.paint(ansiDim, fmt.Sprintf("binary %d bytes, md5 %s", m.BinaryLen, sum)))
		}
	}
	t.w.WriteString(b.String())
	if t.LineBuffered {
		t.w.Flush()
	}
}

// describe is the body of a message line: what it is and its sizes.
func (t *TextWriter) describe(m *Message) string {
	var parts []string
	if m.Msg == nil {
		parts = append(parts, t.paint(ansiRed, "undecodable frame: "+errText(m.Err)))
	} else {
		head := string(m.Msg.Operation()) + " " + string(m.Msg.Type())
		if m.FromClient {
			parts = append(parts, t.paint(ansiCyan+ansiBold, head))
		} else {
			parts = append(parts, t.paint(ansiBold, head))
		}
		if st, ok := m.Msg.Status(); ok {
			c := ansiGreen
			if st != spec.StatusOK {
				c = ansiRed
			}
			parts = append(parts, t.paint(c, strconv.Itoa(int(st))+" "+strconv.Quote(m.Msg.StatusMsg())))
		} else if !m.FromClient {
			parts = append(parts, t.paint(ansiRed, "(no status)"))
		}
		if d := m.Msg.Direction(); d != "" && d != spec.DirRequest && d != spec.DirResponse {
			parts = append(parts, "direction="+string(d))
		} else if m.FromClient && d == spec.DirResponse || !m.FromClient && d == spec.DirRequest {
			parts = append(parts, t.paint(ansiYellow, "direction="+string(d)))
		}
		parts = append(parts, fieldsText(m.Msg)...)
	}
	size := fmt.Sprintf("[json %d", m.JSONLen)
	if m.CharCount {
		size = fmt.Sprintf("[json %d (really %d)", m.JSONLen, m.ActualJSONLen)
	}
	if m.BinaryLen > 0 {
		size += fmt.Sprintf(", binary %d", m.BinaryLen)
	}
	size += "]"
	parts = append(parts, size)
	if len(m.Missing) > 0 {
		var n int64
		for _, r := range m.Missing {
			n += r.End - r.Start
		}
		parts = append(parts, t.paint(ansiRed, fmt.Sprintf("(%d bytes missing)", n)))
	}
	if m.Msg != nil && m.Err != nil && !m.CharCount {
		parts = append(parts, t.paint(ansiRed, errText(m.Err)))
	}
	if m.Request != nil {
		parts = append(parts, t.paint(ansiDim, fmt.Sprintf("answers #%d after %s", m.Request.Seq, fmtLatency(m.Latency))))
	}
	return strings.Join(parts, " ")
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func fmtLatency(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.3fms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%.3fs", d.Seconds())
}

// fieldsText shows the fields that tell what a message is about.
func fieldsText(m *spec.Message) []string {
	var out []string
	for _, f := range []string{spec.FieldUsername, spec.FieldKey, spec.FieldBlockIndex, spec.FieldSize,
		spec.FieldTotalBlock, spec.FieldBlockSize, spec.FieldMD5} {
		raw, ok := m.Raw(f)
		if !ok {
			continue
		}
		v := string(raw)
		if len(v) > 60 {
			v = v[:57] + "..."
		}
		out = append(out, f+"="+v)
	}
	if m.Has(spec.FieldToken) {
		out = append(out, "token")
	}
	return out
}

// Note prints n.
func (t *TextWriter) Note(n *Note) {
	if t.Quiet && n.Severity == Info {
		return
	}
	conn := "   "
	if n.Conn != nil {
		conn = fmt.Sprintf("c%-2d", n.Conn.ID)
	}
	c := ansiYellow
	if n.Severity == Error {
		c = ansiRed
	}
	if n.Severity == Info {
		c = ansiDim
	}
	fmt.Fprintf(t.w, "%11.6f %7s %s ! %s\n", t.rel(n.Time), "pkt "+strconv.FormatInt(n.Packet, 10), conn,
		t.paint(c, n.Severity.String()+" "+n.Kind+": "+n.Text))
	if t.LineBuffered {
		t.w.Flush()
	}
}

// ConnEnd does nothing: summaries are printed at the end.
func (t *TextWriter) ConnEnd(*Conn) {}

// timeSummary prints the numbers behind a connection's graphs.
func (t *TextWriter) timeSummary(s TimeStats) {
	if s.BlockRequests > 0 {
		fmt.Fprintf(t.w, "  in flight   %s\n", s.inFlightText())
	}
	if s.Answers > 0 {
		fmt.Fprintf(t.w, "  latency     p50 %s, p90 %s, p99 %s, max %s (%d answers)\n",
			fmtLatency(s.P50), fmtLatency(s.P90), fmtLatency(s.P99), fmtLatency(s.MaxLatency), s.Answers)
	}
	if s.Stall > 0 {
		fmt.Fprintf(t.w, "  stall       %s at %.6f, after %s (packet %d), before %s (packet %d)\n",
			fmtLatency(s.Stall), t.rel(s.StallFrom.Time), s.StallFrom.Label, s.StallFrom.Packet, s.StallTo.Label, s.StallTo.Packet)
	}
}

// Summary prints one block per connection.
func (t *TextWriter) Summary(conns []*Conn, st *Stats) {
	for _, c := range conns {
		s := &c.Summary
		dur := c.Last.Sub(c.First)
		fmt.Fprintf(t.w, "%s\n", t.paint(ansiBold, fmt.Sprintf("connection c%d  %s -> %s", c.ID, c.Client, c.Server)))
		user := s.User
		if user == "" {
			user = "(unknown)"
		}
		fmt.Fprintf(t.w, "  user        %s\n", user)
		fmt.Fprintf(t.w, "  duration    %s\n", fmtLatency(dur))
		fmt.Fprintf(t.w, "  messages    %d requests, %d responses\n", s.Requests, s.Responses)
		fmt.Fprintf(t.w, "  operations  %s\n", opsText(s.Ops))
		fmt.Fprintf(t.w, "  bytes       %d up, %d down\n", s.BytesUp, s.BytesDown)
		fmt.Fprintf(t.w, "  throughput  %s\n", throughput(s.BytesUp+s.BytesDown, dur))
		for _, f := range s.Files {
			dir := "downloaded"
			if f.Upload {
				dir = "uploaded"
			}
			fmt.Fprintf(t.w, "  file        %s %q: %d blocks, %d bytes\n", dir, f.Key, f.Blocks, f.Bytes)
		}
		if s.DuplicateBytes > 0 || s.LostBytes > 0 {
			fmt.Fprintf(t.w, "  tcp         %d bytes seen twice (retransmitted or overlapping), %d bytes missing from the capture\n",
				s.DuplicateBytes, s.LostBytes)
		}
		for _, ts := range t.Times {
			if ts.Conn == c {
				t.timeSummary(ts)
			}
		}
		errc := ansiGreen
		if s.Errors > 0 || s.Unanswered > 0 {
			errc = ansiRed
		}
		fmt.Fprintf(t.w, "  errors      %s\n", t.paint(errc, fmt.Sprintf("%d error responses or bad frames, %d unanswered requests, %d notes", s.Errors, s.Unanswered, s.Notes)))
	}
	if st != nil {
		ports := ""
		if len(st.Ports) > 1 || len(st.Ports) == 1 && int(st.Ports[0].Port) != st.Port {
			var ps []string
			for _, pc := range st.Ports {
				ps = append(ps, strconv.Itoa(int(pc.Port)))
			}
			ports = ", STEP on port " + strings.Join(ps, " and ")
		}
		fmt.Fprintf(t.w, "capture: %s, %s, %d packets, %d connections, %d messages%s\n",
			st.Format, st.LinkType, st.Packets, len(conns), st.Messages, ports)
		if l := st.Live; l != nil {
			fmt.Fprintf(t.w, "kernel: %d packets passed the filter, %d dropped\n", l.Received, l.Dropped)
		}
	}
}

func opsText(ops map[string]int) string {
	if len(ops) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(ops))
	for k := range ops {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		name := k
		if name == "" {
			name = "(none)"
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, ops[k]))
	}
	return strings.Join(parts, ", ")
}

func throughput(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	bps := float64(n) / d.Seconds()
	switch {
	case bps >= 1<<20:
		return fmt.Sprintf("%.2f MiB/s", bps/(1<<20))
	case bps >= 1<<10:
		return fmt.Sprintf("%.2f KiB/s", bps/(1<<10))
	}
	return fmt.Sprintf("%.0f B/s", bps)
}

// JSONWriter writes one JSON object per message, note and summary.
type JSONWriter struct {
	w       *bufio.Writer
	enc     *json.Encoder
	Verbose bool
	Quiet   bool
	// LineBuffered flushes after every line, for a live capture on a pipe.
	LineBuffered bool
	// Times, when set, adds each connection's in-flight, latency and
	// stall numbers to its summary object ("timing").
	Times []TimeStats
	start time.Time

	buf      []byte // the line being written
	lastConn *Conn  // whose endpoints are in client and server
	client   []byte // JSON strings
	server   []byte
}

// NewJSONWriter writes JSON lines to w; call Flush at the end.
func NewJSONWriter(w io.Writer) *JSONWriter {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &JSONWriter{w: bw, enc: enc}
}

// Flush writes what is buffered.
func (j *JSONWriter) Flush() error { return j.w.Flush() }

// CaptureStart sets the origin of the relative times.
func (j *JSONWriter) CaptureStart(ts time.Time) { j.start = ts }

type jsonMessage struct {
	Kind       string          `json:"kind"`
	Time       string          `json:"time"`
	Rel        float64         `json:"rel"`
	Packet     int64           `json:"packet"`
	Conn       int             `json:"conn"`
	Client     string          `json:"client"`
	Server     string          `json:"server"`
	Dir        string          `json:"dir"`
	Seq        int             `json:"seq"`
	Offset     int64           `json:"offset"`
	Operation  string          `json:"operation,omitempty"`
	Type       string          `json:"type,omitempty"`
	Direction  string          `json:"direction,omitempty"`
	Status     *int            `json:"status,omitempty"`
	StatusMsg  string          `json:"status_msg,omitempty"`
	Key        *string         `json:"key,omitempty"`
	BlockIndex *int64          `json:"block_index,omitempty"`
	JSONLen    uint32          `json:"json_len"`
	BinaryLen  uint32          `json:"binary_len"`
	CharCount  bool            `json:"char_count,omitempty"`
	ActualLen  int             `json:"actual_json_len,omitempty"`
	Missing    []Range         `json:"missing,omitempty"`
	Error      string          `json:"error,omitempty"`
	RequestSeq int             `json:"request_seq,omitempty"`
	LatencyMS  *float64        `json:"latency_ms,omitempty"`
	JSON       json.RawMessage `json:"json,omitempty"`
	BinaryMD5  string          `json:"binary_md5,omitempty"`
}

func dirName(fromClient bool) string {
	if fromClient {
		return "c2s"
	}
	return "s2c"
}

func (j *JSONWriter) rel(ts time.Time) float64 {
	if j.start.IsZero() {
		j.start = ts
	}
	return float64(ts.Sub(j.start).Microseconds()) / 1e6
}

// Message writes m.
func (j *JSONWriter) Message(m *Message) {
	if j.Quiet {
		return
	}
	if !j.Verbose && len(m.Missing) == 0 {
		// The common line is written by hand, byte for byte what
		// encoding/json writes, at a fraction of its cost.
		if b, ok := j.appendMessage(j.buf[:0], m); ok {
			j.buf = b
			j.w.Write(b)
			if j.LineBuffered {
				j.w.Flush()
			}
			return
		}
	}
	j.encodeMessage(m)
}

// encodeMessage writes m with encoding/json.
func (j *JSONWriter) encodeMessage(m *Message) {
	o := jsonMessage{Kind: "message", Time: m.Time.UTC().Format(time.RFC3339Nano), Rel: j.rel(m.Time), Packet: m.Packet,
		Conn: m.Conn.ID, Client: m.Conn.Client.String(), Server: m.Conn.Server.String(),
		Dir: dirName(m.FromClient), Seq: m.Seq, Offset: m.Offset,
		JSONLen: m.JSONLen, BinaryLen: m.BinaryLen, CharCount: m.CharCount, Missing: m.Missing, Error: errText(m.Err)}
	if m.CharCount {
		o.ActualLen = m.ActualJSONLen
	}
	if x := m.Msg; x != nil {
		o.Operation, o.Type, o.Direction = string(x.Operation()), string(x.Type()), string(x.Direction())
		if st, ok := x.Status(); ok {
			v := int(st)
			o.Status = &v
			o.StatusMsg = x.StatusMsg()
		}
		if k, err := x.Key(); err == nil {
			o.Key = &k
		}
		if bi, err := x.BlockIndex(); err == nil {
			o.BlockIndex = &bi
		}
		if j.Verbose {
			o.JSON = x.AppendJSON(nil)
		}
	}
	if m.Request != nil {
		o.RequestSeq = m.Request.Seq
		l := float64(m.Latency.Microseconds()) / 1000
		o.LatencyMS = &l
	}
	if j.Verbose {
		o.BinaryMD5 = m.BinaryMD5
	}
	_ = j.enc.Encode(o)
	if j.LineBuffered {
		j.w.Flush()
	}
}

type jsonNote struct {
	Kind     string  `json:"kind"`
	Time     string  `json:"time"`
	Rel      float64 `json:"rel"`
	Packet   int64   `json:"packet"`
	Conn     int     `json:"conn,omitempty"`
	Dir      string  `json:"dir,omitempty"`
	Offset   int64   `json:"offset"`
	Note     string  `json:"note"`
	Severity string  `json:"severity"`
	Text     string  `json:"text"`
}

// Note writes n.
func (j *JSONWriter) Note(n *Note) {
	if j.Quiet && n.Severity == Info {
		return
	}
	o := jsonNote{Kind: "note", Time: n.Time.UTC().Format(time.RFC3339Nano), Rel: j.rel(n.Time), Packet: n.Packet,
		Offset: n.Offset, Note: n.Kind, Severity: n.Severity.String(), Text: n.Text}
	if n.Conn != nil {
		o.Conn = n.Conn.ID
		o.Dir = dirName(n.FromClient)
	}
	_ = j.enc.Encode(o)
	if j.LineBuffered {
		j.w.Flush()
	}
}

// ConnEnd does nothing: summaries are written at the end.
func (j *JSONWriter) ConnEnd(*Conn) {}

type jsonSummary struct {
	Kind       string         `json:"kind"`
	Conn       int            `json:"conn"`
	Client     string         `json:"client"`
	Server     string         `json:"server"`
	User       string         `json:"user"`
	First      string         `json:"first"`
	Last       string         `json:"last"`
	Requests   int            `json:"requests"`
	Responses  int            `json:"responses"`
	Ops        map[string]int `json:"operations"`
	BytesUp    int64          `json:"bytes_up"`
	BytesDown  int64          `json:"bytes_down"`
	Throughput float64        `json:"throughput_bytes_per_s"`
	Files      []FileMove     `json:"files,omitempty"`
	Errors     int            `json:"errors"`
	Unanswered int            `json:"unanswered"`
	Notes      int            `json:"notes"`
	Duplicate  int64          `json:"duplicate_bytes"`
	Lost       int64          `json:"lost_bytes"`
	Timing     *jsonTiming    `json:"timing,omitempty"`
}

// jsonTiming is what the text summary's in-flight, latency and stall
// lines say, with the durations in milliseconds.
type jsonTiming struct {
	BlockRequests int          `json:"block_requests"`
	InFlightMean  float64      `json:"in_flight_mean"`
	InFlightMax   int          `json:"in_flight_max"`
	Answers       int64        `json:"answers"`
	LatencyMS     *jsonLatency `json:"latency_ms,omitempty"`
	Rate          float64      `json:"answered_bytes_per_s"`
	Stall         *jsonStall   `json:"stall,omitempty"`
}

type jsonLatency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

type jsonStall struct {
	MS   float64      `json:"ms"`
	From jsonStallEnd `json:"after"`
	To   jsonStallEnd `json:"before"`
}

type jsonStallEnd struct {
	Rel     float64 `json:"rel"`
	Packet  int64   `json:"packet"`
	Message string  `json:"message"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// timing turns a connection's numbers into the summary's object.
func (j *JSONWriter) timing(s TimeStats) *jsonTiming {
	o := &jsonTiming{BlockRequests: s.BlockRequests, InFlightMean: s.InFlightMean, InFlightMax: s.InFlightMax,
		Answers: s.Answers, Rate: s.Rate}
	if s.Answers > 0 {
		o.LatencyMS = &jsonLatency{P50: ms(s.P50), P90: ms(s.P90), P99: ms(s.P99), Max: ms(s.MaxLatency)}
	}
	if s.Stall > 0 {
		o.Stall = &jsonStall{MS: ms(s.Stall),
			From: jsonStallEnd{Rel: j.rel(s.StallFrom.Time), Packet: s.StallFrom.Packet, Message: s.StallFrom.Label},
			To:   jsonStallEnd{Rel: j.rel(s.StallTo.Time), Packet: s.StallTo.Packet, Message: s.StallTo.Label}}
	}
	return o
}

// Summary writes one object per connection.
func (j *JSONWriter) Summary(conns []*Conn) {
	for _, c := range conns {
		s := &c.Summary
		o := jsonSummary{Kind: "summary", Conn: c.ID, Client: c.Client.String(), Server: c.Server.String(), User: s.User,
			First: c.First.UTC().Format(time.RFC3339Nano), Last: c.Last.UTC().Format(time.RFC3339Nano),
			Requests: s.Requests, Responses: s.Responses, Ops: s.Ops, BytesUp: s.BytesUp, BytesDown: s.BytesDown,
			Files: s.Files, Errors: s.Errors, Unanswered: s.Unanswered, Notes: s.Notes,
			Duplicate: s.DuplicateBytes, Lost: s.LostBytes}
		if d := c.Last.Sub(c.First); d > 0 {
			o.Throughput = float64(s.BytesUp+s.BytesDown) / d.Seconds()
		}
		for _, ts := range j.Times {
			if ts.Conn == c {
				o.Timing = j.timing(ts)
			}
		}
		_ = j.enc.Encode(o)
	}
}

// Extracted writes one object per rebuilt file.
func (j *JSONWriter) Extracted(xs []Extracted) {
	for _, x := range xs {
		_ = j.enc.Encode(struct {
			Kind string `json:"kind"`
			Extracted
		}{"file", x})
	}
}

// Message is ignored: a Collector keeps connections only.
func (c *Collector) Message(*Message) {}

// Note is ignored.
func (c *Collector) Note(*Note) {}

// appendMessage appends m as encodeMessage writes it; false when m holds
// something only encoding/json writes right (a float in exponent form).
func (j *JSONWriter) appendMessage(b []byte, m *Message) ([]byte, bool) {
	rel := j.rel(m.Time)
	if !plainFloat(rel) {
		return b, false
	}
	if m.Conn != j.lastConn {
		j.lastConn = m.Conn
		j.client = appendJSONString(j.client[:0], m.Conn.Client.String())
		j.server = appendJSONString(j.server[:0], m.Conn.Server.String())
	}
	b = append(b, `{"kind":"message","time":"`...)
	b = m.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","rel":`...)
	b = strconv.AppendFloat(b, rel, 'f', -1, 64)
	b = append(b, `,"packet":`...)
	b = strconv.AppendInt(b, m.Packet, 10)
	b = append(b, `,"conn":`...)
	b = strconv.AppendInt(b, int64(m.Conn.ID), 10)
	b = append(b, `,"client":`...)
	b = append(b, j.client...)
	b = append(b, `,"server":`...)
	b = append(b, j.server...)
	b = append(b, `,"dir":"`...)
	b = append(b, dirName(m.FromClient)...)
	b = append(b, `","seq":`...)
	b = strconv.AppendInt(b, int64(m.Seq), 10)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, m.Offset, 10)
	if x := m.Msg; x != nil {
		if op := x.Operation(); op != "" {
			b = append(b, `,"operation":`...)
			b = appendJSONString(b, string(op))
		}
		if t := x.Type(); t != "" {
			b = append(b, `,"type":`...)
			b = appendJSONString(b, string(t))
		}
		if d := x.Direction(); d != "" {
			b = append(b, `,"direction":`...)
			b = appendJSONString(b, string(d))
		}
		if st, ok := x.Status(); ok {
			b = append(b, `,"status":`...)
			b = strconv.AppendInt(b, int64(st), 10)
			if raw, ok := x.Raw(spec.FieldStatusMsg); ok && writtenAsIs(raw) {
				if len(raw) > 2 {
					b = append(b, `,"status_msg":`...)
					b = append(b, raw...)
				}
			} else if msg := x.StatusMsg(); msg != "" {
				b = append(b, `,"status_msg":`...)
				b = appendJSONString(b, msg)
			}
		}
		if raw, ok := x.Raw(spec.FieldKey); ok && writtenAsIs(raw) {
			b = append(b, `,"key":`...)
			b = append(b, raw...)
		} else if k, err := x.Key(); err == nil {
			b = append(b, `,"key":`...)
			b = appendJSONString(b, k)
		}
		if bi, err := x.BlockIndex(); err == nil {
			b = append(b, `,"block_index":`...)
			b = strconv.AppendInt(b, bi, 10)
		}
	}
	b = append(b, `,"json_len":`...)
	b = strconv.AppendUint(b, uint64(m.JSONLen), 10)
	b = append(b, `,"binary_len":`...)
	b = strconv.AppendUint(b, uint64(m.BinaryLen), 10)
	if m.CharCount {
		b = append(b, `,"char_count":true`...)
		if m.ActualJSONLen != 0 {
			b = append(b, `,"actual_json_len":`...)
			b = strconv.AppendInt(b, int64(m.ActualJSONLen), 10)
		}
	}
	if e := errText(m.Err); e != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, e)
	}
	if m.Request != nil {
		if m.Request.Seq != 0 {
			b = append(b, `,"request_seq":`...)
			b = strconv.AppendInt(b, int64(m.Request.Seq), 10)
		}
		l := float64(m.Latency.Microseconds()) / 1000
		if !plainFloat(l) {
			return b, false
		}
		b = append(b, `,"latency_ms":`...)
		b = strconv.AppendFloat(b, l, 'f', -1, 64)
	}
	b = append(b, "}\n"...)
	return b, true
}

// writtenAsIs reports whether raw is a JSON string that appendJSONString
// writes back byte for byte (printable ASCII, nothing escaped), so that it
// can be copied without being decoded into a string first.
func writtenAsIs(raw []byte) bool {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return false
	}
	for _, c := range raw[1 : len(raw)-1] {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// plainFloat reports whether encoding/json writes f without an exponent.
func plainFloat(f float64) bool {
	a := math.Abs(f)
	return a == 0 || a >= 1e-6 && a < 1e21
}

// appendJSONString appends s quoted as encoding/json does with HTML
// escaping off: the plain case directly, the rest through the encoder.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			var w bytes.Buffer
			enc := json.NewEncoder(&w)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(s)
			return append(b, bytes.TrimSuffix(w.Bytes(), []byte("\n"))...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
