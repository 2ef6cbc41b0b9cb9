package s3

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/minio/minio-go/v7"
)

// object is a completed file opened for DOWNLOAD. Blocks are asked for in
// order, so it keeps one GET streaming from the last offset read, reads on
// over a short gap, and opens a new one (a ranged GET) only when a block
// behind it or far ahead is asked for.
// Every GET is bound to the version opened (If-Match its ETag), so a file
// replaced meanwhile gives an error, never a mix of two versions.
type object struct {
	s    *Store
	name string
	size int64
	etag string

	body   io.ReadCloser
	cancel context.CancelFunc
	pos    int64
}

// maxSkip is how far ahead of the stream a read may be and still be
// served from it.
const maxSkip = 4 << 20

func (o *object) ReadAt(p []byte, off int64) (int, error) {
	if off >= o.size {
		return 0, io.EOF
	}
	if o.body != nil && off > o.pos && off-o.pos <= maxSkip {
		// A little ahead, as when blocks are spread over several
		// connections: reading on is cheaper than a new request.
		t := time.AfterFunc(o.s.cfg.RequestTimeout, o.cancel)
		n, err := io.CopyN(io.Discard, o.body, off-o.pos)
		t.Stop()
		o.pos += n
		if err != nil {
			o.drop()
		}
	}
	if o.body == nil || off != o.pos {
		o.drop()
		if err := o.open(off); err != nil {
			return 0, err
		}
	}
	// A stalled store is cut off: the reader is cancelled after the
	// timeout, and the next ReadAt starts afresh.
	t := time.AfterFunc(o.s.cfg.RequestTimeout, o.cancel)
	n, err := io.ReadFull(o.body, p)
	t.Stop()
	o.pos += int64(n)
	if err == io.ErrUnexpectedEOF && o.pos == o.size {
		err = io.EOF
	}
	if err != nil && err != io.EOF {
		o.drop()
		return n, fmt.Errorf("read %s: %w", o.name, err)
	}
	return n, err
}

func (o *object) open(off int64) error {
	ctx, cancel := context.WithCancel(context.Background())
	opts := minio.GetObjectOptions{}
	if o.etag != "" {
		opts.SetMatchETag(o.etag)
	}
	if off > 0 {
		opts.SetRange(off, 0)
	}
	t := time.AfterFunc(o.s.cfg.RequestTimeout, cancel)
	body, _, _, err := o.s.core.GetObject(ctx, o.s.bucket, o.name, opts)
	t.Stop()
	if err != nil {
		cancel()
		return fmt.Errorf("open %s: %w", o.name, err)
	}
	o.body, o.cancel, o.pos = body, cancel, off
	return nil
}

func (o *object) drop() {
	if o.body != nil {
		o.cancel()
		o.body.Close()
		o.body, o.cancel = nil, nil
	}
}

func (o *object) Close() error {
	o.drop()
	return nil
}
