package local

import (
	"crypto/md5"
	"fmt"
	"hash"
	"io"
	"sync"
)

// digest is the MD5 of an upload, computed on its own goroutine so that
// hashing a block overlaps with receiving the next one: a connection then
// uses one core for the network and the disk and another for MD5. Blocks
// are copied into pooled buffers, since the frame reader reuses its own.
// A digest is used under its upload's lock.
type digest struct {
	h    hash.Hash
	pool *sync.Pool // of *[]byte
	ch   chan *[]byte
	done chan struct{}
}

// digestQueue is how many blocks may wait to be hashed: enough to ride out
// scheduling hiccups, few enough to bound the memory of each upload.
const digestQueue = 32

func newDigest(pool *sync.Pool) *digest { return &digest{h: md5.New(), pool: pool} }

// write queues p to be hashed.
func (d *digest) write(p []byte) {
	if d.ch == nil {
		d.ch = make(chan *[]byte, digestQueue)
		d.done = make(chan struct{})
		go d.run(d.ch, d.done)
	}
	bp, _ := d.pool.Get().(*[]byte)
	if bp == nil || cap(*bp) < len(p) {
		b := make([]byte, len(p))
		bp = &b
	}
	*bp = (*bp)[:len(p)]
	copy(*bp, p)
	d.ch <- bp
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
