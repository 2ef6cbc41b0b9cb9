package stepdump

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/reassembly"

	"github.com/stepkit/stepkit/spec"
)

// ConnSummary is what a connection amounted to.
type ConnSummary struct {
	User       string
	Requests   int
	Responses  int
	Ops        map[string]int // requests per operation
	Errors     int            // error statuses and undecodable frames
	Unanswered int
	BytesUp    int64 // STEP bytes client -> server
	BytesDown  int64 // STEP bytes server -> client
	Files      []FileMove
	Notes      int
	// TCP-level: bytes seen more than once (retransmitted or overlapping
	// segments, dropped by reassembly) and bytes the capture lacks.
	DuplicateBytes int64
	LostBytes      int64
}

// FileMove is one file's traffic on a connection.
type FileMove struct {
	Key    string `json:"key"`
	Upload bool   `json:"upload"`
	Blocks int    `json:"blocks"`
	Bytes  int64  `json:"bytes"`
}

// connState follows one connection: it is the reassembly.Stream of both
// directions and pairs what they carry.
type connState struct {
	d           *decoder
	conn        *Conn
	netFlow     gopacket.Flow // of the first packet seen
	tcpFlow     gopacket.Flow
	clientDir   reassembly.TCPFlowDirection
	sideGuessed bool
	probing     bool // not on the STEP port: not shown until it looks like STEP
	ignored     bool
	resetSeen   bool            // a RST was captured
	held        []deferredEvent // events of a probing connection
	half        [2]*halfStream
	pending     []*Message // requests waiting for their response
	seq         int
	ended       bool
	// sawMidStream: the client direction started before the capture did,
	// so the first responses answer requests the capture does not hold.
	sawMidStream bool
	// oversized counts client headers announcing more than a frame can be:
	// a server may refuse each with one ERROR/413 before it closes.
	oversized int
	files     map[string]int // index in Summary.Files by direction+key
}

// assignID numbers the connection when it first shows something.
func (c *connState) assignID() {
	if c.conn.ID == 0 {
		c.d.nextID++
		c.d.stats.Conns++
		c.conn.ID = c.d.nextID
	}
}

func (c *connState) setClient(first bool, src, dst netip.AddrPort) {
	if first {
		c.clientDir = reassembly.TCPDirClientToServer
		c.conn.Client, c.conn.Server = src, dst
	} else {
		c.clientDir = reassembly.TCPDirServerToClient
		c.conn.Client, c.conn.Server = dst, src
	}
}

func dirIndex(dir reassembly.TCPFlowDirection) int {
	if dir == reassembly.TCPDirServerToClient {
		return 1
	}
	return 0
}

// netFlowOf and port give the addressing of a direction, to build segments.
func (c *connState) netFlowOf(dir reassembly.TCPFlowDirection) gopacket.Flow {
	if dir == reassembly.TCPDirClientToServer {
		return c.netFlow
	}
	return c.netFlow.Reverse()
}

func (c *connState) port(dir reassembly.TCPFlowDirection, src bool) layers.TCPPort {
	f := c.tcpFlow
	if dir == reassembly.TCPDirServerToClient {
		f = f.Reverse()
	}
	e := f.Dst()
	if src {
		e = f.Src()
	}
	b := e.Raw()
	return layers.TCPPort(uint16(b[0])<<8 | uint16(b[1]))
}

// peerAcked looks at the acknowledgement a packet carries for the other
// direction, before the packet is reassembled.
func (c *connState) peerAcked(netFlow gopacket.Flow, t *layers.TCP) {
	if c.ignored || c.ended {
		return
	}
	dir := reassembly.TCPDirClientToServer
	if netFlow != c.netFlow || t.TransportFlow() != c.tcpFlow {
		dir = reassembly.TCPDirServerToClient
	}
	other := c.half[1-dirIndex(dir)]
	if !other.started || other.finished {
		return
	}
	other.fillLost(other.offOf(t.Ack))
}

// Accept is the reassembly.Stream hook called for every segment.
func (c *connState) Accept(t *layers.TCP, ci gopacket.CaptureInfo, dir reassembly.TCPFlowDirection, nextSeq reassembly.Sequence, start *bool, ac reassembly.AssemblerContext) bool {
	if c.ignored {
		return false
	}
	if ci.Timestamp.After(c.conn.Last) {
		c.conn.Last = ci.Timestamp
	}
	h := c.half[dirIndex(dir)]
	if !h.started && !t.SYN && len(t.Payload) == 0 {
		// A bare ACK, FIN or RST cannot start a direction: it may be the
		// last ACK of a connection that has just ended, and starting on it
		// would swallow the SYN of a new connection on the same ports.
		return false
	}
	if t.RST {
		c.resetSeen = true
	}
	pc, _ := ac.(*pktCtx)
	if pc == c.d.cur && (nextSeq != reassembly.Sequence(t.Seq) || nextSeq == reassembly.Sequence(-1)) {
		c.d.kept = true
	}
	h.accept(t, pc, start)
	if lz := &c.d.lazy; lz.on && pc == c.d.cur {
		// Only a segment handed on at once, alone, is read as the stream
		// needs it; reassembly copies any other, so it is read whole now.
		if reassembly.Sequence(t.Seq) != nextSeq || t.SYN || t.RST || h.heldBeyond() {
			c.d.fillLazy(len(lz.payload))
		}
	}
	return true
}

// ReassembledSG is the reassembly.Stream hook for in-order bytes.
func (c *connState) ReassembledSG(sg reassembly.ScatterGather, ac reassembly.AssemblerContext) {
	if c.ignored {
		return
	}
	dir, _, _, skip := sg.Info()
	avail, _ := sg.Lengths()
	pc, _ := ac.(*pktCtx)
	if pc == nil || pc.num == 0 {
		ci := sg.CaptureInfo(max(avail-1, 0))
		pc = &pktCtx{ci: ci, num: c.d.pkt}
	}
	if c.d.flushing && avail > 0 {
		// Delivered by a flush: the bytes' own packet is the best account.
		if p, ok := c.packetOf(sg, avail-1); ok {
			pc = p
		}
	}
	var data []byte
	if avail > 0 {
		data = sg.Fetch(avail)
	}
	var lz *lazyPayload
	if l := &c.d.lazy; l.on && pc == c.d.cur && !c.d.flushing {
		if skip == 0 && len(data) == len(l.payload) && len(data) > 0 && &data[0] == &l.payload[0] {
			lz = l
		} else {
			c.d.fillLazy(len(l.payload))
		}
	}
	c.half[dirIndex(dir)].deliver(data, skip, pc, pc.ci.Timestamp, lz)
}

// packetOf recovers the packet number a delivered byte came in.
func (c *connState) packetOf(sg reassembly.ScatterGather, off int) (*pktCtx, bool) {
	ci := sg.CaptureInfo(off)
	if ci.Timestamp.IsZero() {
		return nil, false
	}
	// Segments carry their pktCtx in the CaptureInfo's ancillary data.
	if len(ci.AncillaryData) > 0 {
		if p, ok := ci.AncillaryData[0].(*pktCtx); ok {
			return p, true
		}
	}
	return &pktCtx{ci: ci, num: c.d.pkt}, true
}

// ReassemblyComplete is the reassembly.Stream hook for the end.
func (c *connState) ReassemblyComplete(ac reassembly.AssemblerContext) bool {
	c.end()
	return true
}

func (c *connState) end() {
	if c.ended {
		return
	}
	num, ts := c.d.pkt, c.conn.Last
	for _, h := range c.half {
		h.finish(num, ts)
	}
	c.ended = true
	delete(c.d.conns, flowKey{c.netFlow, c.tcpFlow})
	delete(c.d.conns, flowKey{c.netFlow.Reverse(), c.tcpFlow.Reverse()})
	if c.ignored || c.probing || c.conn.ID == 0 {
		return
	}
	c.d.ports[c.conn.Server.Port()]++
	why, sev := "the capture ends before any response", Warning
	if c.half[0].finSeen || c.half[1].finSeen {
		why, sev = "the connection closed without a response", Error
	}
	for _, req := range c.pending {
		c.unansweredSev(req, why, sev)
	}
	c.pending = nil
	c.d.connEnd(c.conn)
}

// ignore gives up a probing connection: its bytes are not STEP.
func (c *connState) ignore() {
	c.ignored = true
	c.held = nil
	for _, h := range c.half {
		h.buf, h.r = nil, 0
	}
}

// openAtEnd reports whether the connection was still open when the
// capture ended: neither side closed or reset it in the capture.
func (c *connState) openAtEnd() bool {
	return !c.resetSeen && !c.half[0].finSeen && !c.half[1].finSeen
}

func (c *connState) unanswered(req *Message, why string) { c.unansweredSev(req, why, Error) }

func (c *connState) unansweredSev(req *Message, why string, sev Severity) {
	if req.Operation() == string(spec.OpBye) {
		// Clients do not wait for an answer to BYE, and the course's
		// reference server sends none.
		return
	}
	c.conn.Summary.Unanswered++
	c.note(c.half[dirIndex(c.clientDir)], req.Packet, req.Time, req.Offset, NoteUnanswered, sev,
		fmt.Sprintf("request #%d %s (packet %d) was never answered: %s", req.Seq, describeOp(req), req.Packet, why))
}

func describeOp(m *Message) string {
	op, typ := m.Operation(), m.Type()
	switch {
	case op == "" && m.Msg == nil:
		return "(undecoded)"
	case typ == "":
		return op
	}
	return op + " " + typ
}

func (c *connState) note(h *halfStream, num int64, ts time.Time, off int64, kind string, sev Severity, text string) {
	if c.ignored {
		return
	}
	c.assignID()
	n := &Note{Packet: num, Time: ts, Conn: c.conn, FromClient: h != nil && h.fromClient(), Offset: off, Kind: kind, Severity: sev, Text: text}
	c.conn.Summary.Notes++
	if c.probing {
		if len(c.held) < 64 {
			c.held = append(c.held, deferredEvent{conn: c.conn.ID, note: n})
		}
		return
	}
	c.d.note(n)
}

// frame takes a frame cut by one direction.
func (c *connState) frame(h *halfStream, m *Message) {
	if c.ignored {
		return
	}
	if c.probing {
		if m.Msg == nil || !(m.Msg.Has(spec.FieldOperation) || m.Msg.Has(spec.FieldDirection)) {
			if h.frames > 4 || h.delivered > 1<<16 {
				c.ignore()
			}
			return
		}
		c.probing = false
		held := c.held
		c.held = nil
		for _, e := range held {
			c.d.note(e.note)
		}
	}
	if c.sideGuessed && c.seq == 0 && m.Msg != nil {
		// Neither a SYN nor the port said who is the client: the first
		// message's direction field does.
		if isReq := m.Msg.Direction() == spec.DirRequest; isReq != h.fromClient() {
			if c.clientDir == reassembly.TCPDirClientToServer {
				c.clientDir = reassembly.TCPDirServerToClient
			} else {
				c.clientDir = reassembly.TCPDirClientToServer
			}
			c.conn.Client, c.conn.Server = c.conn.Server, c.conn.Client
		}
	}
	c.assignID()
	c.seq++
	m.Seq = c.seq
	m.Conn = c.conn
	m.FromClient = h.fromClient()
	s := &c.conn.Summary
	size := int64(spec.HeaderLen) + int64(m.JSONLen) + int64(m.BinaryLen)
	if m.CharCount {
		size = int64(spec.HeaderLen) + int64(m.ActualJSONLen) + int64(m.BinaryLen)
	}
	if m.FromClient {
		s.BytesUp += size
	} else {
		s.BytesDown += size
	}
	binOK := m.Msg != nil && len(m.Msg.Binary) > 0 && !binaryMissing(m)
	if binOK && c.d.opts.HashBinary {
		sum := md5.Sum(m.Msg.Binary)
		m.BinaryMD5 = hex.EncodeToString(sum[:])
	}
	if m.CharCount {
		c.note(h, m.Packet, m.Time, m.Offset, NoteCharCount, Warning,
			fmt.Sprintf("frame #%d: the header says the JSON is %d bytes, but it is %d bytes: the sender counted characters, not bytes (non-ASCII text)",
				m.Seq, m.JSONLen, m.ActualJSONLen))
	}
	if m.Msg == nil {
		s.Errors++
		if m.Err != nil && !m.CharCount {
			c.note(h, m.Packet, m.Time, m.Offset, NoteBadFrame, Error,
				fmt.Sprintf("frame #%d at stream offset %d (%d+%d bytes) does not decode: %v", m.Seq, m.Offset, m.JSONLen, m.BinaryLen, m.Err))
		}
	}
	if m.FromClient {
		s.Requests++
		if m.Msg != nil {
			s.Ops[string(m.Msg.Operation())]++
			if s.User == "" {
				s.User = userOf(m.Msg)
			}
		}
		c.pending = append(c.pending, c.lightCopy(m))
		if len(c.pending) > 4096 {
			c.unanswered(c.pending[0], "too many requests waiting")
			c.pending = c.pending[1:]
		}
		c.d.files.request(c, h, m)
	} else {
		s.Responses++
		if st, ok := m.Status(); ok && st != spec.StatusOK {
			s.Errors++
		}
		c.pair(h, m)
		if m.Request != nil && m.Request.Operation() == string(spec.OpLogin) {
			if st, _ := m.Status(); st == spec.StatusOK {
				if u, err := m.Request.Msg.Username(); err == nil {
					s.User = u
				}
			}
		}
		c.d.files.response(c, h, m)
	}
	if c.probing {
		return
	}
	c.d.emitMessage(m)
}

func binaryMissing(m *Message) bool {
	start := int64(spec.HeaderLen) + int64(m.JSONLen)
	if m.CharCount {
		start = int64(spec.HeaderLen) + int64(m.ActualJSONLen)
	}
	for _, r := range m.Missing {
		if r.End > start {
			return true
		}
	}
	return false
}

// lightCopy keeps a request's fields without its binary part, which is
// only valid during the frame's handling. The fields are the decoded
// message's own: nothing here changes a message, so they are shared.
func (c *connState) lightCopy(m *Message) *Message {
	cp := c.d.message()
	*cp = *m
	if m.Msg != nil && m.Msg.Binary != nil {
		cp.Msg = m.Msg.WithoutBinary()
	}
	return cp
}

// compatible reports whether resp can answer req. The course reference
// answers FILE DELETE and failed DOWNLOADs with operation GET, and any
// request with ERROR when a compulsory field is wrong.
func compatible(req, resp *Message) bool {
	ro, qo := resp.Operation(), req.Operation()
	switch {
	case resp.Msg == nil || req.Msg == nil:
		return true
	case (req.Msg.Direction() == spec.DirEarth) != (ro == string(spec.Op3Body)):
		// The easter egg answers EARTH, and nothing else does.
		return false
	case ro == qo, ro == string(spec.OpError), ro == string(spec.Op3Body):
		return true
	case ro == string(spec.OpGet) && req.Type() == string(spec.TypeFile) &&
		(qo == string(spec.OpDelete) || qo == string(spec.OpDownload)):
		return true
	case !spec.Operation(qo).Valid():
		return true
	}
	return false
}

// pair finds the request a response answers: the oldest waiting one, unless
// that one cannot be answered by it and a later one can, in which case the
// skipped requests got no response (as the reference does for several
// malformed requests).
func (c *connState) pair(h *halfStream, resp *Message) {
	if len(c.pending) == 0 {
		if c.refusal(h, resp) {
			return
		}
		if cl := c.half[dirIndex(c.clientDir)]; cl.frames == 0 && (cl.midStream || !cl.started || c.sawMidStream) {
			c.sawMidStream = true
			c.note(h, resp.Packet, resp.Time, resp.Offset, NoteOrphanResponse, Info,
				fmt.Sprintf("response #%d %s answers a request sent before the capture started", resp.Seq, describeOp(resp)))
			return
		}
		c.note(h, resp.Packet, resp.Time, resp.Offset, NoteOrphanResponse, Error,
			fmt.Sprintf("response #%d %s has no request waiting for it", resp.Seq, describeOp(resp)))
		return
	}
	idx := 0
	if !compatible(c.pending[0], resp) {
		for i := 1; i < len(c.pending) && i < 8; i++ {
			if compatible(c.pending[i], resp) {
				idx = i
				break
			}
		}
	}
	for _, skipped := range c.pending[:idx] {
		c.unanswered(skipped, fmt.Sprintf("response #%d answers a later request", resp.Seq))
	}
	req := c.pending[idx]
	c.pending = c.pending[idx+1:]
	resp.Request = req
	resp.Latency = resp.Time.Sub(req.Time)
}

// refusal recognises the answers a server gives without a request to
// answer (STEP.md section 12 and EXT-3): ERROR/413 to a client header over
// its limits, and ERROR/503 to a connection over its connection limit,
// sent before the client said anything.
func (c *connState) refusal(h *halfStream, resp *Message) bool {
	if resp.Operation() != string(spec.OpError) {
		return false
	}
	st, _ := resp.Status()
	switch {
	case st == spec.StatusTooLarge && c.oversized > 0:
		c.oversized--
		c.note(h, resp.Packet, resp.Time, resp.Offset, NoteOrphanResponse, Info,
			fmt.Sprintf("response #%d ERROR/413 refuses the client's oversized header (too large, an extension status); the server then closes", resp.Seq))
		return true
	case st == spec.StatusServiceBusy && c.half[dirIndex(c.clientDir)].frames == 0 && c.seq == 1:
		c.note(h, resp.Packet, resp.Time, resp.Offset, NoteOrphanResponse, Info,
			fmt.Sprintf("response #%d ERROR/503 refuses the connection: the server is at its connection limit (server busy, an extension status)", resp.Seq))
		return true
	}
	return false
}

// userOf reads the user a request speaks for: the username of a LOGIN, or
// the first part of a course token.
func userOf(m *spec.Message) string {
	if u, err := m.Username(); err == nil && m.Operation() == spec.OpLogin {
		return u
	}
	tok, err := m.Token()
	if err != nil {
		return ""
	}
	raw, err := base64.StdEncoding.DecodeString(tok)
	if err != nil {
		return ""
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 4 {
		return ""
	}
	return parts[0]
}
