package stepdump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/reassembly"

	"github.com/stepkit/stepkit/spec"
)

// Options tune a decoding run. The zero value decodes port 1379 and every
// other TCP connection whose bytes look like STEP.
type Options struct {
	// Port is the STEP server port (spec.DefaultPort when 0): its
	// connections are decoded whatever their bytes look like.
	Port int
	// OnlyPort restricts decoding to Port. Otherwise a connection on any
	// other port is decoded when it starts as STEP does: a header of
	// plausible lengths followed by a JSON object's '{' (or, for one the
	// capture joins mid-stream, once a frame in it decodes as STEP).
	OnlyPort bool
	// AnyPort is what decoding does by default now; it only undoes
	// OnlyPort.
	AnyPort bool
	// HashBinary computes the MD5 of every binary part (Message.BinaryMD5).
	HashBinary bool
	// ExtractDir, when set, receives every file moved, rebuilt from its
	// blocks (see Extracted).
	ExtractDir string
	// ReuseMessages says the handlers keep neither a *Message nor its Msg
	// once the call that hands it on returns: the decoder then uses their
	// memory again for later frames, once their exchange is answered.
	ReuseMessages bool
	// SkipBinary passes over binary parts instead of holding them: a
	// frame's binary bytes are counted, not buffered, Message.Msg.Binary
	// is nil, and from a capture file that can be read at any offset
	// (io.ReaderAt) the bytes are not even read. Every message and note is
	// the same as without it. It has no effect with HashBinary or
	// ExtractDir, which need the bytes.
	SkipBinary bool
	// Limits bounds the frame sizes believed; larger headers are garbage.
	Limits spec.Limits
	// GapTimeout is how long (in capture time) a hole in a stream is
	// waited for before its bytes count as lost. Default 2s.
	GapTimeout time.Duration
}

// Limits a decoder applies when Options leaves them zero: generous, since a
// decoder should show a large frame, yet bounded, since a header of garbage
// must not make it buffer gigabytes.
const (
	defaultDumpMaxJSON   = 8 << 20
	defaultDumpMaxBinary = 8 << 20
)

// Stats describes a whole run.
type Stats struct {
	Format     string // "pcap" or "pcapng"
	LinkType   string // for pcapng, the link types its packets use, joined by "+"
	Packets    int64
	Bytes      int64 // captured bytes of all packets
	TCPPackets int64 // packets handed to reassembly
	OtherTCP   int64 // TCP packets on other ports, not looked at (OnlyPort)
	TCPConns   int   // TCP connections looked at
	Conns      int
	// Port is the STEP port decoded whatever its bytes (Options.Port).
	Port int
	// Ports are the server ports STEP was found on, in increasing order,
	// with the number of connections on each.
	Ports       []PortCount
	Messages    int64
	First, Last time.Time
	Extracted   []Extracted
	// Live is set for a live capture (DecodeLive).
	Live *LiveStats
}

// PortCount is a server port and the STEP connections found on it.
type PortCount struct {
	Port  uint16 `json:"port"`
	Conns int    `json:"conns"`
}

// Decode reads a capture from r and reports what it finds to h, in capture
// order. It returns an error only when the input is not a capture at all or
// cannot be read; damage inside a capture is reported as notes.
func Decode(ctx context.Context, r io.Reader, opts Options, h Handler) (*Stats, error) {
	c, err := openCapture(r, opts.SkipBinary && !opts.HashBinary && opts.ExtractDir == "")
	if err != nil {
		return nil, err
	}
	d := newDecoder(c, opts, h)
	if d.file != nil {
		defer d.file.Close()
	}
	return d.run(ctx)
}

// DecodeLive captures packets on an interface and decodes them as they
// arrive, as Decode does a file, until lo's count or duration is reached
// or ctx is cancelled; then it ends as a capture file would, with
// Stats.Live saying what the kernel counted.
func DecodeLive(ctx context.Context, lo LiveOptions, opts Options, h Handler) (*Stats, error) {
	if opts.Port == 0 {
		opts.Port = spec.DefaultPort
	}
	if lo.Port == 0 {
		lo.Port = opts.Port
	}
	src, err := openLive(ctx, lo)
	if err != nil {
		return nil, err
	}
	c := &capture{src: src, linkType: layers.LinkTypeEthernet, format: "live capture on " + src.stats.Interface}
	// The source ends at EOF when the capture is to stop: the decoder
	// then finishes its connections as at a file's end.
	st, err := newDecoder(c, opts, h).run(context.Background())
	if ferr := src.finish(); err == nil && ferr != nil {
		err = ferr
	}
	if st != nil {
		live := src.stats
		st.Live = &live
	}
	return st, err
}

// pktCtx travels with every segment through reassembly, so that delivered
// bytes can be traced back to the packet that carried them.
type pktCtx struct {
	ci     gopacket.CaptureInfo
	num    int64
	capLen int // TCP payload bytes captured
	// origLen is the TCP payload length the IP header announces; larger
	// than capLen for a snaplen-truncated packet.
	origLen int
	// anc backs ci.AncillaryData, which points back at the context, so a
	// packet costs one allocation, not two.
	anc [1]any
}

// newPktCtx makes the context of one segment, findable from its capture info.
func newPktCtx(ci gopacket.CaptureInfo, num int64, capLen int) *pktCtx {
	pc := &pktCtx{}
	pc.init(ci, num, capLen)
	return pc
}

func (pc *pktCtx) init(ci gopacket.CaptureInfo, num int64, capLen int) {
	*pc = pktCtx{ci: ci, num: num, capLen: capLen, origLen: capLen}
	pc.anc[0] = pc
	pc.ci.AncillaryData = pc.anc[:]
}

func (c *pktCtx) GetCaptureInfo() gopacket.CaptureInfo { return c.ci }

type flowKey struct{ net, tcp gopacket.Flow }

type decoder struct {
	opts  Options
	h     Handler
	cap   *capture
	asm   *reassembly.Assembler
	conns map[flowKey]*connState
	stats Stats
	files *fileTracker

	linkTypes []layers.LinkType // a pcapng's link types seen so far

	nextID    int
	ports     map[uint16]int // STEP connections by server port
	pkt       int64
	now       time.Time
	lastFlush time.Time
	cur       *pktCtx

	// While the assembler flushes, connections are visited in map order;
	// events are held back and sorted so that output is deterministic.
	flushing bool
	deferred []deferredEvent

	ip4 layers.IPv4
	ip6 layers.IPv6
	tcp layers.TCP
	// scratch holds a frame's header and JSON while they are decoded
	// without the binary part (Options.SkipBinary).
	scratch []byte
	// file reads the capture at offsets; partial says the current packet
	// is read up to file.head only, its payload still to be filled.
	file    *fileReader
	partial bool
	lazy    lazyPayload
	// A packet's context is used for the next packet unless reassembly
	// may keep it (kept): only a segment that comes in sequence is handed
	// on at once, never stored.
	spare *pktCtx
	kept  bool
	// Messages and decoded JSON handed on and answered, to be used again
	// (Options.ReuseMessages).
	freeMsgs []*Message
	freeJSON []*spec.Message
}

// message returns an empty Message.
func (d *decoder) message() *Message {
	if n := len(d.freeMsgs); n > 0 {
		m := d.freeMsgs[n-1]
		d.freeMsgs = d.freeMsgs[:n-1]
		*m = Message{}
		return m
	}
	return &Message{}
}

// decodeFrame is spec.DecodeFrame, into the memory of a message no longer
// used where there is one.
func (d *decoder) decodeFrame(b []byte) (*spec.Message, int, error) {
	var into *spec.Message
	if n := len(d.freeJSON); n > 0 {
		into = d.freeJSON[n-1]
		d.freeJSON = d.freeJSON[:n-1]
	}
	m, n, err := spec.DecodeFrameInto(b, d.opts.Limits, into)
	if into != nil && m != into {
		d.freeJSON = append(d.freeJSON, into)
	}
	return m, n, err
}

// release takes back a message the handlers are done with. A request's
// decoded JSON lives on in its pending copy; a response ends the exchange,
// so its JSON and its request's are free too.
func (d *decoder) release(m *Message) {
	if !m.FromClient {
		if req := m.Request; req != nil {
			if req.Msg != nil {
				d.freeJSON = append(d.freeJSON, req.Msg)
			}
			d.freeMsgs = append(d.freeMsgs, req)
		}
		if m.Msg != nil {
			d.freeJSON = append(d.freeJSON, m.Msg)
		}
	}
	d.freeMsgs = append(d.freeMsgs, m)
}

// lazyPayload is the TCP payload of a packet read only in part: the stream
// reads what it needs of it through fillLazy while reassembly hands it on.
type lazyPayload struct {
	on      bool
	payload []byte
	base    int // offset of payload[0] in the packet
	valid   int // payload[:valid] is read
}

// fillLazy reads the lazy payload up to offset to; bytes passed over before
// from stay unread.
func (d *decoder) fillLazy(to int) { d.fillLazyRange(0, to) }

func (d *decoder) fillLazyRange(from, to int) {
	lz := &d.lazy
	if to <= lz.valid {
		return
	}
	d.file.fillRange(lz.base+max(from, lz.valid), lz.base+to)
	lz.valid = to
}

type deferredEvent struct {
	conn int
	msg  *Message
	note *Note
	end  *Conn
}

func newDecoder(c *capture, opts Options, h Handler) *decoder {
	if opts.Port == 0 {
		opts.Port = spec.DefaultPort
	}
	if opts.AnyPort {
		opts.OnlyPort = false
	}
	if opts.Limits.MaxJSON == 0 {
		opts.Limits.MaxJSON = defaultDumpMaxJSON
	}
	if opts.Limits.MaxBinary == 0 {
		opts.Limits.MaxBinary = defaultDumpMaxBinary
	}
	if opts.GapTimeout == 0 {
		opts.GapTimeout = 2 * time.Second
	}
	if opts.HashBinary || opts.ExtractDir != "" {
		opts.SkipBinary = false
	}
	d := &decoder{opts: opts, h: h, cap: c, conns: make(map[flowKey]*connState), ports: make(map[uint16]int)}
	d.file, _ = c.src.(*fileReader)
	d.files = newFileTracker(d)
	d.stats.Format = c.format
	d.stats.Port = opts.Port
	if !c.ng {
		// A pcapng names its link types per interface: they are recorded as
		// packets arrive.
		d.stats.LinkType = c.linkType.String()
	}
	pool := reassembly.NewStreamPool(d)
	d.asm = reassembly.NewAssembler(pool)
	// Out-of-order data is buffered up to these many 1900-byte pages;
	// beyond, the hole is given up on, which bounds memory per connection.
	d.asm.MaxBufferedPagesPerConnection = 4096
	d.asm.MaxBufferedPagesTotal = 65536
	return d
}

func (d *decoder) run(ctx context.Context) (*Stats, error) {
	var readErr error
	for {
		if d.pkt&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return &d.stats, err
			}
		}
		var data []byte
		var ci gopacket.CaptureInfo
		var err error
		if d.file != nil {
			data, ci, err = d.file.next()
			d.partial = err == nil && d.file.head < len(data)
		} else {
			data, ci, err = d.cap.src.ZeroCopyReadPacketData()
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = err
			}
			break
		}
		d.pkt++
		d.stats.Packets++
		d.stats.Bytes += int64(len(data))
		d.now = ci.Timestamp
		if d.stats.First.IsZero() {
			d.stats.First = ci.Timestamp
			if s, ok := d.h.(interface{ CaptureStart(time.Time) }); ok {
				s.CaptureStart(ci.Timestamp)
			}
		}
		if ci.Timestamp.After(d.stats.Last) {
			d.stats.Last = ci.Timestamp
		}
		d.packet(data, ci)
		if d.now.Sub(d.lastFlush) >= time.Second {
			d.flush(reassembly.FlushOptions{T: d.now.Add(-d.opts.GapTimeout)})
			d.lastFlush = d.now
		}
	}
	if readErr != nil {
		d.note(&Note{Packet: d.pkt + 1, Time: d.now, Offset: -1, Kind: NoteBadPacket, Severity: Error,
			Text: fmt.Sprintf("capture unreadable after packet %d: %v", d.pkt, readErr)})
	}
	d.flushing = true
	d.asm.FlushAll()
	d.releaseDeferred()
	d.files.finish()
	d.releaseDeferred()
	d.stats.Extracted = d.files.extracted
	d.reportPorts()
	if readErr != nil && d.pkt == 0 {
		return &d.stats, fmt.Errorf("read capture: %w", readErr)
	}
	return &d.stats, nil
}

func (d *decoder) flush(opt reassembly.FlushOptions) {
	d.flushing = true
	d.asm.FlushWithOptions(opt)
	d.releaseDeferred()
}

func (d *decoder) releaseDeferred() {
	d.flushing = false
	ev := d.deferred
	d.deferred = nil
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].conn < ev[j].conn })
	for _, e := range ev {
		switch {
		case e.msg != nil:
			d.h.Message(e.msg)
		case e.note != nil:
			d.h.Note(e.note)
		case e.end != nil:
			d.h.ConnEnd(e.end)
		}
	}
}

func connID(c *Conn) int {
	if c == nil {
		return 1 << 30
	}
	return c.ID
}

func (d *decoder) emitMessage(m *Message) {
	d.stats.Messages++
	if d.flushing {
		if m.Msg != nil && m.Msg.Binary != nil {
			m.Msg = m.Msg.Clone()
		}
		d.deferred = append(d.deferred, deferredEvent{conn: connID(m.Conn), msg: m})
		return
	}
	d.h.Message(m)
	if d.opts.ReuseMessages {
		d.release(m)
	}
}

func (d *decoder) note(n *Note) {
	if d.flushing {
		d.deferred = append(d.deferred, deferredEvent{conn: connID(n.Conn), note: n})
		return
	}
	d.h.Note(n)
}

func (d *decoder) connEnd(c *Conn) {
	if d.flushing {
		d.deferred = append(d.deferred, deferredEvent{conn: connID(c), end: c})
		return
	}
	d.h.ConnEnd(c)
}

// noteLinkType adds a pcapng packet's link type to the run's list.
func (d *decoder) noteLinkType(lt layers.LinkType) {
	for _, seen := range d.linkTypes {
		if seen == lt {
			return
		}
	}
	d.linkTypes = append(d.linkTypes, lt)
	if d.stats.LinkType != "" {
		d.stats.LinkType += "+"
	}
	d.stats.LinkType += lt.String()
}

func (d *decoder) badPacket(ci gopacket.CaptureInfo, format string, args ...any) {
	d.note(&Note{Packet: d.pkt, Time: ci.Timestamp, Offset: -1, Kind: NoteBadPacket, Severity: Warning,
		Text: fmt.Sprintf("packet %d: ", d.pkt) + fmt.Sprintf(format, args...)})
}

// packet decodes one captured packet down to TCP and hands it to reassembly.
func (d *decoder) packet(data []byte, ci gopacket.CaptureInfo) {
	lt := d.cap.packetLinkType(&ci)
	if d.cap.ng {
		d.noteLinkType(lt)
	}
	hdrEnd := -1
	if d.partial {
		if hdrEnd = d.headerEnd(lt, data); hdrEnd < 0 {
			d.fillPacket(0)
		}
	}
	ipData, version, err := networkLayer(lt, data)
	if err != nil {
		d.badPacket(ci, "%v", err)
		return
	}
	var netFlow gopacket.Flow
	var payloadLen int // TCP segment length the IP header announces
	var seg []byte
	switch version {
	case 4:
		if err := d.ip4.DecodeFromBytes(ipData, gopacket.NilDecodeFeedback); err != nil {
			d.badPacket(ci, "IPv4: %v", err)
			return
		}
		if d.ip4.Protocol != layers.IPProtocolTCP {
			return
		}
		if d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0 {
			if d.portMatch(nil) {
				d.badPacket(ci, "IPv4 fragment (fragments are not reassembled)")
			}
			return
		}
		netFlow = d.ip4.NetworkFlow()
		payloadLen = int(d.ip4.Length) - int(d.ip4.IHL)*4
		seg = d.ip4.Payload
	case 6:
		if err := d.ip6.DecodeFromBytes(ipData, gopacket.NilDecodeFeedback); err != nil {
			d.badPacket(ci, "IPv6: %v", err)
			return
		}
		next, rest, extLen, ok := skipIPv6Extensions(d.ip6.NextHeader, d.ip6.Payload)
		if !ok || next != layers.IPProtocolTCP {
			return
		}
		netFlow = d.ip6.NetworkFlow()
		payloadLen = int(d.ip6.Length) - extLen
		seg = rest
	default:
		return
	}
	if err := d.tcp.DecodeFromBytes(seg, gopacket.NilDecodeFeedback); err != nil {
		if len(seg) >= 4 && d.portMatchRaw(seg) {
			d.badPacket(ci, "TCP header truncated or malformed: %v", err)
		}
		return
	}
	t := &d.tcp
	if !d.portMatch(t) {
		d.stats.OtherTCP++
		return
	}
	if d.partial {
		if cap(data)-cap(t.Payload) != hdrEnd {
			// Not the headers looked at first: read all and start again.
			d.fillPacket(0)
			d.packet(data, ci)
			return
		}
		// The payload is read as the stream needs it (see Accept).
		d.lazy = lazyPayload{on: true, payload: t.Payload, base: hdrEnd, valid: min(max(d.file.head-hdrEnd, 0), len(t.Payload))}
		defer d.endLazy()
	}
	pc := d.spare
	if pc == nil {
		pc = &pktCtx{}
	}
	d.spare, d.kept = nil, false
	pc.init(ci, d.pkt, len(t.Payload))
	if want := payloadLen - int(t.DataOffset)*4; want > len(t.Payload) && ci.CaptureLength < ci.Length {
		if d.lazy.on {
			d.fillLazy(len(t.Payload))
		}
		// Snaplen truncation: keep the sequence space whole by padding
		// with zeros; the stream marks those bytes as missing.
		if want-len(t.Payload) <= 1<<16 {
			pc.origLen = want
			padded := make([]byte, want)
			copy(padded, t.Payload)
			t.Payload = padded
		}
	}
	d.stats.TCPPackets++
	d.cur = pc
	if t.ACK {
		if cs := d.conns[flowKey{netFlow, t.TransportFlow()}]; cs != nil {
			cs.peerAcked(netFlow, t)
		}
	}
	d.asm.AssembleWithContext(netFlow, t, pc)
	if !d.kept {
		d.spare = pc
	}
}

// headerEnd returns where a TCP segment's payload starts in a packet read
// up to file.head, or -1 when it is not a TCP segment whose headers that
// holds.
func (d *decoder) headerEnd(lt layers.LinkType, data []byte) int {
	ip, version, err := networkLayer(lt, data)
	if err != nil {
		return -1
	}
	at := len(data) - len(ip)
	switch version {
	case 4:
		if len(ip) < 20 || ip[9] != byte(layers.IPProtocolTCP) {
			return -1
		}
		at += int(ip[0]&0x0f) * 4
	case 6:
		if len(ip) < 40 || ip[6] != byte(layers.IPProtocolTCP) {
			return -1
		}
		at += 40
	default:
		return -1
	}
	if at+13 > d.file.head {
		return -1
	}
	if end := at + int(data[at+12]>>4)*4; end <= d.file.head {
		return end
	}
	return -1
}

// endLazy ends a packet read in part.
func (d *decoder) endLazy() {
	d.lazy = lazyPayload{}
	d.partial = false
}

// fillPacket reads the current packet from offset from on.
func (d *decoder) fillPacket(from int) {
	d.file.fill(from)
	d.partial = false
}

func (d *decoder) portMatch(t *layers.TCP) bool {
	if t == nil {
		return true
	}
	return !d.opts.OnlyPort || int(t.SrcPort) == d.opts.Port || int(t.DstPort) == d.opts.Port
}

func (d *decoder) portMatchRaw(seg []byte) bool {
	sp := int(seg[0])<<8 | int(seg[1])
	dp := int(seg[2])<<8 | int(seg[3])
	return !d.opts.OnlyPort || sp == d.opts.Port || dp == d.opts.Port
}

// reportPorts says on which ports STEP was found, or that it was found
// nowhere and where it was looked for.
func (d *decoder) reportPorts() {
	for p, n := range d.ports {
		d.stats.Ports = append(d.stats.Ports, PortCount{Port: p, Conns: n})
	}
	sort.Slice(d.stats.Ports, func(i, j int) bool { return d.stats.Ports[i].Port < d.stats.Ports[j].Port })
	note := func(sev Severity, kind, text string) {
		d.h.Note(&Note{Packet: d.pkt, Time: d.now, Offset: -1, Kind: kind, Severity: sev, Text: text})
	}
	if d.stats.Messages == 0 {
		switch {
		case d.opts.OnlyPort && d.stats.OtherTCP > 0:
			note(Warning, NoteNoSTEP, fmt.Sprintf("no STEP message on port %d; %d TCP packets on other ports were not looked at (leave out --port to look for STEP on every port)",
				d.opts.Port, d.stats.OtherTCP))
		case d.opts.OnlyPort:
			note(Warning, NoteNoSTEP, fmt.Sprintf("no STEP message on port %d", d.opts.Port))
		case d.stats.TCPConns == 0:
			note(Warning, NoteNoSTEP, "no STEP message: the capture holds no TCP connection")
		default:
			note(Warning, NoteNoSTEP, fmt.Sprintf("no STEP message: none of the capture's %d TCP connections is on port %d or starts like STEP",
				d.stats.TCPConns, d.opts.Port))
		}
		return
	}
	var other []string
	for _, pc := range d.stats.Ports {
		if int(pc.Port) != d.opts.Port {
			other = append(other, fmt.Sprintf("%d (%d %s)", pc.Port, pc.Conns, plural(pc.Conns, "connection", "connections")))
		}
	}
	if len(other) > 0 {
		note(Info, NoteOtherPort, fmt.Sprintf("STEP recognised by its bytes on port %s, besides port %d (--port %d to decode that port alone)",
			strings.Join(other, ", "), d.opts.Port, d.opts.Port))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// skipIPv6Extensions walks the extension headers a TCP segment may follow.
func skipIPv6Extensions(next layers.IPProtocol, b []byte) (layers.IPProtocol, []byte, int, bool) {
	n := 0
	for {
		switch next {
		case layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing, layers.IPProtocolIPv6Destination:
			if len(b) < 8 {
				return 0, nil, 0, false
			}
			l := (int(b[1]) + 1) * 8
			if len(b) < l {
				return 0, nil, 0, false
			}
			next = layers.IPProtocol(b[0])
			b = b[l:]
			n += l
		case layers.IPProtocolIPv6Fragment:
			return 0, nil, 0, false
		default:
			return next, b, n, true
		}
	}
}

// New is the reassembly.StreamFactory hook: a connection not seen before.
func (d *decoder) New(netFlow, tcpFlow gopacket.Flow, t *layers.TCP, ac reassembly.AssemblerContext) reassembly.Stream {
	ci := ac.GetCaptureInfo()
	src := endpoint(netFlow.Src(), tcpFlow.Src())
	dst := endpoint(netFlow.Dst(), tcpFlow.Dst())
	cs := &connState{d: d, netFlow: netFlow, tcpFlow: tcpFlow}
	// The ID is given when the connection first shows something, so that
	// a stray ACK after a connection's end makes no empty connection.
	cs.conn = &Conn{First: ci.Timestamp, Last: ci.Timestamp}
	cs.conn.Summary.Ops = make(map[string]int)
	// Which side is the client: the one that sends a SYN, or the one that
	// talks to the STEP port; failing both (a capture that starts
	// mid-connection on another port), the first decoded message decides.
	clientFirst := true
	switch {
	case t.SYN && !t.ACK:
	case t.SYN && t.ACK:
		clientFirst = false
	case int(t.DstPort) == d.opts.Port:
	case int(t.SrcPort) == d.opts.Port:
		clientFirst = false
	default:
		cs.sideGuessed = true
		clientFirst = t.SrcPort > t.DstPort
	}
	cs.setClient(clientFirst, src, dst)
	if int(t.SrcPort) != d.opts.Port && int(t.DstPort) != d.opts.Port {
		cs.probing = true
	}
	d.stats.TCPConns++
	for i := range cs.half {
		cs.half[i] = &halfStream{c: cs, dir: reassembly.TCPFlowDirection(i == 1)}
	}
	d.conns[flowKey{netFlow, tcpFlow}] = cs
	d.conns[flowKey{netFlow.Reverse(), tcpFlow.Reverse()}] = cs
	return cs
}

func endpoint(n, t gopacket.Endpoint) netip.AddrPort {
	a, _ := netip.AddrFromSlice(n.Raw())
	p := t.Raw()
	var port uint16
	if len(p) == 2 {
		port = uint16(p[0])<<8 | uint16(p[1])
	}
	return netip.AddrPortFrom(a.Unmap(), port)
}
