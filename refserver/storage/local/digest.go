package local

import (
	"crypto/md5"
	"fmt"
	"hash"
	"io"
	"sync"
)

// digest is the MD5 of an upload, computed on its own goroutine so that
// hashing overlaps with receiving: a connection then uses one core for the
// network and the disk and another for MD5. Blocks are copied into pooled
// chunks of digestChunk bytes, since the frame reader reuses its buffer,
// and a chunk goes to the goroutine only when full (or when the sum is
// wanted): small blocks cost a copy each, not a hand-off between
// goroutines each. A digest is used under its upload's lock.
type digest struct {
	h    hash.Hash
	pool *sync.Pool // of *[]byte, digestChunk bytes each
	ch   chan *[]byte
	done chan struct{}
	cur  *[]byte // the chunk being filled
	// inline hashes on the caller's goroutine, without chunks.
	inline bool
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

// write queues p to be hashed.
func (d *digest) write(p []byte) {
	if d.inline {
		d.h.Write(p)
		return
	}
	for len(p) > 0 {
		d.chunk()
		b := *d.cur
		n := copy(b[len(b):cap(b)], p)
		*d.cur = b[:len(b)+n]
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

// send hands the current chunk to the hashing goroutine.
func (d *digest) send() {
	if d.cur == nil || len(*d.cur) == 0 {
		return
	}
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

func (d *digest) reset() {
	d.wait()
	d.h.Reset()
}

// readFrom hashes r's bytes after those queued.
func (d *digest) readFrom(r io.Reader) error {
	d.wait()
	if _, err := io.Copy(d.h, r); err != nil {
		return fmt.Errorf("hash upload: %w", err)
	}
	return nil
}

func (d *digest) sum() []byte {
	d.wait()
	return d.h.Sum(nil)
}
