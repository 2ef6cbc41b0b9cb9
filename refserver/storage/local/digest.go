package local

import (
	"crypto/md5"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
)

// digest is the MD5 of an upload, computed on its own goroutine so that
// hashing overlaps with receiving: a connection then uses one core for the
// network and the disk and another for MD5. Blocks are copied into pooled
// chunks of digestChunk bytes, since the frame reader reuses its buffer,
// and a chunk goes to the goroutine only when full (or when the sum is
// wanted): small blocks cost a copy each, not a hand-off between
// goroutines each. A digest is used under its upload's lock.
//
// The chunk also gathers the blocks that arrive in order before they are
// written to the file (writeBlock): a chunk of them costs one write
// system call, not one per block.
//
// A chunk covers a fixed span of the file, [idx*digestChunk,
// (idx+1)*digestChunk). Blocks that arrive ahead of the hash (from another
// connection of the same transfer) are copied straight to their place in
// the chunks that follow (stash), up to aheadChunks of them and within the
// store's budget: when the hash reaches them they are already where it
// reads, so an out-of-order block costs one copy, like an in-order one,
// and no read back from the file.
type digest struct {
	h      hash.Hash
	pool   *sync.Pool // of *chunk
	budget *chunkBudget
	// slots holds a token for each chunk queued without one of the
	// budget's: digestQueue of them at most.
	slots chan struct{}
	lent  atomic.Int32 // chunks queued with a token of the budget
	ch    chan *chunk
	done  chan struct{}
	cur   *chunk // the chunk being filled: the hash is at n, in it
	// inline hashes on the caller's goroutine, without chunks for the
	// blocks in order.
	inline bool

	f *os.File // where the bytes queued belong, from offset 0
	n int64    // bytes queued since the last reset: the offset of the next
	// ahead holds the chunks after cur (inline: from the hash's own) that
	// blocks arrived early were copied into, at their index modulo
	// aheadChunks.
	ahead [aheadChunks]*chunk
	// err is the first failure to write them: sticky, since blocks were
	// marked as received that f does not hold.
	err error
}

// chunk is a span of the file in memory.
type chunk struct {
	b   []byte // digestChunk bytes of capacity; cur's length is the hash's place
	idx int64  // the span covered: [idx*digestChunk, (idx+1)*digestChunk)
	// from is where the hash begins in b: above 0 only for a chunk begun
	// where a previous sum stopped mid-chunk.
	from int
	// dirty are the spans of b not written to the file yet.
	dirty []span
	lent  bool // queued for the hash with a token of the store's budget
}

type span struct{ lo, hi int }

// addDirty marks b[lo:hi] as not written to the file yet.
func (c *chunk) addDirty(lo, hi int) {
	if k := len(c.dirty); k > 0 && c.dirty[k-1].hi == lo {
		c.dirty[k-1].hi = hi // in order, the common case
		return
	}
	c.dirty = append(c.dirty, span{lo, hi})
}

// digestChunk is the size of the chunks handed to the hashing goroutine.
const digestChunk = 256 << 10

// digestQueue is how many chunks may wait to be hashed on an upload's own
// account; digestLent more may wait on the store's budget. The hash and
// the rest of a transfer (both ends of it, on a small machine) share the
// cores: a queue that holds what arrives over a few of the scheduler's
// time slices keeps every core busy, where one of 1 MiB left one idle
// about a tenth of the time.
const (
	digestQueue = 4
	digestLent  = 28
)

// aheadChunks is how many chunks past the hash's own may hold blocks that
// arrived early: 9 MiB, a little more than two connections keep in flight
// with refclient's automatic window (4 MiB each), which bounds how far
// its blocks spread. Blocks further ahead are written to the file and
// read back when their turn comes.
const aheadChunks = 36

// inlineBelow is the size under which an upload is hashed on the
// connection's own goroutine as its blocks arrive: a small file costs
// little to hash, and many small uploads at once would otherwise each hold
// a chunk of memory and a goroutine.
const inlineBelow = 4 << 20

func newDigest(pool *sync.Pool, budget *chunkBudget, size int64) *digest {
	return &digest{h: md5.New(), pool: pool, budget: budget, inline: size < inlineBelow}
}

// chunkBudget bounds the chunks that all the uploads of a store hold
// beyond their own few: chunks ahead, and chunks queued for the hash past
// digestQueue. A client that sends blocks out of order on purpose, on many
// uploads, gets its blocks written and read back instead of held; many
// uploads at once wait for their hash sooner.
type chunkBudget struct {
	held atomic.Int64 // chunks
	max  int64
}

// defaultChunkBudget is 64 MiB of chunks.
const defaultChunkBudget = 256

func (b *chunkBudget) take() bool {
	if b.held.Add(1) > b.max {
		b.held.Add(-1)
		return false
	}
	return true
}

func (b *chunkBudget) release() { b.held.Add(-1) }

// dropAhead returns the chunk in slot i of the chunks ahead to the pool.
func (d *digest) dropAhead(i int) {
	d.pool.Put(d.ahead[i])
	d.ahead[i] = nil
	d.budget.release()
}

// getChunk returns an empty chunk for span idx.
func (d *digest) getChunk(idx int64) *chunk {
	c, _ := d.pool.Get().(*chunk)
	if c == nil {
		c = &chunk{b: make([]byte, 0, digestChunk)}
	}
	c.b, c.idx, c.from, c.dirty = c.b[:0], idx, 0, c.dirty[:0]
	return c
}

// writeBlock queues p, the bytes of f that follow those queued, to be
// written to f and hashed. It returns the number of bytes written to f.
func (d *digest) writeBlock(p []byte) (int64, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.inline {
		if _, err := d.f.WriteAt(p, d.n); err != nil {
			return 0, err
		}
		d.h.Write(p)
		d.n += int64(len(p))
		return int64(len(p)) + d.passInline(), d.err
	}
	var written int64
	for len(p) > 0 {
		d.chunk()
		c := d.cur
		l := len(c.b)
		n := copy(c.b[l:cap(c.b)], p)
		c.addDirty(l, l+n)
		p = p[n:]
		w, err := d.fill(n)
		written += w
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// fill moves the hash over the next n bytes of the chunk being filled,
// which are in place, and hands the chunk on once it is full. It returns
// the number of bytes written to f.
func (d *digest) fill(n int) (int64, error) {
	c := d.cur
	c.b = c.b[:len(c.b)+n]
	d.n += int64(n)
	if len(c.b) < cap(c.b) {
		return 0, nil
	}
	return d.send()
}

// stash copies p, the bytes of f at off, which lie ahead of the hash, to
// their place in the chunks ahead, to be written to f by flush and hashed
// when the hash reaches them (advance). It reports false, copying
// nothing, when they lie beyond the chunks ahead.
func (d *digest) stash(off int64, p []byte) bool {
	if off < d.n || len(p) == 0 {
		return false
	}
	first, last := off/digestChunk, (off+int64(len(p))-1)/digestChunk
	if last >= d.n/digestChunk+aheadChunks {
		return false
	}
	for ci := first; ci <= last; ci++ {
		if d.chunkAt(ci) == nil {
			return false
		}
	}
	for ci := first; ci <= last; ci++ {
		c := d.chunkAt(ci)
		lo := max(off, ci*digestChunk) - ci*digestChunk
		n := copy(c.b[lo:cap(c.b)], p)
		c.addDirty(int(lo), int(lo)+n)
		off, p = off+int64(n), p[n:]
	}
	return true
}

// chunkAt returns the chunk of span ci, which is the hash's own or one of
// the chunks ahead, making it if need be; nil when the store's budget has
// no room for another chunk ahead.
func (d *digest) chunkAt(ci int64) *chunk {
	if !d.inline && ci == d.n/digestChunk {
		d.chunk()
		return d.cur
	}
	slot := &d.ahead[ci%aheadChunks]
	if *slot == nil {
		if !d.budget.take() {
			return nil
		}
		*slot = d.getChunk(ci)
	}
	return *slot
}

// advance moves the hash over the n bytes at its place, which stash put
// in the chunks ahead. It returns the number of bytes written to f.
func (d *digest) advance(n int64) (int64, error) {
	if d.inline {
		var written int64
		for n > 0 {
			c := d.ahead[(d.n/digestChunk)%aheadChunks]
			lo := int(d.n % digestChunk)
			m := min(int64(digestChunk-lo), n)
			d.h.Write(c.b[lo : lo+int(m)])
			d.n, n = d.n+m, n-m
			written += d.passInline()
		}
		return written, d.err
	}
	var written int64
	for n > 0 {
		d.chunk()
		m := min(int64(cap(d.cur.b)-len(d.cur.b)), n)
		n -= m
		w, err := d.fill(int(m))
		written += w
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// passInline drops the chunks ahead that the inline hash has passed,
// once written, and returns the number of bytes it wrote.
func (d *digest) passInline() int64 {
	var written int64
	ci := d.n / digestChunk
	for i, c := range d.ahead {
		if c != nil && c.idx < ci {
			written += d.flushChunk(c)
			d.dropAhead(i)
		}
	}
	return written
}

// flushChunk writes the dirty spans of c to f and returns the number of
// bytes it wrote; a failure is the sticky err.
func (d *digest) flushChunk(c *chunk) int64 {
	if len(c.dirty) == 0 {
		return 0
	}
	if d.err != nil {
		c.dirty = c.dirty[:0]
		return 0
	}
	if len(c.dirty) > 1 {
		// Blocks sent again can overlap: write each byte once.
		slices.SortFunc(c.dirty, func(a, b span) int { return a.lo - b.lo })
		m := c.dirty[:1]
		for _, s := range c.dirty[1:] {
			if last := &m[len(m)-1]; s.lo <= last.hi {
				last.hi = max(last.hi, s.hi)
			} else {
				m = append(m, s)
			}
		}
		c.dirty = m
	}
	var written int64
	base := c.idx * digestChunk
	for _, s := range c.dirty {
		if _, err := d.f.WriteAt(c.b[s.lo:s.hi], base+int64(s.lo)); err != nil {
			d.err = fmt.Errorf("write %d bytes at %d: %w", s.hi-s.lo, base+int64(s.lo), err)
			break
		}
		written += int64(s.hi - s.lo)
	}
	c.dirty = c.dirty[:0]
	return written
}

// flush writes to f the bytes queued or stashed that are not written yet,
// and returns how many it wrote.
func (d *digest) flush() (int64, error) {
	if d.err != nil {
		return 0, d.err
	}
	var written int64
	if d.cur != nil {
		written += d.flushChunk(d.cur)
	}
	for _, c := range d.ahead {
		if c != nil {
			written += d.flushChunk(c)
		}
	}
	return written, d.err
}

// readAt queues n bytes of r at off to be hashed, read straight into the
// chunk being filled.
func (d *digest) readAt(r io.ReaderAt, off, n int64) error {
	if d.inline {
		c := d.getChunk(0)
		defer d.pool.Put(c)
		for buf := c.b[:cap(c.b)]; n > 0; {
			b := buf[:min(int64(len(buf)), n)]
			if _, err := r.ReadAt(b, off); err != nil {
				return fmt.Errorf("read back %d bytes at %d: %w", len(b), off, err)
			}
			d.h.Write(b)
			d.n += int64(len(b))
			off, n = off+int64(len(b)), n-int64(len(b))
			d.passInline()
		}
		return d.err
	}
	for n > 0 {
		d.chunk()
		c := d.cur
		l := len(c.b)
		m := min(int64(cap(c.b)-l), n)
		if _, err := r.ReadAt(c.b[l:l+int(m)], off); err != nil {
			return fmt.Errorf("read back %d bytes at %d: %w", m, off, err)
		}
		off, n = off+m, n-m
		if _, err := d.fill(int(m)); err != nil {
			return err
		}
	}
	return nil
}

// chunk makes sure a chunk is being filled: the chunk ahead of span
// n/digestChunk when blocks were stashed there, or a new one.
func (d *digest) chunk() {
	if d.cur != nil {
		return
	}
	ci := d.n / digestChunk
	slot := &d.ahead[ci%aheadChunks]
	if c := *slot; c != nil && c.idx == ci {
		d.cur, *slot = c, nil
		d.budget.release() // no longer ahead
	} else {
		d.cur = d.getChunk(ci)
	}
	// After a sum taken mid-chunk the hash resumes inside the span.
	d.cur.from = int(d.n % digestChunk)
	d.cur.b = d.cur.b[:d.cur.from]
}

// send writes the current chunk's dirty spans to f, hands its bytes to
// the hashing goroutine and returns the number of bytes written.
func (d *digest) send() (int64, error) {
	c := d.cur
	if c == nil {
		return 0, d.err
	}
	written := d.flushChunk(c)
	d.cur = nil
	if len(c.b) == c.from {
		d.pool.Put(c)
		return written, d.err
	}
	if d.ch == nil {
		d.ch = make(chan *chunk, digestQueue+digestLent)
		d.slots = make(chan struct{}, digestQueue)
		d.done = make(chan struct{})
		go d.run(d.ch, d.done)
	}
	// The upload's own slots first, then the budget's; with neither
	// free, wait for one of its own.
	c.lent = false
	select {
	case d.slots <- struct{}{}:
	default:
		if d.lent.Load() < digestLent && d.budget.take() {
			d.lent.Add(1)
			c.lent = true
		} else {
			d.slots <- struct{}{}
		}
	}
	d.ch <- c
	return written, d.err
}

func (d *digest) run(ch <-chan *chunk, done chan<- struct{}) {
	for c := range ch {
		d.h.Write(c.b[c.from:])
		if c.lent {
			d.lent.Add(-1)
			d.budget.release()
		} else {
			<-d.slots
		}
		d.pool.Put(c)
	}
	close(done)
}

// wait writes every byte queued or stashed to f, lets the goroutine hash
// everything queued and stop, and forgets the chunks ahead.
func (d *digest) wait() {
	d.flush()
	d.send()
	for i, c := range d.ahead {
		if c != nil {
			d.dropAhead(i)
		}
	}
	if d.ch != nil {
		close(d.ch)
		<-d.done
		d.ch, d.done = nil, nil
	}
}

// reset starts the hash again from the first byte of f; the bytes queued
// or stashed are written to f first.
func (d *digest) reset() {
	d.wait()
	d.h.Reset()
	d.n = 0
}

// readFrom hashes r's bytes after those queued.
func (d *digest) readFrom(r io.Reader) error {
	d.wait()
	if d.err != nil {
		return d.err
	}
	n, err := io.Copy(d.h, r)
	d.n += n
	if err != nil {
		return fmt.Errorf("hash upload: %w", err)
	}
	return nil
}

func (d *digest) sum() []byte {
	d.wait()
	return d.h.Sum(nil)
}
