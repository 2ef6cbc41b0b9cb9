package refserver

import (
	"errors"
	"time"

	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/spec"
)

// maxRun is the most pipelined UPLOADs taken together.
const maxRun = 16

// maxFlights is how many runs a connection may have on their way to the
// storage while it reads the next: a store that takes writes in parallel
// (an object store) is then kept busy by one client.
const maxFlights = 4

// flight is a run whose blocks are on their way to the storage. Its
// answers are sent, in order, once they are stored (land).
type flight struct {
	reqs   []*spec.Message
	resps  []*spec.Message // nil where the answer waits for the storage
	groups []runGroup
	done   chan struct{} // closed once every group is stored
	// gathered is set when blocks of the flight may wait for later ones
	// (storage.Gatherer); bytes counts them.
	gathered bool
	bytes    int64
}

// runGroup is the blocks of one upload in a run, stored with one write.
type runGroup struct {
	user, key string
	u         storage.Upload
	index     []int64
	blocks    [][]byte
	gather    bool
	m         *storage.FileMeta // set when the write completed the file
	err       error
}

// uploadItem is a block of a run of UPLOADs, checked and waiting to be
// stored with the others.
type uploadItem struct {
	user, key string
	u         storage.Upload
	index     int64
	block     []byte
	gather    bool // the client keeps the upload window in flight (EXT-8)
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

// serveRun takes first and the UPLOADs of other blocks of its key that
// follow it and have arrived whole, and sends their blocks to the storage
// with one write, as a flight: a client that pipelines its blocks then
// costs the storage one request per run, not per block, and up to
// maxFlights runs are stored at once while the connection reads the next.
// Each request is checked as it would be alone, and answered in order
// (land). It reports false when a response could not be sent.
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
	f := &flight{reqs: reqs, resps: resps, groups: groupRun(items), done: make(chan struct{})}
	for i := range f.groups {
		g := &f.groups[i]
		if g.gather {
			f.gathered = true
			for _, b := range g.blocks {
				f.bytes += int64(len(b))
			}
		}
	}
	// Stored while the connection reads on; only the storage is touched
	// there, the answers are made by land.
	go func() {
		defer close(f.done)
		w := s.store.(storage.RunWriter)
		for i := range f.groups {
			g := &f.groups[i]
			if g.gather {
				g.m, g.err = s.store.(storage.Gatherer).WriteBlocksGathered(g.user, g.key, g.u, g.index, g.blocks, s.cfg.Now())
			} else {
				g.m, g.err = w.WriteBlocks(g.user, g.key, g.u, g.index, g.blocks, s.cfg.Now())
			}
		}
	}()
	c.flights = append(c.flights, f)
	// Gathered blocks wait for the rest of their part, which the client
	// sends within its window: the connection reads on while the flights
	// hold no more than that window.
	for len(c.flights) > maxFlights && !(f.gathered && c.gatheredBytes() <= c.window) {
		if !c.land(1) {
			return false
		}
	}
	return true
}

// gathers reports whether the blocks of an UPLOAD may be gathered: the
// storage gathers them (storage.Gatherer) and the client said it keeps at
// least the window the server advertised in flight (EXT-8). It notes the
// client's window, of which the connection keeps blocks in flights.
func (c *conn) gathers(req *spec.Message) bool {
	w := c.srv.uploadWindow()
	if w <= 0 || !req.Has(spec.FieldWindow) {
		return false
	}
	n, err := req.Int(spec.FieldWindow)
	if err != nil || n < w {
		return false
	}
	// More than four times the advertised window is not held.
	c.window = min(n, 4*w)
	return true
}

// gatheredBytes is the bytes of gathered blocks in the flights.
func (c *conn) gatheredBytes() int64 {
	var n int64
	for _, f := range c.flights {
		n += f.bytes
	}
	return n
}

// uploadWindow is the window a client keeps in flight for its blocks to be
// gathered (EXT-8), 0 when the storage gathers none.
func (s *Server) uploadWindow() int64 {
	if g, ok := s.store.(storage.Gatherer); ok {
		if _, runs := s.store.(storage.RunWriter); runs {
			return g.UploadWindow()
		}
	}
	return 0
}

// waitGathered waits until the oldest flight, gathered and still waiting
// for the rest of its parts, is stored, or until bytes arrive from the
// client, which may be those parts: it reports true when bytes arrived.
func (c *conn) waitGathered(f *flight) bool {
	for {
		select {
		case <-f.done:
			return false
		default:
		}
		n := c.br.Buffered()
		if n == c.br.Size() {
			return true
		}
		c.nc.SetReadDeadline(time.Now().Add(time.Millisecond))
		c.br.Peek(n + 1) // a timeout is returned here and forgotten
		if c.br.Buffered() > n {
			return true
		}
	}
}

// groupRun splits the collected blocks of a run into groups of one upload.
func groupRun(items []uploadItem) []runGroup {
	var groups []runGroup
	for len(items) > 0 {
		n := 1
		for n < len(items) && items[n].u == items[0].u && items[n].gather == items[0].gather {
			n++
		}
		g := runGroup{user: items[0].user, key: items[0].key, u: items[0].u, gather: items[0].gather,
			index: make([]int64, n), blocks: make([][]byte, n)}
		for j := range n {
			g.index[j], g.blocks[j] = items[j].index, items[j].block
		}
		groups = append(groups, g)
		items = items[n:]
	}
	return groups
}

// land waits for the n oldest flights to be stored and answers their
// requests, in order, a flight's answers with one write. It reports false
// when they could not be sent.
func (c *conn) land(n int) bool {
	for ; n > 0 && len(c.flights) > 0; n-- {
		f := c.flights[0]
		c.flights[0] = nil
		c.flights = c.flights[1:]
		<-f.done
		c.passCompletion(f)
		stored := c.answers(f.groups)
		for i, req := range f.reqs {
			if f.resps[i] == nil {
				f.resps[i], stored = stored[0], stored[1:]
			}
			c.count(req, f.resps[i])
		}
		// One write for the run's answers: the client then refills its
		// window at once, and the next run finds more of it buffered.
		if !c.sendAll(f.resps) {
			return false
		}
	}
	return true
}

// passCompletion moves the news that a group of f completed its file to
// the last group of the same upload in the flights after f, if their
// blocks were stored: the runs of one connection are stored at once and
// may finish in any order, but the client is told of the completion, as
// without flights, in the answer to its last block.
func (c *conn) passCompletion(f *flight) {
	for i := range f.groups {
		g := &f.groups[i]
		if g.m == nil {
			continue
		}
		var last *runGroup
		for _, later := range c.flights {
			same := false
			for j := range later.groups {
				same = same || later.groups[j].u == g.u // set before the flight left
			}
			if !same {
				continue
			}
			// Its blocks of the upload were stored before the completion,
			// which needed them (or they came again after it): the flight
			// is finishing, if not done.
			<-later.done
			for j := range later.groups {
				if h := &later.groups[j]; h.u == g.u && h.err == nil && h.m == nil {
					last = h
				}
			}
		}
		if last != nil {
			last.m, g.m = g.m, nil
		}
	}
}

// landAll answers every flight; it reports false when an answer could
// not be sent.
func (c *conn) landAll() bool { return c.land(len(c.flights)) }

// waitFlights waits until no flight is on its way, without answering:
// the connection is closing.
func (c *conn) waitFlights() {
	for _, f := range c.flights {
		<-f.done
	}
	c.flights = nil
}

// answers are the answers to the blocks of stored groups, in order.
func (c *conn) answers(groups []runGroup) []*spec.Message {
	var out []*spec.Message
	for _, g := range groups {
		for j := range g.index {
			var resp *spec.Message
			switch {
			case g.err == nil:
				var done *storage.FileMeta
				if j == len(g.index)-1 {
					done = g.m
				}
				resp = c.uploaded(g.user, g.key, g.index[j], done)
			case errors.Is(g.err, storage.ErrNotFound):
				resp = c.noPlan(g.user, g.key)
			default:
				resp = c.internal(spec.OpUpload, spec.TypeFile, "store block", g.err)
			}
			out = append(out, resp)
		}
	}
	return out
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
