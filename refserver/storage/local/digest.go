package local

import (
	"crypto/md5"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
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
type digest struct {
	h    hash.Hash
	pool *sync.Pool // of *[]byte, digestChunk bytes each
	ch   chan *[]byte
	done chan struct{}
	cur  *[]byte // the chunk being filled
	// inline hashes on the caller's goroutine, without chunks.
	inline bool

	f *os.File // where the bytes queued belong, from offset 0
	n int64    // bytes queued since the last reset: the offset of the next
	// Bytes [dirtyLo, dirtyHi) of cur are not written to f yet.
	dirtyLo, dirtyHi int
	// err is the first failure to write them: sticky, since blocks were
	// marked as received that f does not hold.
	err error
}

// digestChunk is the size of the chunks handed to the hashing goroutine.
const digestChunk = 256 << 10

// digestQueue is how many chunks may wait to be hashed: enough to ride out
// scheduling hiccups, few enough to bound the memory of each upload.
const digestQueue = 4

// inlineBelow is the size under which an upload is hashed on the
// connection's own goroutine as its blocks arrive: a small file costs
// little to hash, and many small uploads at once would otherwise each hold
// a chunk of memory and a goroutine.
const inlineBelow = 4 << 20

func newDigest(pool *sync.Pool, size int64) *digest {
	return &digest{h: md5.New(), pool: pool, inline: size < inlineBelow}
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
		return int64(len(p)), nil
	}
	var written int64
	for len(p) > 0 {
		d.chunk()
		b := *d.cur
		if d.dirtyLo == d.dirtyHi {
			d.dirtyLo = len(b)
		}
		n := copy(b[len(b):cap(b)], p)
		*d.cur = b[:len(b)+n]
		d.dirtyHi = len(b) + n
		d.n += int64(n)
		p = p[n:]
		if len(*d.cur) == cap(*d.cur) {
			w, err := d.flush()
			written += w
			if err != nil {
				return written, err
			}
			d.send()
		}
	}
	return written, nil
}

// flush writes to f the bytes queued by writeBlock that are not written
// yet, and returns how many it wrote.
func (d *digest) flush() (int64, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.dirtyLo == d.dirtyHi {
		return 0, nil
	}
	b := (*d.cur)[d.dirtyLo:d.dirtyHi]
	off := d.n - int64(len(*d.cur)) + int64(d.dirtyLo)
	d.dirtyLo, d.dirtyHi = 0, 0
	if _, err := d.f.WriteAt(b, off); err != nil {
		d.err = fmt.Errorf("write %d bytes at %d: %w", len(b), off, err)
		return 0, d.err
	}
	return int64(len(b)), nil
}

// write queues p to be hashed.
func (d *digest) write(p []byte) {
	if d.inline {
		d.n += int64(len(p))
		d.h.Write(p)
		return
	}
	for len(p) > 0 {
		d.chunk()
		b := *d.cur
		n := copy(b[len(b):cap(b)], p)
		*d.cur = b[:len(b)+n]
		d.n += int64(n)
		p = p[n:]
		if len(*d.cur) == cap(*d.cur) {
			d.send()
		}
	}
}

// readAt queues n bytes of r at off to be hashed, read straight into the
// chunk being filled.
func (d *digest) readAt(r io.ReaderAt, off, n int64) error {
	if d.inline {
		d.n += n
		d.chunk()
		defer func() { d.pool.Put(d.cur); d.cur = nil }()
		for buf := (*d.cur)[:cap(*d.cur)]; n > 0; {
			b := buf[:min(int64(len(buf)), n)]
			if _, err := r.ReadAt(b, off); err != nil {
				return fmt.Errorf("read back %d bytes at %d: %w", len(b), off, err)
			}
			d.h.Write(b)
			off, n = off+int64(len(b)), n-int64(len(b))
		}
		return nil
	}
	for n > 0 {
		d.chunk()
		b := *d.cur
		m := min(int64(cap(b)-len(b)), n)
		if _, err := r.ReadAt(b[len(b):len(b)+int(m)], off); err != nil {
			return fmt.Errorf("read back %d bytes at %d: %w", m, off, err)
		}
		*d.cur = b[:len(b)+int(m)]
		d.n += m
		off, n = off+m, n-m
		if len(*d.cur) == cap(*d.cur) {
			d.send()
		}
	}
	return nil
}

// chunk makes sure a chunk is being filled.
func (d *digest) chunk() {
	if d.cur != nil {
		return
	}
	bp, _ := d.pool.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, digestChunk)
		bp = &b
	}
	*bp = (*bp)[:0]
	d.cur = bp
}

// send hands the current chunk to the hashing goroutine, once its bytes
// are written to f.
func (d *digest) send() {
	if d.cur == nil || len(*d.cur) == 0 {
		return
	}
	d.flush()
	if d.ch == nil {
		d.ch = make(chan *[]byte, digestQueue)
		d.done = make(chan struct{})
		go d.run(d.ch, d.done)
	}
	d.ch <- d.cur
	d.cur = nil
}

func (d *digest) run(ch <-chan *[]byte, done chan<- struct{}) {
	for bp := range ch {
		d.h.Write(*bp)
		d.pool.Put(bp)
	}
	close(done)
}

// wait lets the goroutine hash everything queued and stop.
func (d *digest) wait() {
	d.send()
	if d.ch != nil {
		close(d.ch)
		<-d.done
		d.ch, d.done = nil, nil
	}
}

// reset starts the hash again from the first byte of f; the bytes queued
// are written to f first.
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
