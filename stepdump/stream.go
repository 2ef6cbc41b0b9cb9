package stepdump

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/reassembly"

	"github.com/stepkit/stepkit/spec"
)

// halfStream cuts one direction of a connection into STEP frames. It holds
// at most one frame plus what has arrived after it, so memory follows the
// frame sizes, not the capture's.
type halfStream struct {
	c   *connState
	dir reassembly.TCPFlowDirection

	// Sequence bookkeeping, to map TCP sequence numbers to stream offsets.
	started      bool
	deliveredSeq reassembly.Sequence // sequence number of the next byte to deliver
	delivered    int64               // stream offset of that byte
	seen         []Range             // ranges received beyond delivered
	maxSeen      int64               // end of the furthest segment seen
	holes        []Range             // stream ranges the capture does not hold
	finSeen      bool
	finOff       int64

	// Framing.
	buf       []byte
	bufOff    int64 // stream offset of buf[0]
	r         int   // read position in buf
	synced    bool  // r is at a frame boundary
	tentative bool  // synced by a guess that no frame has confirmed yet
	midStream bool  // the capture missed the start of this direction
	skipped   int64 // bytes passed over while looking for a header
	skipFrom  int64
	finished  bool
	frames    int64

	// A frame whose header and JSON have arrived while its binary part is
	// passed over uncopied (Options.SkipBinary): binLeft bytes are still to
	// come, after which bin is handed on as if it had been cut whole.
	bin     *Message
	binPos  int64
	binN    int
	binLeft int64
}

func (h *halfStream) fromClient() bool { return h.dir == h.c.clientDir }

// offOf maps a sequence number to a stream offset.
func (h *halfStream) offOf(seq uint32) int64 {
	return h.delivered + int64(h.deliveredSeq.Difference(reassembly.Sequence(seq)))
}

func (h *halfStream) seqOf(off int64) uint32 {
	return uint32(int64(h.deliveredSeq) + (off - h.delivered))
}

// accept records a segment before reassembly handles it.
func (h *halfStream) accept(t *layers.TCP, pc *pktCtx, start *bool) {
	if !h.started {
		h.started = true
		if t.SYN {
			h.deliveredSeq = reassembly.Sequence(t.Seq).Add(1)
			h.synced = true
		} else {
			*start = true
			h.deliveredSeq = reassembly.Sequence(t.Seq)
			h.midStream = true
		}
	}
	n := len(t.Payload)
	seq := t.Seq
	if t.SYN {
		seq++
	}
	if n > 0 {
		off := h.offOf(seq)
		h.c.conn.Summary.DuplicateBytes += h.seenBefore(Range{off, off + int64(n)})
		h.addSeen(Range{off, off + int64(n)})
		if pc != nil && pc.origLen > pc.capLen {
			h.addHole(Range{off + int64(pc.capLen), off + int64(pc.origLen)})
			h.c.conn.Summary.LostBytes += int64(pc.origLen - pc.capLen)
			h.c.note(h, pc.num, pc.ci.Timestamp, off+int64(pc.capLen), NoteSnaplen, Warning,
				fmt.Sprintf("packet %d truncated by the capture's snaplen: %d of %d payload bytes captured, stream bytes %d-%d missing",
					pc.num, pc.capLen, pc.origLen, off+int64(pc.capLen), off+int64(pc.origLen)))
		}
	}
	if t.FIN && !h.finSeen {
		h.finSeen = true
		h.finOff = h.offOf(seq) + int64(n)
	}
	if t.FIN || n > 0 {
		if end := h.offOf(seq) + int64(n); end > h.maxSeen {
			h.maxSeen = end
		}
	}
}

// seenBefore counts the bytes of r that an earlier segment carried.
func (h *halfStream) seenBefore(r Range) int64 {
	var n int64
	total := r.End - r.Start
	if r.Start < h.delivered {
		n += min(r.End, h.delivered) - r.Start
		r.Start = min(r.End, h.delivered)
	}
	for _, s := range h.seen {
		if lo, hi := max(r.Start, s.Start), min(r.End, s.End); lo < hi {
			n += hi - lo
		}
	}
	return min(n, total)
}

func (h *halfStream) addSeen(r Range) {
	if r.End <= h.delivered {
		return
	}
	if len(h.seen) > 4096 { // a pathological capture: stop tracking
		return
	}
	h.seen = append(h.seen, r)
}

func (h *halfStream) addHole(r Range) {
	if n := len(h.holes); n > 0 && h.holes[n-1].End >= r.Start && h.holes[n-1].Start <= r.Start {
		if r.End > h.holes[n-1].End {
			h.holes[n-1].End = r.End
		}
		return
	}
	h.holes = append(h.holes, r)
}

// missingIn returns the holes inside [start, end), relative to start.
func (h *halfStream) missingIn(start, end int64) []Range {
	var out []Range
	for _, x := range h.holes {
		s, e := max(x.Start, start), min(x.End, end)
		if s < e {
			out = append(out, Range{s - start, e - start})
		}
	}
	return out
}

// holeAt returns the end of the hole holding offset off, or -1.
func (h *halfStream) holeAt(off int64) int64 {
	for _, x := range h.holes {
		if off >= x.Start && off < x.End {
			return x.End
		}
	}
	return -1
}

func (h *halfStream) pruneHoles() {
	pos := h.bufOff + int64(h.r)
	i := 0
	for _, x := range h.holes {
		if x.End > pos {
			h.holes[i] = x
			i++
		}
	}
	h.holes = h.holes[:i]
}

// fillLost is called when the peer acknowledged bytes the capture does not
// hold: they were lost by the capture, not by the network, so waiting for a
// retransmission is pointless. The holes are fed to reassembly as zeros,
// marked missing, so the frames around them keep their place.
func (h *halfStream) fillLost(upTo int64) {
	// Bytes up to the acknowledgement were sent, seen by the capture or
	// not; only a FIN's sequence number is not a byte.
	limit := upTo
	if h.finSeen {
		limit = min(limit, h.finOff)
	}
	if limit <= h.delivered || limit-h.delivered > 1<<20 {
		return
	}
	// The ranges in [delivered, limit) that no segment covered.
	pos := h.delivered
	var gaps []Range
	for pos < limit {
		next := limit
		covered := false
		for _, s := range h.seen {
			if s.Start <= pos && s.End > pos {
				pos = s.End
				covered = true
				break
			}
			if s.Start > pos && s.Start < next {
				next = s.Start
			}
		}
		if covered {
			continue
		}
		gaps = append(gaps, Range{pos, next})
		pos = next
	}
	d := h.c.d
	for _, g := range gaps {
		h.addHole(g)
		h.c.conn.Summary.LostBytes += g.End - g.Start
		h.c.note(h, d.pkt, d.now, g.Start, NoteBytesLost, Error,
			fmt.Sprintf("stream bytes %d-%d (%d bytes) are not in the capture, though the peer acknowledged them (packet %d)",
				g.Start, g.End, g.End-g.Start, d.pkt))
		t := &layers.TCP{SrcPort: h.c.port(h.dir, true), DstPort: h.c.port(h.dir, false), Seq: h.seqOf(g.Start), Window: 1}
		t.SetInternalPortsForTesting() // sets the port bytes TransportFlow reads
		t.Payload = make([]byte, g.End-g.Start)
		pc := newPktCtx(d.cur.ci, d.pkt, len(t.Payload))
		d.asm.AssembleWithContext(h.c.netFlowOf(h.dir), t, pc)
	}
}

// deliver takes reassembled bytes; skip > 0 says that many bytes before them
// were never seen. With lz, data is a payload read only as far as needed:
// the bytes of binary parts passed over are never read.
func (h *halfStream) deliver(data []byte, skip int, pc *pktCtx, ts time.Time, lz *lazyPayload) {
	num := pc.num
	if skip > 0 {
		h.gap(int64(skip), num, ts)
		h.delivered += int64(skip)
		h.deliveredSeq = h.deliveredSeq.Add(skip)
	}
	for len(data) > 0 {
		if h.binLeft > 0 {
			k := min(int64(len(data)), h.binLeft)
			h.delivered += k
			h.deliveredSeq = h.deliveredSeq.Add(int(k))
			h.passBinary(k, num, ts)
			data = data[k:]
			continue
		}
		n := len(data)
		if lz != nil {
			n = h.wanted(n)
			from := len(lz.payload) - len(data)
			h.c.d.fillLazyRange(from, from+n)
		}
		if h.r > 0 && (h.r == len(h.buf) || h.r >= 1<<16) {
			k := copy(h.buf, h.buf[h.r:])
			h.buf = h.buf[:k]
			h.bufOff += int64(h.r)
			h.r = 0
		}
		h.buf = append(h.buf, data[:n]...)
		h.delivered += int64(n)
		h.deliveredSeq = h.deliveredSeq.Add(n)
		data = data[n:]
		h.process(num, ts, false)
	}
	if len(h.seen) > 0 {
		i := 0
		for _, s := range h.seen {
			if s.End > h.delivered {
				h.seen[i] = s
				i++
			}
		}
		h.seen = h.seen[:i]
	}
}

// wanted returns how many of the n bytes arriving next to take before
// cutting frames again: where a frame starts, only up to the end of its
// header and JSON, after which its binary part may be passed over.
func (h *halfStream) wanted(n int) int {
	if !h.c.d.opts.SkipBinary || !h.synced || h.tentative || len(h.holes) > 0 {
		return n
	}
	live := len(h.buf) - h.r
	if live < spec.HeaderLen {
		return min(n, spec.HeaderLen-live)
	}
	jlen := binary.BigEndian.Uint32(h.buf[h.r : h.r+4])
	if jlen > h.c.d.opts.Limits.MaxJSON {
		return n
	}
	jsonEnd := spec.HeaderLen + int(jlen)
	if live < jsonEnd {
		return min(n, jsonEnd-live)
	}
	// Up to the frame's end: the next frame is looked at on its own.
	blen := binary.BigEndian.Uint32(h.buf[h.r+4 : h.r+8])
	if end := jsonEnd + int(blen); blen <= h.c.d.opts.Limits.MaxBinary && end > live {
		return min(n, end-live)
	}
	return n
}

// heldBeyond reports whether reassembly may hold segments beyond the next
// byte to deliver, waiting for a hole to fill.
func (h *halfStream) heldBeyond() bool {
	for _, s := range h.seen {
		if s.Start > h.delivered {
			return true
		}
	}
	return false
}

// gap handles n bytes that reassembly gave up waiting for.
func (h *halfStream) gap(n int64, num int64, ts time.Time) {
	start := h.bufOff + int64(len(h.buf))
	h.c.conn.Summary.LostBytes += n
	h.c.note(h, num, ts, start, NoteBytesLost, Error,
		fmt.Sprintf("stream bytes %d-%d (%d bytes) are not in the capture", start, start+n, n))
	if h.binLeft > 0 {
		// The hole falls in a binary part being passed over: the frame
		// keeps its place and its message says which bytes are missing.
		k := min(n, h.binLeft)
		h.addHole(Range{start, start + k})
		h.passBinary(k, num, ts)
		n -= k
		start += k
		if n == 0 {
			return
		}
	}
	if h.synced && !h.tentative {
		live := h.buf[h.r:]
		if len(live) >= spec.HeaderLen {
			flen := int64(spec.HeaderLen) + int64(binary.BigEndian.Uint32(live[0:4])) + int64(binary.BigEndian.Uint32(live[4:8]))
			if h.headerWithinLimits(live) && int64(len(live)) < flen {
				k := min(n, flen-int64(len(live)))
				h.addHole(Range{start, start + k})
				h.buf = append(h.buf, make([]byte, k)...)
				n -= k
				start += k
				if n == 0 {
					return
				}
				h.process(num, ts, false)
			}
		}
	}
	// The hole covers where a header would be: frames can only be found
	// again by looking for one.
	h.dropLive()
	h.bufOff = start + n
	h.synced = false
	h.tentative = false
	h.skipped = 0
	h.skipFrom = h.bufOff
}

func (h *halfStream) dropLive() {
	h.bufOff += int64(len(h.buf))
	h.buf = h.buf[:0]
	h.r = 0
}

func (h *halfStream) headerWithinLimits(b []byte) bool {
	lim := h.c.d.opts.Limits
	return binary.BigEndian.Uint32(b[0:4]) <= lim.MaxJSON && binary.BigEndian.Uint32(b[4:8]) <= lim.MaxBinary
}

// plausibleHeader reports whether b starts like a STEP frame: lengths within
// the limits and a JSON object's first bytes.
func (h *halfStream) plausibleHeader(b []byte) bool {
	if len(b) < spec.HeaderLen+2 || !h.headerWithinLimits(b) {
		return false
	}
	if binary.BigEndian.Uint32(b[0:4]) < 2 || b[8] != '{' {
		return false
	}
	switch b[9] {
	case '"', '}', ' ', '\n', '\r', '\t':
		return true
	}
	return false
}

func (h *halfStream) consume(n int) {
	h.r += n
	if h.r >= len(h.buf) {
		h.bufOff += int64(len(h.buf))
		h.buf = h.buf[:0]
		h.r = 0
	}
	h.pruneHoles()
}

// skip passes over n bytes while resynchronising.
func (h *halfStream) skip(n int) {
	if h.skipped == 0 {
		h.skipFrom = h.bufOff + int64(h.r)
	}
	h.skipped += int64(n)
	h.consume(n)
}

// process cuts as many frames as the buffer holds. final says no more bytes
// will come.
func (h *halfStream) process(num int64, ts time.Time, final bool) {
	for {
		live := h.buf[h.r:]
		pos := h.bufOff + int64(h.r)
		if len(live) == 0 {
			return
		}
		if h.c.probing && h.frames == 0 && !h.midStream && pos == 0 && len(live) >= spec.HeaderLen+2 && !h.plausibleHeader(live) {
			// A connection off the STEP port that does not start as
			// STEP does is not STEP: it is not decoded any further.
			h.c.ignore()
			return
		}
		if end := h.holeAt(pos); end >= 0 {
			// Nothing can be read inside a hole; frames resume after it.
			k := min(end-pos, int64(len(live)))
			h.synced, h.tentative = false, false
			h.consume(int(k))
			continue
		}
		if !h.synced {
			i, found := h.scan(live, pos)
			if !found {
				keep := min(len(live), spec.HeaderLen+1)
				if final {
					keep = 0
				}
				if n := len(live) - keep; n > 0 {
					h.skip(n)
				}
				if final {
					h.reportSkipped(num, ts, -1)
				}
				return
			}
			if i > 0 {
				h.skip(i)
			}
			h.synced, h.tentative = true, true
			continue
		}
		if len(live) < spec.HeaderLen {
			if final {
				h.truncated(live, pos, num, ts)
			}
			return
		}
		jlen := binary.BigEndian.Uint32(live[0:4])
		blen := binary.BigEndian.Uint32(live[4:8])
		if h.missingHeader(pos) {
			h.synced, h.tentative = false, false
			h.skip(1)
			continue
		}
		if h.c.d.opts.SkipBinary && !final && h.skipBinary(live, pos, jlen, blen) {
			return
		}
		if !final && h.headerWithinLimits(live) && int64(len(live)) < int64(spec.HeaderLen)+int64(jlen)+int64(blen) {
			return // the frame is not whole yet, as DecodeFrame would say
		}
		msg, n, err := h.c.d.decodeFrame(live)
		var fe *spec.FrameError
		errors.As(err, &fe)
		switch {
		case err == nil && len(h.missingIn(pos, pos+int64(spec.HeaderLen)+int64(jlen))) == 0:
			m := h.c.d.message()
			m.Packet, m.Time, m.Offset, m.JSONLen, m.BinaryLen, m.Msg = num, ts, pos, jlen, blen, msg
			h.frame(m, pos, n)
			continue
		case fe != nil && (fe.Err == spec.ErrTruncatedHeader || fe.Err == spec.ErrTruncatedBody):
			if final {
				if h.tentative {
					h.skip(len(live))
					h.reportSkipped(num, ts, -1)
					return
				}
				h.truncated(live, pos, num, ts)
			}
			return
		case fe != nil && (fe.Err == spec.ErrJSONTooLarge || fe.Err == spec.ErrBinaryTooLarge):
			if !h.tentative {
				h.c.note(h, num, ts, pos, NoteBadFrame, Error,
					fmt.Sprintf("header at stream offset %d announces %d+%d bytes, more than a STEP frame can be; looking for the next frame", pos, jlen, blen))
				if h.fromClient() {
					h.c.oversized++
				}
			}
			h.synced, h.tentative = false, false
			h.skip(1)
			continue
		case fe != nil && fe.Err == spec.ErrCharCountLength:
			m := &Message{Packet: num, Time: ts, Offset: pos, JSONLen: jlen, BinaryLen: blen, Msg: fe.Recovered,
				CharCount: true, ActualJSONLen: fe.ActualJSONLen, Err: fe}
			h.frame(m, pos, n)
			continue
		}
		// The JSON part does not decode.
		if !final && needMoreForCharCount(live, jlen, blen) {
			return
		}
		jsonEnd := pos + int64(spec.HeaderLen) + int64(jlen)
		if miss := h.missingIn(pos, jsonEnd); len(miss) > 0 {
			m := &Message{Packet: num, Time: ts, Offset: pos, JSONLen: jlen, BinaryLen: blen,
				Err: fmt.Errorf("JSON bytes %s of the frame are not in the capture", miss[0])}
			h.frame(m, pos, n)
			continue
		}
		if h.tentative {
			h.synced, h.tentative = false, false
			h.skip(1)
			continue
		}
		if fe != nil {
			// The codec's offset is that of the buffer, not the stream.
			err = fe.Err
			if fe.Detail != "" {
				err = fmt.Errorf("%w: %s", fe.Err, fe.Detail)
			}
		}
		h.frame(&Message{Packet: num, Time: ts, Offset: pos, JSONLen: jlen, BinaryLen: blen, Err: err}, pos, n)
	}
}

// missingHeader reports whether any of the 8 header bytes at pos is lost.
func (h *halfStream) missingHeader(pos int64) bool {
	return len(h.missingIn(pos, pos+spec.HeaderLen)) > 0
}

// needMoreForCharCount reports whether a frame whose JSON does not parse may
// be a character-count frame whose end has not arrived yet: its JSON text
// holds non-ASCII characters and fewer than jlen characters are at hand.
func needMoreForCharCount(live []byte, jlen, blen uint32) bool {
	body := live[spec.HeaderLen:]
	if int(jlen) > len(body) {
		return false
	}
	ascii := true
	for _, c := range body[:jlen] {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return false
	}
	i := 0
	for n := uint32(0); n < jlen; n++ {
		if i >= len(body) {
			return true
		}
		if !utf8.FullRune(body[i:]) {
			return true
		}
		r, sz := utf8.DecodeRune(body[i:])
		if r == utf8.RuneError && sz <= 1 {
			return false
		}
		i += sz
	}
	return i+int(blen) > len(body)
}

// scan looks for a plausible header in live, skipping lost bytes.
func (h *halfStream) scan(live []byte, pos int64) (int, bool) {
	for i := 0; i+spec.HeaderLen+2 <= len(live); i++ {
		if h.plausibleHeader(live[i:]) && len(h.missingIn(pos+int64(i), pos+int64(i)+spec.HeaderLen+2)) == 0 {
			return i, true
		}
	}
	return 0, false
}

// frame hands a cut frame to the connection and moves past it.
func (h *halfStream) frame(m *Message, pos int64, n int) {
	h.emit(m, pos, n)
	h.consume(n)
}

// emit hands the frame of n bytes at stream offset pos to the connection.
func (h *halfStream) emit(m *Message, pos int64, n int) {
	if h.tentative {
		h.tentative = false
	}
	h.reportSkipped(m.Packet, m.Time, pos)
	m.Missing = h.missingIn(pos, pos+int64(n))
	h.frames++
	h.c.frame(h, m)
}

// skipBinary starts passing over the binary part of the frame at the head
// of live, whose header and JSON have arrived but not all of its binary
// part. It does so only where the frame could not turn out otherwise: the
// stream is in step (no guessed boundary, no bytes lost) and the JSON
// decodes within the length its header gives. It reports whether it took
// the frame; then all of live is consumed.
func (h *halfStream) skipBinary(live []byte, pos int64, jlen, blen uint32) bool {
	jsonEnd := spec.HeaderLen + int64(jlen)
	if h.tentative || blen == 0 || len(h.holes) > 0 || !h.headerWithinLimits(live) ||
		int64(len(live)) < jsonEnd || int64(len(live)) >= jsonEnd+int64(blen) {
		return false
	}
	d := h.c.d
	d.scratch = append(d.scratch[:0], live[:jsonEnd]...)
	binary.BigEndian.PutUint32(d.scratch[4:8], 0)
	msg, _, err := d.decodeFrame(d.scratch)
	if err != nil {
		// A character-count JSON length or a broken JSON part: the whole
		// frame is needed to tell.
		return false
	}
	msg.Binary = nil
	h.bin = d.message()
	h.bin.Offset, h.bin.JSONLen, h.bin.BinaryLen, h.bin.Msg = pos, jlen, blen, msg
	h.binPos = pos
	h.binN = int(jsonEnd) + int(blen)
	h.binLeft = jsonEnd + int64(blen) - int64(len(live))
	h.consume(len(live))
	return true
}

// passBinary counts n bytes of the binary part being passed over; the
// packet num that brings its last byte completes the frame.
func (h *halfStream) passBinary(n int64, num int64, ts time.Time) {
	h.binLeft -= n
	h.bufOff += n
	if h.binLeft > 0 {
		return
	}
	m := h.bin
	h.bin = nil
	m.Packet, m.Time = num, ts
	h.emit(m, h.binPos, h.binN)
	h.pruneHoles()
}

func (h *halfStream) reportSkipped(num int64, ts time.Time, at int64) {
	if h.skipped == 0 {
		if h.midStream && h.frames == 0 && at >= 0 {
			h.midStream = false
		}
		return
	}
	var text string
	switch {
	case h.midStream && h.frames == 0 && at >= 0:
		text = fmt.Sprintf("capture starts mid-connection: skipped %d bytes to the first frame header at stream offset %d", h.skipped, at)
		h.c.note(h, num, ts, h.skipFrom, NoteMidStream, Info, text)
	case at >= 0:
		text = fmt.Sprintf("skipped %d bytes at stream offset %d; resynchronised on a frame header at offset %d", h.skipped, h.skipFrom, at)
		h.c.note(h, num, ts, h.skipFrom, NoteResync, Warning, text)
	default:
		text = fmt.Sprintf("%d bytes at stream offset %d hold no recognisable STEP frame", h.skipped, h.skipFrom)
		h.c.note(h, num, ts, h.skipFrom, NoteResync, Warning, text)
	}
	h.midStream = false
	h.skipped = 0
}

// truncated reports a frame the capture ends inside, decoding its JSON when
// that part is whole.
func (h *halfStream) truncated(live []byte, pos int64, num int64, ts time.Time) {
	defer h.dropLive()
	if len(live) < spec.HeaderLen {
		h.c.note(h, num, ts, pos, NoteTruncatedFrame, Warning,
			fmt.Sprintf("capture ends inside a frame header at stream offset %d (%d of 8 bytes)", pos, len(live)))
		return
	}
	jlen := binary.BigEndian.Uint32(live[0:4])
	blen := binary.BigEndian.Uint32(live[4:8])
	total := int64(spec.HeaderLen) + int64(jlen) + int64(blen)
	h.c.note(h, num, ts, pos, NoteTruncatedFrame, Warning,
		fmt.Sprintf("capture ends inside the frame at stream offset %d: %d of %d bytes", pos, len(live), total))
	if int64(len(live)) < int64(spec.HeaderLen)+int64(jlen) {
		return
	}
	// The JSON is whole: decode it with the binary cut short.
	b := make([]byte, total)
	copy(b, live)
	msg, _, err := spec.DecodeFrame(b, h.c.d.opts.Limits)
	m := &Message{Packet: num, Time: ts, Offset: pos, JSONLen: jlen, BinaryLen: blen, Msg: msg,
		Err: fmt.Errorf("frame cut short by the end of the capture (%d of %d bytes)", len(live), total)}
	if err != nil {
		m.Msg = nil
	}
	missing := h.missingIn(pos, pos+int64(len(live)))
	m.Missing = append(missing, Range{int64(len(live)), total})
	h.frames++
	h.c.frame(h, m)
}

// binaryCut reports the frame being passed over as truncated() reports a
// frame the capture ends inside.
func (h *halfStream) binaryCut(num int64, ts time.Time) {
	m, pos := h.bin, h.binPos
	total := int64(h.binN)
	have := total - h.binLeft
	h.bin, h.binLeft = nil, 0
	h.c.note(h, num, ts, pos, NoteTruncatedFrame, Warning,
		fmt.Sprintf("capture ends inside the frame at stream offset %d: %d of %d bytes", pos, have, total))
	m.Packet, m.Time = num, ts
	m.Err = fmt.Errorf("frame cut short by the end of the capture (%d of %d bytes)", have, total)
	missing := h.missingIn(pos, pos+have)
	m.Missing = append(missing, Range{have, total})
	h.frames++
	h.c.frame(h, m)
}

// finish is called when no more bytes will come in this direction.
func (h *halfStream) finish(num int64, ts time.Time) {
	if h.finished {
		return
	}
	h.finished = true
	if h.binLeft > 0 {
		h.binaryCut(num, ts)
	}
	h.process(num, ts, true)
	if h.r < len(h.buf) {
		live := h.buf[h.r:]
		h.truncated(live, h.bufOff+int64(h.r), num, ts)
	}
	h.buf = nil
	h.seen = nil
	h.holes = nil
}
