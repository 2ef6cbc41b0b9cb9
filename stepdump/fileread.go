package stepdump

import (
	"bytes"
	"encoding/binary"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// fileReader reads a pcap or pcapng file at the offsets it needs instead of
// from start to end, so that the bytes of binary parts the decoder passes
// over (Options.SkipBinary) are never read: a packet comes with its first
// bytes read, and fill reads the rest from where the decoder still needs
// it. It reads the common records itself (pcap records; pcapng section
// headers, interface descriptions and enhanced packet blocks) and hands
// anything else (another block type, an odd length or option, the file's
// end inside a record) to pcapgo, started at that record with the file
// header or the section's header blocks replayed before it, so what it
// returns is always what pcapgo returns reading the file from its start.
type fileReader struct {
	ra   io.ReaderAt
	size int64
	off  int64 // file offset of the next record
	ng   bool
	big  bool // byte order of the file (pcap) or section (pcapng)

	// win caches the file from winOff; winSize adapts: it doubles while
	// the file is read from end to end and halves when bytes are passed
	// over, so skipped bytes are seldom read ahead.
	win     []byte
	winOff  int64
	winSize int
	readEnd int64 // furthest file offset read so far

	// The current packet: data[:head] holds the file's bytes from dataOff;
	// fill reads the rest. pkt backs packets the window does not hold.
	data    []byte
	dataOff int64
	head    int
	pkt     []byte
	err     error // a failed fill, returned by the next read

	// pcap
	header     []byte // the 24-byte file header, replayed to pcapgo
	nanoFactor uint32
	maxCapLen  int

	// pcapng: the current section's header and interface blocks as read,
	// replayed to pcapgo.
	prefix []byte
	ifaces []ngIface
	ancil  [1]any

	fallback packetSource // pcapgo, from the first record not read here
	ahead    *readAhead
}

type ngIface struct {
	link                           layers.LinkType
	secondMask, scaleUp, scaleDown uint64
	offset                         uint64
}

const (
	minWindow = 2 << 10
	maxWindow = 256 << 10
	// packetHead is how much of a packet is read before the decoder says
	// what else it needs: any link, IP and TCP header fit.
	packetHead = 512
)

// newFileReader reads the capture in ra, size bytes from its start, whose
// first bytes say pcapng (ng) or pcap.
func newFileReader(ra io.ReaderAt, size int64, ng bool) *fileReader {
	return &fileReader{ra: ra, size: size, ng: ng, winSize: 64 << 10, winOff: -1}
}

func (r *fileReader) u16(b []byte) uint16 {
	if r.big {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (r *fileReader) u32(b []byte) uint32 {
	if r.big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

func (r *fileReader) u64(b []byte) uint64 {
	if r.big {
		return binary.BigEndian.Uint64(b)
	}
	return binary.LittleEndian.Uint64(b)
}

// view returns n bytes of the file at off, which the caller has checked
// are within its size, reading a window there when they are not cached.
func (r *fileReader) view(off int64, n int) ([]byte, error) {
	if b := r.at(off); len(b) >= n {
		return b[:n], nil
	}
	// A record's trailer and options may lie between what was read and
	// the next record: that is still reading on.
	if off <= r.readEnd+64 {
		r.winSize = min(r.winSize*2, maxWindow)
	} else {
		r.winSize = max(r.winSize/2, minWindow)
	}
	size := int(min(int64(max(r.winSize, n)), r.size-off))
	if cap(r.win) < size {
		r.win = make([]byte, size, max(size, r.winSize))
	}
	r.win = r.win[:size]
	if err := r.readAt(r.win, off); err != nil {
		r.winOff = -1
		return nil, err
	}
	r.winOff = off
	return r.win[:n], nil
}

func (r *fileReader) readAt(b []byte, off int64) error {
	n, err := r.ra.ReadAt(b, off)
	if n == len(b) {
		err = nil
	} else if err == nil || err == io.EOF {
		// The file is shorter than it was when opened.
		err = io.ErrUnexpectedEOF
	}
	r.readEnd = max(r.readEnd, off+int64(n))
	return err
}

// packet makes the current packet the n bytes at off, with at least its
// first packetHead bytes read.
func (r *fileReader) packet(off int64, n int) error {
	r.dataOff = off
	b := r.at(off)
	if len(b) >= n {
		r.data = b[:n]
		r.head = n
		return nil
	}
	if cap(r.pkt) < n {
		r.pkt = make([]byte, n)
	}
	r.data = r.pkt[:n]
	if len(b) < min(n, packetHead) {
		var err error
		if _, err = r.view(off, min(n, packetHead)); err != nil {
			return err
		}
		b = r.at(off)
	}
	// What is cached holds the packet's start, and maybe more of it.
	r.head = copy(r.data, b)
	return nil
}

// at returns the bytes of the file from off on that are at hand, in the
// window or read ahead; none when neither holds off.
func (r *fileReader) at(off int64) []byte {
	if r.winOff >= 0 && off >= r.winOff && off < r.winOff+int64(len(r.win)) {
		return r.win[off-r.winOff:]
	}
	if r.ahead != nil {
		return r.ahead.at(off)
	}
	return nil
}

// fill reads the current packet's bytes from offset from on.
func (r *fileReader) fill(from int) {
	from = max(from, r.head)
	if from >= len(r.data) {
		return
	}
	if err := r.readAt(r.data[from:], r.dataOff+int64(from)); err != nil && r.err == nil {
		r.err = err
	}
	r.head = len(r.data)
}

// fillRange reads the current packet's bytes [from, to) at most once: a
// range before head is read already.
func (r *fileReader) fillRange(from, to int) {
	from = max(from, r.head)
	if from >= to {
		return
	}
	if err := r.readAt(r.data[from:to], r.dataOff+int64(from)); err != nil && r.err == nil {
		r.err = err
	}
}

// ZeroCopyReadPacketData returns the next packet, read whole.
func (r *fileReader) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	data, ci, err := r.next()
	if err == nil {
		r.fill(0)
		if r.err != nil {
			return nil, ci, r.err
		}
	}
	return data, ci, err
}

// next returns the next packet, of which only data[:r.head] is read.
func (r *fileReader) next() ([]byte, gopacket.CaptureInfo, error) {
	if r.err != nil {
		return nil, gopacket.CaptureInfo{}, r.err
	}
	if r.fallback == nil && r.ahead == nil && r.off == 0 {
		r.ahead = startReadAhead(r.ra, r.size, r.ng)
	}
	if r.fallback == nil {
		var data []byte
		var ci gopacket.CaptureInfo
		var ok bool
		var err error
		if r.ng {
			data, ci, ok, err = r.nextNg()
		} else {
			data, ci, ok, err = r.nextPcap()
		}
		if ok || err != nil {
			return data, ci, err
		}
		if err := r.fallBack(); err != nil {
			r.err = err
			return nil, gopacket.CaptureInfo{}, err
		}
	}
	data, ci, err := r.fallback.ZeroCopyReadPacketData()
	r.data, r.head = data, len(data)
	return data, ci, err
}

// Close stops reading ahead.
func (r *fileReader) Close() {
	if r.ahead != nil {
		r.ahead.stop()
		r.ahead = nil
	}
}

// fallBack hands the file from the current record on to pcapgo.
func (r *fileReader) fallBack() error {
	r.Close()
	rest := io.NewSectionReader(r.ra, r.off, r.size-r.off)
	if !r.ng {
		pr, err := pcapgo.NewReader(io.MultiReader(bytes.NewReader(r.header), rest))
		if err != nil {
			return err
		}
		r.fallback = pr
		return nil
	}
	ng, err := pcapgo.NewNgReader(io.MultiReader(bytes.NewReader(r.prefix), rest),
		pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
	if err != nil {
		return err
	}
	r.fallback = ng
	return nil
}

// nextPcap reads a pcap record, or reports !ok for pcapgo to read it.
func (r *fileReader) nextPcap() ([]byte, gopacket.CaptureInfo, bool, error) {
	var ci gopacket.CaptureInfo
	if r.header == nil {
		if r.size < 24 {
			return nil, ci, false, nil
		}
		h, err := r.view(0, 24)
		if err != nil {
			return nil, ci, false, err
		}
		switch binary.LittleEndian.Uint32(h) {
		case 0xa1b23c4d:
			r.big, r.nanoFactor = false, 1
		case 0x4d3cb2a1:
			r.big, r.nanoFactor = true, 1
		case 0xa1b2c3d4:
			r.big, r.nanoFactor = false, 1000
		case 0xd4c3b2a1:
			r.big, r.nanoFactor = true, 1000
		default:
			return nil, ci, false, nil
		}
		r.header = append([]byte(nil), h...)
		if r.u16(h[4:6]) != 2 || r.u16(h[6:8]) != 4 {
			return nil, ci, false, nil
		}
		r.maxCapLen = max(int(r.u32(h[16:20])), 262144)
		r.off = 24
	}
	if r.off == r.size {
		return nil, ci, false, io.EOF
	}
	if r.size-r.off < 16 {
		return nil, ci, false, nil
	}
	h, err := r.view(r.off, 16)
	if err != nil {
		return nil, ci, false, err
	}
	capLen, length := int(r.u32(h[8:12])), int(r.u32(h[12:16]))
	if capLen > r.maxCapLen || capLen > length || r.off+16+int64(capLen) > r.size {
		return nil, ci, false, nil
	}
	ci.Timestamp = time.Unix(int64(r.u32(h[0:4])), int64(r.u32(h[4:8])*r.nanoFactor)).UTC()
	ci.CaptureLength, ci.Length = capLen, length
	if err := r.packet(r.off+16, capLen); err != nil {
		return nil, ci, false, err
	}
	r.off += 16 + int64(capLen)
	return r.data, ci, true, nil
}

// Block types and options of pcapng that are read here.
const (
	ngSHB = 0x0A0D0D0A
	ngIDB = 1
	ngEPB = 6

	ngOptTSResol  = 9
	ngOptTSOffset = 14
)

// nextNg reads pcapng blocks up to an enhanced packet block, or reports
// !ok for pcapgo to read from the block it stopped at.
func (r *fileReader) nextNg() ([]byte, gopacket.CaptureInfo, bool, error) {
	var ci gopacket.CaptureInfo
	for {
		if r.off == r.size {
			return nil, ci, false, io.EOF
		}
		if r.size-r.off < 12 {
			return nil, ci, false, nil
		}
		h, err := r.view(r.off, 12)
		if err != nil {
			return nil, ci, false, err
		}
		typ := binary.LittleEndian.Uint32(h[0:4])
		if typ == ngSHB {
			switch {
			case binary.BigEndian.Uint32(h[8:12]) == 0x1A2B3C4D:
				r.big = true
			case binary.LittleEndian.Uint32(h[8:12]) == 0x1A2B3C4D:
				r.big = false
			default:
				return nil, ci, false, nil
			}
		} else if r.prefix == nil {
			return nil, ci, false, nil
		} else {
			typ = r.u32(h[0:4])
		}
		blen := int64(r.u32(h[4:8]))
		if blen%4 != 0 || blen < 12 || r.off+blen > r.size {
			return nil, ci, false, nil
		}
		b, err := r.view(r.off, int(min(blen, packetHead)))
		if err != nil {
			return nil, ci, false, err
		}
		switch typ {
		case ngSHB:
			if blen > packetHead || blen < 28 || r.u16(b[12:14]) != 1 || r.u16(b[14:16]) != 0 || !r.cleanOptions(b[24:blen-4]) {
				return nil, ci, false, nil
			}
			r.prefix = append(r.prefix[:0], b...)
			r.ifaces = r.ifaces[:0]
		case ngIDB:
			if blen > packetHead || blen < 20 || !r.cleanOptions(b[16:blen-4]) {
				return nil, ci, false, nil
			}
			ifc, ok := r.iface(b[:blen])
			if !ok {
				return nil, ci, false, nil
			}
			r.prefix = append(r.prefix, b...)
			r.ifaces = append(r.ifaces, ifc)
		case ngEPB:
			if blen < 32 {
				return nil, ci, false, nil
			}
			id := int(r.u32(b[8:12]))
			capLen := int64(r.u32(b[20:24]))
			optStart := 28 + capLen + (4-capLen&3)&3
			if id >= len(r.ifaces) || optStart+4 > blen {
				return nil, ci, false, nil
			}
			ifc := &r.ifaces[id]
			ts := uint64(r.u32(b[12:16]))<<32 | uint64(r.u32(b[16:20]))
			ci.Timestamp = time.Unix(int64(ts/ifc.secondMask+ifc.offset), int64(ts%ifc.secondMask*ifc.scaleUp/ifc.scaleDown)).UTC()
			ci.CaptureLength, ci.Length = int(capLen), int(r.u32(b[24:28]))
			ci.InterfaceIndex = id
			r.ancil[0] = ifc.link
			ci.AncillaryData = r.ancil[:]
			if optStart+4 < blen {
				opts, err := r.view(r.off+optStart, int(blen-4-optStart))
				if err != nil {
					return nil, ci, false, err
				}
				if !r.cleanOptions(opts) {
					return nil, ci, false, nil
				}
			}
			// The options were looked at last: b may no longer hold the block.
			if err := r.packet(r.off+28, int(capLen)); err != nil {
				return nil, ci, false, err
			}
			r.off += blen
			return r.data, ci, true, nil
		default:
			return nil, ci, false, nil
		}
		r.off += blen
	}
}

// cleanOptions reports whether opts, a block's options up to its trailing
// length, are read by pcapgo without error and without reading past them.
func (r *fileReader) cleanOptions(opts []byte) bool {
	for len(opts) > 0 {
		if len(opts) < 4 {
			return false
		}
		code, n := r.u16(opts[0:2]), int(r.u16(opts[2:4]))
		if code == 0 {
			return n == 0
		}
		n += (4 - n&3) & 3
		if 4+n > len(opts) {
			return false
		}
		opts = opts[4+n:]
	}
	return true
}

// iface reads an interface description block as pcapgo does.
func (r *fileReader) iface(b []byte) (ngIface, bool) {
	ifc := ngIface{link: layers.LinkType(r.u16(b[8:10]))}
	resol := uint8(0)
	for opts := b[16 : len(b)-4]; len(opts) >= 4; {
		code, n := r.u16(opts[0:2]), int(r.u16(opts[2:4]))
		if code == 0 {
			break
		}
		v := opts[4 : 4+n]
		switch {
		case code == ngOptTSResol && n >= 1:
			resol = v[0]
		case code == ngOptTSOffset && n >= 8:
			ifc.offset = r.u64(v)
		}
		opts = opts[4+n+(4-n&3)&3:]
	}
	if resol == 0 {
		resol = 6
	}
	exp := resol & 0x7f
	if exp > 63 {
		return ifc, false
	}
	if resol&0x80 != 0 {
		ifc.secondMask = 1 << exp
	} else {
		ifc.secondMask = 1
		for range exp {
			ifc.secondMask *= 10
		}
	}
	ifc.scaleUp, ifc.scaleDown = 1, 1
	if ifc.secondMask < 1e9 {
		ifc.scaleUp = 1e9 / ifc.secondMask
	} else {
		ifc.scaleDown = ifc.secondMask / 1e9
	}
	if ifc.secondMask == 0 {
		return ifc, false
	}
	return ifc, true
}

// readAhead reads, on a goroutine of its own, the stretches of the file
// the decoder will look at: each record's start, as far as a packet's
// headers and a frame's JSON, and runs of small records whole, passing
// over the rest of large ones. On two cores the reading then costs the
// decoding nothing. It only ever saves a read: what it does not hold is
// read where it is wanted, so it may stop anywhere (an odd record length,
// the end of the file) without changing what is decoded.
type readAhead struct {
	full chan *aheadChunk // chunks read, in file order
	free chan *aheadChunk
	done chan struct{}
	// The decoder's side: the chunk it reads from, the next window in it,
	// and the one before, which it may still hold bytes of.
	cur, prev *aheadChunk
	i         int
}

type aheadChunk struct {
	buf  []byte
	wins []aheadWin
}

// aheadWin is a stretch of the file, starting at a record.
type aheadWin struct {
	off int64
	b   []byte
}

const (
	aheadChunks    = 4
	aheadChunkSize = 64 << 10
	aheadWins      = 64
)

func startReadAhead(ra io.ReaderAt, size int64, ng bool) *readAhead {
	a := &readAhead{
		full: make(chan *aheadChunk, aheadChunks),
		free: make(chan *aheadChunk, aheadChunks),
		done: make(chan struct{}),
	}
	for range aheadChunks {
		a.free <- &aheadChunk{buf: make([]byte, aheadChunkSize)}
	}
	go a.run(ra, size, ng)
	return a
}

func (a *readAhead) stop() { close(a.done) }

// run walks the records from the file's first, reading windows of the
// file at record starts until the end, a read error or a length it cannot
// follow.
func (a *readAhead) run(ra io.ReaderAt, size int64, ng bool) {
	defer close(a.full)
	off, big := int64(24), false // a pcap's records follow its 24-byte header
	hdr, need := 16, int64(16+packetHead)
	if ng {
		off, hdr, need = 0, 12, 28+packetHead
	} else {
		var magic [4]byte
		if _, err := ra.ReadAt(magic[:], 0); err != nil {
			return
		}
		big = binary.BigEndian.Uint32(magic[:])&0xffff0000 == 0xa1b20000
	}
	w := minWindow
	for off < size {
		var c *aheadChunk
		select {
		case c = <-a.free:
		case <-a.done:
			return
		}
		c.wins = c.wins[:0]
		used := 0
		for off < size && len(c.wins) < aheadWins && used+w <= len(c.buf) {
			b := c.buf[used : used+int(min(int64(w), size-off))]
			if n, _ := ra.ReadAt(b, off); n < len(b) {
				off = size // a read error: the decoder meets it itself
				break
			}
			c.wins = append(c.wins, aheadWin{off, b})
			used += len(b)
			// Follow the records to the first not wholly in the window:
			// the next window starts there, or past it when its start is.
			end := off + int64(len(b))
			rec := off
			for rec+int64(hdr) <= end {
				h := b[rec-off:]
				var n int64
				if ng {
					if binary.LittleEndian.Uint32(h[0:4]) == ngSHB {
						big = binary.BigEndian.Uint32(h[8:12]) == 0x1A2B3C4D
					}
					if big {
						n = int64(binary.BigEndian.Uint32(h[4:8]))
					} else {
						n = int64(binary.LittleEndian.Uint32(h[4:8]))
					}
					if n < 12 || n%4 != 0 {
						off = size
						break
					}
				} else if big {
					n = 16 + int64(binary.BigEndian.Uint32(h[8:12]))
				} else {
					n = 16 + int64(binary.LittleEndian.Uint32(h[8:12]))
				}
				if rec+n > end {
					if rec+min(n, need) > end {
						break // its start is cut: the next window begins with it
					}
					rec += n // its start is here: pass over the rest
					break
				}
				rec += n
			}
			if off == size {
				break
			}
			if rec > end+64 {
				w = max(w/2, minWindow)
			} else {
				w = min(w*2, aheadChunkSize)
			}
			off = max(rec, off+1)
		}
		select {
		case a.full <- c:
		case <-a.done:
			return
		}
	}
}

// at returns what was read ahead of the file from off on, or nothing when
// off was passed over or reading ahead has stopped. The decoder asks for
// offsets that, record by record, only grow.
func (a *readAhead) at(off int64) []byte {
	for {
		if a.cur != nil {
			for ; a.i < len(a.cur.wins); a.i++ {
				w := a.cur.wins[a.i]
				if off < w.off {
					return nil
				}
				if off < w.off+int64(len(w.b)) {
					return w.b[off-w.off:]
				}
			}
		}
		c, ok := <-a.full
		if !ok {
			a.cur = nil
			return nil
		}
		if a.prev != nil {
			a.free <- a.prev
		}
		a.prev, a.cur, a.i = a.cur, c, 0
	}
}
