package refserver

import (
	"errors"
	"time"

	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/spec"
)

// maxRun is the most pipelined UPLOADs taken together.
const maxRun = 16

// uploadItem is a block of a run of UPLOADs, checked and waiting to be
// stored with the others.
type uploadItem struct {
	user, key string
	u         storage.Upload
	index     int64
	block     []byte
}

// startsRun reports whether req may begin a run: a FILE UPLOAD request.
func startsRun(req *spec.Message) bool {
	return req.Operation() == spec.OpUpload && req.Type() == spec.TypeFile && req.Direction() == spec.DirRequest
}

// continuesRun reports whether next is another UPLOAD of the key of the
// run's first request, with the same token, of a block not in the run.
func continuesRun(run []*spec.Message, next *spec.Message) bool {
	if !startsRun(next) {
		return false
	}
	first := run[0]
	ft, err1 := first.Token()
	nt, err2 := next.Token()
	fk, err3 := first.Key()
	nk, err4 := next.Key()
	ni, err5 := next.BlockIndex()
	if errors.Join(err1, err2, err3, err4, err5) != nil || ft != nt || fk != nk {
		return false
	}
	for _, m := range run {
		if i, err := m.BlockIndex(); err != nil || i == ni {
			return false
		}
	}
	return true
}

// serveRun answers first and the UPLOADs of other blocks of its key that
// follow it and have arrived whole, storing their blocks with one write: a
// client that pipelines its blocks then costs the storage one request per
// run, not per block. Each request is checked and answered as it would be
// alone, in order. It reports false when a response could not be sent.
func (c *conn) serveRun(first *spec.Message) bool {
	s := c.srv
	reqs := []*spec.Message{first.Clone()}
	for len(reqs) < maxRun && c.frameReady() {
		c.beginFrame(c.r.Buffered())
		before := c.r.Offset()
		next, err := c.r.ReadMessage()
		traffic := int(c.r.Offset() - before)
		c.frameDone(c.r.Offset() - before - spec.HeaderLen)
		if err != nil || !continuesRun(reqs, next) {
			// Served by the loop, as if read there.
			c.pending, c.pendReq, c.pendErr, c.pendTraffic = true, next, err, traffic
			break
		}
		s.met.traffic(traffic, 0)
		c.requests++
		reqs = append(reqs, next.Clone())
	}
	var items []uploadItem
	c.collect = &items
	resps := make([]*spec.Message, len(reqs))
	for i, req := range reqs {
		resps[i], _ = c.dispatch(req) // nil: collected
	}
	c.collect = nil
	stored := c.storeRun(items)
	for i, req := range reqs {
		if resps[i] == nil {
			resps[i], stored = stored[0], stored[1:]
		}
		c.count(req, resps[i])
	}
	// One write for the run's answers: the client then refills its window
	// at once, and the next run finds more of it buffered.
	return c.sendAll(resps)
}

// pollWait is how long frameReady waits for bytes already on their way.
const pollWait = 200 * time.Microsecond

// frameReady reports whether a whole frame is buffered, first moving into
// the buffer what the client has sent meanwhile: a read bounded by a
// deadline pollWait away takes what the socket holds and waits no longer.
// (A read takes at most one chunk: see maxReadChunk.)
func (c *conn) frameReady() bool {
	for !c.r.FrameBuffered() {
		n := c.br.Buffered()
		if n == c.br.Size() {
			return false
		}
		c.nc.SetReadDeadline(time.Now().Add(pollWait))
		c.br.Peek(n + 1) // a timeout is returned here and forgotten
		if c.br.Buffered() == n {
			return false
		}
	}
	return true
}

// storeRun stores the collected blocks of each upload in one write and
// returns their answers in order.
func (c *conn) storeRun(items []uploadItem) []*spec.Message {
	s := c.srv
	out := make([]*spec.Message, 0, len(items))
	for len(items) > 0 {
		n := 1
		for n < len(items) && items[n].u == items[0].u {
			n++
		}
		it := items[0]
		index := make([]int64, n)
		blocks := make([][]byte, n)
		for j := range n {
			index[j], blocks[j] = items[j].index, items[j].block
		}
		m, err := s.store.(storage.RunWriter).WriteBlocks(it.user, it.key, it.u, index, blocks, s.cfg.Now())
		for j := range n {
			var resp *spec.Message
			switch {
			case err == nil:
				var done *storage.FileMeta
				if j == n-1 {
					done = m
				}
				resp = c.uploaded(it.user, it.key, index[j], done)
			case errors.Is(err, storage.ErrNotFound):
				resp = c.noPlan(it.user, it.key)
			default:
				resp = c.internal(spec.OpUpload, spec.TypeFile, "store block", err)
			}
			out = append(out, resp)
		}
		items = items[n:]
	}
	return out
}
