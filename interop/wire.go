package interop

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/stepkit/stepkit/spec"
	"github.com/stepkit/stepkit/stepdump"
)

// wireMsg is one message of a scenario's capture, as stepdump decoded it.
type wireMsg struct {
	Conn       int
	FromClient bool
	Seq        int
	At         time.Duration // from the capture's first packet
	Op, Type   string
	Status     int // -1: none
	StatusMsg  string
	Key        string
	BlockIndex int64 // -1: none
	BlockSize  int64
	TotalBlock int64
	Size       int64 // -1: none
	MD5        string
	BinLen     int
	// CharCount: the header's JSON length counted characters; JSONLen is
	// what the header said, ActualJSON the JSON's length in bytes.
	CharCount  bool
	JSONLen    uint32
	ActualJSON int
	Answers    int // for a response, the Seq of its request (0: none)
	Undecoded  bool
}

func (m *wireMsg) is(op spec.Operation, t spec.Type) bool {
	return m.Op == string(op) && m.Type == string(t)
}

// describe names a request as a person would: "FILE SAVE", "UPLOAD block 3".
func (m *wireMsg) describe() string {
	s := m.Type + " " + m.Op
	if m.BlockIndex >= 0 && (m.Op == string(spec.OpUpload) || m.Op == string(spec.OpDownload)) {
		s = fmt.Sprintf("%s block %d", m.Op, m.BlockIndex)
	}
	return s
}

// wireNote is a stepdump diagnosis.
type wireNote struct {
	Conn       int
	FromClient bool
	Kind       string
	Severity   string
	Text       string
}

// wireConn is what a connection of the capture carried.
type wireConn struct {
	ID                  int
	First, Last         time.Duration
	Requests, Responses int
	FirstRequest        time.Duration // -1: none
	FirstResponse       time.Duration // -1: none
	LastMessage         time.Duration
	ClientPort          uint16
	// ClientClosed is when the client ended the connection, as the relay
	// saw it (-1: unknown).
	ClientClosed time.Duration
}

// wire is a scenario's capture, decoded.
type wire struct {
	Msgs  []*wireMsg
	Notes []wireNote
	Conns []*wireConn
	// Uploaded maps a key to the MD5 of the file its UPLOAD blocks
	// rebuild, when every block of the plan was sent.
	Uploaded map[string]string
}

func (w *wire) notes(kind string) []wireNote {
	var out []wireNote
	for _, n := range w.Notes {
		if n.Kind == kind {
			out = append(out, n)
		}
	}
	return out
}

// answer returns the response to request q, or nil.
func (w *wire) answer(q *wireMsg) *wireMsg {
	for _, m := range w.Msgs {
		if !m.FromClient && m.Conn == q.Conn && m.Answers == q.Seq {
			return m
		}
	}
	return nil
}

// collector gathers a capture's messages and notes for blame.
type collector struct {
	w       *wire
	start   time.Time
	conns   map[int]*wireConn
	plans   map[string][2]int64 // key: block_size, total_block of the upload plan
	blocks  map[string]map[int64][]byte
	kept    int
	maxKept int
}

func (c *collector) CaptureStart(t time.Time) { c.start = t }

func (c *collector) rel(t time.Time) time.Duration {
	if c.start.IsZero() {
		c.start = t
	}
	return t.Sub(c.start)
}

func (c *collector) conn(x *stepdump.Conn) *wireConn {
	wc := c.conns[x.ID]
	if wc == nil {
		wc = &wireConn{ID: x.ID, First: c.rel(x.First), FirstRequest: -1, FirstResponse: -1, ClientPort: x.Client.Port(), ClientClosed: -1}
		c.conns[x.ID] = wc
		c.w.Conns = append(c.w.Conns, wc)
	}
	return wc
}

func (c *collector) Message(m *stepdump.Message) {
	wm := &wireMsg{Conn: m.Conn.ID, FromClient: m.FromClient, Seq: m.Seq, At: c.rel(m.Time),
		Status: -1, BlockIndex: -1, Size: -1, BinLen: int(m.BinaryLen), CharCount: m.CharCount,
		JSONLen: m.JSONLen, ActualJSON: m.ActualJSONLen, Undecoded: m.Msg == nil}
	wc := c.conn(m.Conn)
	wc.LastMessage = wm.At
	if m.FromClient {
		wc.Requests++
		if wc.FirstRequest < 0 {
			wc.FirstRequest = wm.At
		}
	} else {
		wc.Responses++
		if wc.FirstResponse < 0 {
			wc.FirstResponse = wm.At
		}
	}
	if m.Request != nil {
		wm.Answers = m.Request.Seq
	}
	if msg := m.Msg; msg != nil {
		wm.Op, wm.Type = string(msg.Operation()), string(msg.Type())
		if s, ok := msg.Status(); ok {
			wm.Status = int(s)
		}
		wm.StatusMsg = msg.StatusMsg()
		wm.Key, _ = msg.Key()
		if i, err := msg.BlockIndex(); err == nil {
			wm.BlockIndex = i
		}
		wm.BlockSize, _ = msg.BlockSize()
		wm.TotalBlock, _ = msg.TotalBlock()
		if n, err := msg.Size(); err == nil {
			wm.Size = n
		}
		wm.MD5, _ = msg.MD5()
		switch {
		case !m.FromClient && wm.is(spec.OpSave, spec.TypeFile) && wm.Status == int(spec.StatusOK):
			c.plans[wm.Key] = [2]int64{wm.BlockSize, wm.TotalBlock}
			delete(c.blocks, wm.Key)
		case m.FromClient && wm.is(spec.OpUpload, spec.TypeFile) && wm.BlockIndex >= 0 && len(m.Missing) == 0:
			// Msg.Binary is valid during this call only.
			if c.kept+len(msg.Binary) <= c.maxKept {
				bs := c.blocks[wm.Key]
				if bs == nil {
					bs = map[int64][]byte{}
					c.blocks[wm.Key] = bs
				}
				c.kept += len(msg.Binary)
				bs[wm.BlockIndex] = append([]byte(nil), msg.Binary...)
			}
		}
	}
	c.w.Msgs = append(c.w.Msgs, wm)
}

func (c *collector) Note(n *stepdump.Note) {
	wn := wireNote{FromClient: n.FromClient, Kind: n.Kind, Severity: n.Severity.String(), Text: n.Text}
	if n.Conn != nil {
		wn.Conn = n.Conn.ID
	}
	c.w.Notes = append(c.w.Notes, wn)
}

func (c *collector) ConnEnd(x *stepdump.Conn) {
	wc := c.conn(x)
	wc.Last = c.rel(x.Last)
}

// rebuild computes the MD5 of each upload whose every planned block the
// client sent.
func (c *collector) rebuild() {
	c.w.Uploaded = map[string]string{}
	for key, plan := range c.plans {
		bs := c.blocks[key]
		var buf bytes.Buffer
		whole := true
		for i := int64(0); i < plan[1]; i++ {
			b, ok := bs[i]
			if !ok {
				whole = false
				break
			}
			buf.Write(b)
		}
		if whole {
			c.w.Uploaded[key] = md5hex(buf.Bytes())
		}
	}
}

// decodeLimit bounds the decoding of one scenario's capture.
const decodeLimit = 30 * time.Second

// decodeCapture decodes a scenario's pcapng with stepdump, as stepkit dump
// would, writing its text output and ladder diagram beside it.
func decodeCapture(ctx context.Context, pcap, dumpPath, diagramPath, title string, closed map[uint16]time.Duration) (*wire, error) {
	f, err := os.Open(pcap)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out, err := os.Create(dumpPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	bw := bufio.NewWriter(out)
	text := stepdump.NewTextWriter(bw)
	dia := stepdump.NewDiagram(title)
	w := &wire{}
	coll := &collector{w: w, conns: map[int]*wireConn{}, plans: map[string][2]int64{},
		blocks: map[string]map[int64][]byte{}, maxKept: 32 << 20}
	// A capture of megabytes of tiny malformed frames takes the decoder
	// long: what it decoded by the deadline is kept, and said to be partial.
	dctx, cancel := context.WithTimeout(ctx, decodeLimit)
	defer cancel()
	if _, err := stepdump.Decode(dctx, bufio.NewReaderSize(f, 256<<10), stepdump.Options{Port: spec.DefaultPort},
		stepdump.Multi{text, dia, coll}); err != nil {
		if ctx.Err() != nil || dctx.Err() == nil {
			return nil, fmt.Errorf("decode %s: %w", pcap, err)
		}
		fmt.Fprintf(bw, "(decoding stopped after %s: what is above is what was decoded by then)\n", decodeLimit)
		w.Notes = append(w.Notes, wireNote{Kind: "decoding-stopped", Severity: "warning",
			Text: fmt.Sprintf("decoding stopped after %s; what was decoded by then is judged", decodeLimit)})
	}
	text.Flush()
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	coll.rebuild()
	for _, c := range w.Conns {
		if t, ok := closed[c.ClientPort]; ok {
			c.ClientClosed = t
		}
	}
	var b bytes.Buffer
	if err := dia.WriteHTML(&b); err != nil {
		return nil, err
	}
	if err := os.WriteFile(diagramPath, b.Bytes(), 0o644); err != nil {
		return nil, err
	}
	return w, nil
}
