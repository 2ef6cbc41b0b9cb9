package refclient

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/stepkit/stepkit/spec"
)

// job is one block request of a transfer.
type job struct {
	index int64
	seq   int64  // upload: the order in which the job was handed out
	data  []byte // upload: the block; nil for downloads
	slab  *slab  // upload: the buffer data is in
	alone bool   // upload: answered before the next block is sent (the probe)
}

// stage is what a transfer plugs into a pipeline.
type stage struct {
	op  spec.Operation
	typ spec.Type
	// window is the number of requests kept in flight on a connection.
	window int
	// peak records the most requests ever written and not yet answered on
	// one connection of the transfer.
	peak *atomic.Int64
	// build makes the request for j in m, a message reused once the
	// request is written.
	build func(j job, m *spec.Message) *spec.Message
	// sent is called once j's request has been written (or given up):
	// an upload returns the block's buffer to its pool there.
	sent func(j job)
	// handle checks the response to j. resp.Binary is valid only during
	// the call.
	handle func(j job, resp *spec.Message) error
}

// maxBatch bounds the requests written with one system call.
const maxBatch = 16

// pipeline sends the jobs it takes from jobs on c with up to st.window
// requests in flight, and hands each response to st.handle in order.
// Requests are written by one goroutine and responses read by the calling
// one, so a server that reads a request, answers it and only then reads
// the next is served as well as one that reads ahead. Responses are paired
// with requests by their order on the connection.
//
// When the server refuses a block (a *StatusError), no further request is
// sent and the answers to those already sent are read and dropped, each
// within drainTimeout, so the connection stays usable; a server slower
// than that is taken to have lost step. A 406 for an UPLOAD block while
// later requests are unanswered means the server misread the stream (the
// client sends blocks of the plan's length; the course server takes the
// next request into a block that arrives in pieces, STEP.md A.23): the
// answers still due will never come, so the connection is closed at once
// and an *OutOfStepError returned. Any other failure also leaves the
// connection out of step and closes it.
func (c *Client) pipeline(parent context.Context, jobs <-chan job, st stage) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return c.broken
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	stop := c.watch(ctx)
	defer stop()

	// A job enters inflight before its request is written; with the job
	// the reader holds, at most st.window requests are unanswered.
	inflight := make(chan job, st.window-1)
	var written, answered atomic.Int64 // requests on the wire, responses read
	quit := make(chan struct{})        // closed when the server refused a block
	sendErr := make(chan error, 1)
	go func() {
		defer close(inflight)
		var batchBuf []job
		var reqs, msgs []*spec.Message // msgs: reused for the requests of each batch
		for {
			var j job
			select {
			case <-ctx.Done():
				return
			case <-quit:
				return
			case jj, ok := <-jobs:
				if !ok {
					return
				}
				j = jj
			}
			select {
			case inflight <- j:
			case <-ctx.Done():
				st.sent(j)
				return
			case <-quit:
				st.sent(j)
				return
			}
			// Jobs already waiting join this one in a single write, as
			// far as the window has room: a window of blocks costs one
			// system call, not one per block.
			batch := append(batchBuf[:0], j)
			closed := false
			for len(batch) < maxBatch && len(inflight) < cap(inflight) {
				select {
				case jj, ok := <-jobs:
					if !ok {
						closed = true
						break
					}
					inflight <- jj // room checked above; only this goroutine sends
					batch = append(batch, jj)
					continue
				default:
				}
				break
			}
			batchBuf = batch // its array, grown, serves the next batch
			reqs = reqs[:0]
			for k, b := range batch {
				if k == len(msgs) {
					msgs = append(msgs, spec.NewMessage())
				}
				req := st.build(b, msgs[k])
				c.prepare(req)
				reqs = append(reqs, req)
			}
			// Counted before they are written: a request partly on the
			// wire is already one the server may be reading.
			n := written.Add(int64(len(batch))) - answered.Load()
			for p := st.peak.Load(); n > p && !st.peak.CompareAndSwap(p, n); p = st.peak.Load() {
			}
			err := c.writeAll(ctx, reqs, c.opts.ReplyTimeout)
			for _, b := range batch {
				st.sent(b)
			}
			if err != nil {
				if ctx.Err() == nil { // not a consequence of a failure elsewhere
					sendErr <- err
					cancel()
				}
				return
			}
			if closed {
				return
			}
		}
	}()

	probe := spec.NewRequest(st.op, st.typ)
	reuse := spec.NewMessage()
	var err error  // the first failure
	inStep := true // every response so far was read whole
	for j := range inflight {
		if !inStep {
			continue // drain so that the writer can finish
		}
		timeout := c.opts.ReplyTimeout
		if err != nil {
			timeout = min(timeout, drainTimeout)
		}
		// Until a failure, every response is read into one message:
		// handle does not keep it. After one, each gets its own, since
		// the error may hold the one that failed.
		into := reuse
		if err != nil {
			into = nil
		}
		resp, rerr := c.readInto(ctx, probe, timeout, into)
		answered.Add(1)
		if rerr != nil {
			inStep = false
			if err == nil {
				err = rerr
			}
			cancel()
			continue
		}
		if err != nil {
			continue // an answer to a request sent before the refusal
		}
		if herr := st.handle(j, resp); herr != nil {
			err = herr
			var se *StatusError
			switch {
			case errors.As(herr, &se) && se.Status == spec.StatusBlockSize && st.op == spec.OpUpload &&
				(len(inflight) > 0 || written.Load() > answered.Load()):
				err = &OutOfStepError{Window: st.window, Err: herr}
				inStep = false
				cancel()
			case errors.As(herr, &se):
				close(quit)
			default:
				inStep = false
				cancel()
			}
		}
	}
	// inflight is closed: the writer has returned. A failed write comes
	// first: the reader's error is then only its consequence.
	select {
	case werr := <-sendErr:
		err, inStep = werr, false
	default:
	}
	if err == nil {
		return nil
	}
	if !inStep {
		c.breakConn(err)
	}
	return c.ctxErr(parent, err)
}
