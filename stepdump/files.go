package stepdump

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/stepkit/stepkit/spec"
)

// Extracted describes one file rebuilt from a capture.
type Extracted struct {
	Path      string  `json:"path,omitempty"` // empty when not written (no --extract)
	Key       string  `json:"key"`
	User      string  `json:"user"`
	Upload    bool    `json:"upload"`
	Size      int64   `json:"size"`  // from the plan, -1 when no plan was seen
	Total     int64   `json:"total"` // blocks in the plan
	Blocks    int64   `json:"blocks"`
	Missing   []Range `json:"missing_blocks,omitempty"` // block index ranges not in the capture
	MD5       string  `json:"md5,omitempty"`            // of the rebuilt file, when whole
	Announced string  `json:"announced_md5,omitempty"`  // what the server said
	Verified  bool    `json:"verified"`                 // MD5 and Announced agree
}

type fileID struct {
	server netip.AddrPort
	user   string
	key    string
	upload bool
}

// fileState follows one file's blocks through a capture.
type fileState struct {
	id        fileID
	conn      *connState
	planned   bool
	size      int64
	blockSize int64
	total     int64
	announced string
	completed bool   // the server announced the whole file's MD5
	have      bitset // blocks whole in the capture
	sent      bitset // blocks seen at all
	acked     bitset
	blocks    int64
	maxIndex  int64
	lastPkt   int64
	f         *os.File
	path      string
	writeErr  error
}

type fileTracker struct {
	d         *decoder
	files     map[fileID]*fileState
	order     []*fileState
	extracted []Extracted

	lastToken []byte
	lastUser  string
}

// user is userOf(m), remembered for the last token seen: every block
// request of a transfer carries the same token, decoded once.
func (t *fileTracker) user(m *spec.Message) string {
	raw, ok := m.Raw(spec.FieldToken)
	if !ok || m.Operation() == spec.OpLogin {
		return userOf(m)
	}
	if !bytes.Equal(raw, t.lastToken) {
		t.lastToken = append(t.lastToken[:0], raw...)
		t.lastUser = userOf(m)
	}
	return t.lastUser
}

func newFileTracker(d *decoder) *fileTracker {
	return &fileTracker{d: d, files: make(map[fileID]*fileState)}
}

// maxTrackedBlocks bounds the block bitsets of a single file.
const maxTrackedBlocks = 1 << 24

func (t *fileTracker) get(c *connState, req *Message, key string, upload bool) *fileState {
	user := t.user(req.Msg)
	if user == "" {
		user = c.conn.Summary.User
	}
	id := fileID{server: c.conn.Server, user: user, key: key, upload: upload}
	f := t.files[id]
	if f == nil {
		f = &fileState{id: id, conn: c, size: -1, blockSize: spec.DefaultBlockSize, maxIndex: -1}
		t.files[id] = f
		t.order = append(t.order, f)
	}
	f.conn = c
	return f
}

func (t *fileTracker) request(c *connState, h *halfStream, m *Message) {
	if m.Msg == nil || m.Msg.Type() != spec.TypeFile || m.Msg.Operation() != spec.OpUpload {
		return
	}
	key, err := m.Msg.Key()
	if err != nil {
		return
	}
	idx, err := m.Msg.BlockIndex()
	if err != nil {
		return
	}
	f := t.get(c, m, key, true)
	t.block(c, h, f, m, idx, m.Msg.Binary)
}

func (t *fileTracker) response(c *connState, h *halfStream, m *Message) {
	req := m.Request
	if m.Msg == nil || req == nil || req.Msg == nil || req.Msg.Type() != spec.TypeFile {
		return
	}
	st, _ := m.Status()
	key, kerr := req.Msg.Key()
	if rk, err := m.Msg.Key(); err == nil {
		key, kerr = rk, nil
	}
	switch req.Msg.Operation() {
	case spec.OpSave:
		if st != spec.StatusOK || kerr != nil {
			return
		}
		f := t.get(c, req, key, true)
		f.plan(m.Msg)
		f.completed = f.total == 0 && f.planned
	case spec.OpUpload:
		idx, err := req.Msg.BlockIndex()
		if err != nil || kerr != nil {
			return
		}
		f := t.get(c, req, key, true)
		if st == spec.StatusOK {
			f.acked.set(idx)
			if sum, err := m.Msg.MD5(); err == nil {
				f.announced = strings.ToLower(sum)
				f.completed = true
			}
		}
	case spec.OpGet:
		if st != spec.StatusOK || kerr != nil {
			return
		}
		f := t.get(c, req, key, false)
		f.plan(m.Msg)
		if sum, err := m.Msg.MD5(); err == nil {
			f.announced = strings.ToLower(sum)
		}
	case spec.OpDownload:
		if st != spec.StatusOK || kerr != nil {
			return
		}
		idx, err := req.Msg.BlockIndex()
		if err != nil {
			if idx, err = m.Msg.BlockIndex(); err != nil {
				return
			}
		}
		f := t.get(c, req, key, false)
		t.block(c, h, f, m, idx, m.Msg.Binary)
	}
}

// plan takes a plan's numbers from a SAVE or GET response. A new upload
// plan discards the blocks of an earlier one, as servers do.
func (f *fileState) plan(m *spec.Message) {
	size, err1 := m.Size()
	bs, err2 := m.BlockSize()
	if err1 != nil || err2 != nil || bs <= 0 {
		return
	}
	total := spec.TotalBlocks(size, bs)
	if tb, err := m.TotalBlock(); err == nil {
		total = tb
	}
	f.planned = true
	f.size, f.blockSize, f.total = size, bs, total
	if f.id.upload {
		f.have, f.acked, f.sent = nil, nil, nil
		f.blocks = 0
		f.maxIndex = -1
		f.completed = false
		f.announced = ""
	}
}

// block records block idx of f, carried by m; data is its bytes, nil when
// they were passed over (Options.SkipBinary), which only extraction needs.
func (t *fileTracker) block(c *connState, h *halfStream, f *fileState, m *Message, idx int64, data []byte) {
	size := int64(m.BinaryLen)
	f.lastPkt = m.Packet
	what := "upload"
	if !f.id.upload {
		what = "download"
	}
	if f.planned {
		want := spec.BlockLen(f.size, f.blockSize, idx)
		if idx < 0 || idx >= f.total {
			c.note(h, m.Packet, m.Time, m.Offset, NoteBlockSize, Warning,
				fmt.Sprintf("%s of %q: block_index %d is outside the plan (0..%d)", what, f.id.key, idx, f.total-1))
			return
		}
		if size != want {
			c.note(h, m.Packet, m.Time, m.Offset, NoteBlockSize, Error,
				fmt.Sprintf("%s of %q: block %d is %d bytes, the plan (size %d, block_size %d) wants %d",
					what, f.id.key, idx, size, f.size, f.blockSize, want))
		}
	}
	if idx < 0 || idx >= maxTrackedBlocks {
		return
	}
	c.move(f.id.key, f.id.upload, int(size))
	f.sent.set(idx)
	f.maxIndex = max(f.maxIndex, idx)
	if binaryMissing(m) {
		return // a block with lost bytes is as good as missing
	}
	if !f.have.get(idx) {
		f.blocks++
	}
	f.have.set(idx)
	f.maxIndex = max(f.maxIndex, idx)
	if t.d.opts.ExtractDir != "" && f.writeErr == nil {
		if err := f.write(t.d.opts.ExtractDir, idx, data); err != nil {
			f.writeErr = err
			c.note(h, m.Packet, m.Time, m.Offset, NoteBadPacket, Error, fmt.Sprintf("extract %q: %v", f.id.key, err))
		}
		if f.f != nil && f.planned && f.blocks >= f.total {
			// Whole: give the descriptor back; a capture may move
			// thousands of files.
			f.f.Close()
			f.f = nil
		}
	}
}

func (c *connState) move(key string, upload bool, n int) {
	if c.files == nil {
		c.files = make(map[string]int)
	}
	k := "d" + key
	if upload {
		k = "u" + key
	}
	s := &c.conn.Summary
	i, ok := c.files[k]
	if !ok {
		i = len(s.Files)
		c.files[k] = i
		s.Files = append(s.Files, FileMove{Key: key, Upload: upload})
	}
	s.Files[i].Blocks++
	s.Files[i].Bytes += int64(n)
}

func (f *fileState) write(dir string, idx int64, data []byte) error {
	if f.f == nil && f.path != "" {
		fh, err := os.OpenFile(f.path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		f.f = fh
	}
	if f.f == nil {
		kind := "downloads"
		if f.id.upload {
			kind = "uploads"
		}
		user := f.id.user
		if user == "" {
			user = "_"
		}
		p := filepath.Join(dir, kind, safeName(user), safeName(f.id.key))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		fh, err := os.Create(p)
		if err != nil {
			return err
		}
		f.f, f.path = fh, p
	}
	if _, err := f.f.WriteAt(data, idx*f.blockSize); err != nil {
		return fmt.Errorf("write block %d: %w", idx, err)
	}
	return nil
}

// safeName turns a key, which may hold anything a peer sent (slashes, "..",
// control characters), into a single harmless file name.
func safeName(s string) string {
	if s == "" {
		return "_empty"
	}
	e := url.PathEscape(s)
	if e == "." || e == ".." {
		e = strings.ReplaceAll(e, ".", "%2E")
	}
	if strings.HasPrefix(e, ".") {
		e = "%2E" + e[1:]
	}
	if len(e) > 200 {
		sum := md5.Sum([]byte(s))
		e = e[:160] + "~" + hex.EncodeToString(sum[:8])
	}
	return e
}

// finish reports incomplete transfers and verifies extracted files.
func (t *fileTracker) finish() {
	for _, f := range t.order {
		c := f.conn
		total := f.total
		if !f.planned {
			total = f.maxIndex + 1
		}
		n := min(total, maxTrackedBlocks)
		missing := f.have.missing(n)
		damaged := f.sent.and(f.have.not(n)).ranges(n)
		never := f.sent.missing(n)
		last := t.d.now
		h := c.half[dirIndex(c.clientDir)]
		// A connection still open when the capture ended was cut by the
		// capture, not by its peers: the transfer may have gone on.
		cut := c.openAtEnd() && f.lastPkt > 0
		switch {
		case f.id.upload && f.planned && !f.completed && cut:
			acked := f.acked.count(min(total, maxTrackedBlocks))
			c.note(h, t.d.pkt, last, -1, NoteCaptureCut, Warning,
				fmt.Sprintf("the capture ends during the upload of %q (%d bytes, %d blocks), at packet %d with the connection still open: %d of %d blocks acknowledged by then%s",
					f.id.key, f.size, f.total, t.d.pkt, acked, f.total, cutBlocksText(never, damaged)))
		case f.id.upload && f.planned && !f.completed:
			acked := f.acked.count(min(total, maxTrackedBlocks))
			c.note(h, f.lastPkt, last, -1, NoteUploadIncomplete, Error,
				fmt.Sprintf("upload of %q (%d bytes, %d blocks) never completed: %d of %d blocks acknowledged, no final MD5 from the server%s",
					f.id.key, f.size, f.total, acked, f.total, blocksText(never, damaged)))
		case !f.id.upload && f.planned && len(missing) > 0 && f.blocks > 0 && cut:
			c.note(h, t.d.pkt, last, -1, NoteCaptureCut, Warning,
				fmt.Sprintf("the capture ends during the download of %q, at packet %d with the connection still open: %d of %d blocks whole by then%s",
					f.id.key, t.d.pkt, f.blocks, f.total, cutBlocksText(never, damaged)))
		case !f.id.upload && f.planned && len(missing) > 0 && f.blocks > 0:
			c.note(h, f.lastPkt, last, -1, NoteDownloadIncomplete, Warning,
				fmt.Sprintf("download of %q: %d of %d blocks whole in the capture%s", f.id.key, f.blocks, f.total, blocksText(never, damaged)))
		}
		if f.blocks == 0 {
			continue
		}
		x := Extracted{Key: f.id.key, User: f.id.user, Upload: f.id.upload, Size: f.size, Total: total,
			Blocks: f.blocks, Missing: missing, Announced: f.announced}
		if f.f == nil && f.path != "" {
			if fh, err := os.OpenFile(f.path, os.O_RDWR, 0); err == nil {
				f.f = fh
			}
		}
		if f.f != nil {
			x.Path = f.path
			if f.planned {
				_ = f.f.Truncate(f.size)
			}
			if len(missing) == 0 {
				if _, err := f.f.Seek(0, io.SeekStart); err == nil {
					hsh := md5.New()
					if _, err := io.Copy(hsh, f.f); err == nil {
						x.MD5 = hex.EncodeToString(hsh.Sum(nil))
					}
				}
			}
			f.f.Close()
			f.f = nil
			x.Verified = x.MD5 != "" && x.MD5 == x.Announced
			if x.MD5 != "" && x.Announced != "" && !x.Verified {
				c.note(h, f.lastPkt, last, -1, NoteMD5Mismatch, Error,
					fmt.Sprintf("file %q rebuilt from the capture has MD5 %s, the server announced %s", f.id.key, x.MD5, x.Announced))
			}
		}
		t.extracted = append(t.extracted, x)
	}
}

func blocksText(never, damaged []Range) string {
	s := ""
	if len(never) > 0 {
		s += "; blocks never sent in the capture: " + rangesText(never)
	}
	if len(damaged) > 0 {
		s += "; blocks with bytes missing from the capture: " + rangesText(damaged)
	}
	return s
}

// cutBlocksText is blocksText for a transfer the capture's end cut.
func cutBlocksText(never, damaged []Range) string {
	s := ""
	if len(damaged) > 0 {
		s += "; blocks cut short by the end of the capture: " + rangesText(damaged)
	}
	if len(never) > 0 {
		s += "; blocks not sent before it: " + rangesText(never)
	}
	return s
}

func rangesText(rs []Range) string {
	var parts []string
	for i, r := range rs {
		if i == 8 {
			parts = append(parts, fmt.Sprintf("... (%d ranges)", len(rs)))
			break
		}
		if r.End-r.Start == 1 {
			parts = append(parts, fmt.Sprint(r.Start))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", r.Start, r.End-1))
		}
	}
	return strings.Join(parts, ",")
}

// bitset records which blocks were seen.
type bitset []uint64

func (b *bitset) set(i int64) {
	if i < 0 || i >= maxTrackedBlocks {
		return
	}
	w := int(i / 64)
	for len(*b) <= w {
		*b = append(*b, 0)
	}
	(*b)[w] |= 1 << uint(i%64)
}

func (b bitset) get(i int64) bool {
	w := int(i / 64)
	return i >= 0 && w < len(b) && b[w]&(1<<uint(i%64)) != 0
}

func (b bitset) count(n int64) int64 {
	var c int64
	for i := int64(0); i < n; i++ {
		if b.get(i) {
			c++
		}
	}
	return c
}

// not returns the complement of b below n.
func (b bitset) not(n int64) bitset {
	var out bitset
	for i := int64(0); i < n; i++ {
		if !b.get(i) {
			out.set(i)
		}
	}
	return out
}

// and returns the intersection.
func (b bitset) and(o bitset) bitset {
	out := make(bitset, min(len(b), len(o)))
	for i := range out {
		out[i] = b[i] & o[i]
	}
	return out
}

// ranges returns the index ranges below n that are set.
func (b bitset) ranges(n int64) []Range {
	return b.not(n).missing(n)
}

// missing returns the index ranges below n that are not set.
func (b bitset) missing(n int64) []Range {
	var out []Range
	for i := int64(0); i < n; i++ {
		if b.get(i) {
			continue
		}
		if k := len(out); k > 0 && out[k-1].End == i {
			out[k-1].End = i + 1
		} else {
			out = append(out, Range{i, i + 1})
		}
	}
	return out
}
