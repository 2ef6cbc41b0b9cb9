package refserver

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Defaults of the limits on hostile clients.
const (
	// DefaultMaxFrameMemory is the default bound on the frame bytes held
	// by all connections together beyond each one's free allowance.
	DefaultMaxFrameMemory = 256 << 20
)

// freeFrameBytes is what a connection may hold of frames in flight without
// charging the server-wide frame memory budget: requests without a large
// binary part never wait for it, whatever other connections do.
const freeFrameBytes = 64 << 10

// maxReadChunk bounds a single read from the network, so that a
// connection holds at most this much beyond what it has been granted.
const maxReadChunk = 64 << 10

// errFrameMemory is returned by a read that waited for frame memory until
// its frame's deadline.
var errFrameMemory = &frameMemoryError{}

type frameMemoryError struct{}

func (*frameMemoryError) Error() string   { return "no frame memory left before the frame's deadline" }
func (*frameMemoryError) Timeout() bool   { return true }
func (*frameMemoryError) Temporary() bool { return true }

var errStopping = errors.New("server shutting down")

// errEvicted is returned by a read of a connection whose place was given
// to another address.
var errEvicted = errors.New("connection closed to make room for another address")

// frameBudget bounds the bytes of frames that connections hold beyond
// their free allowance. A connection that would pass it waits, under its
// frame's deadline, until others release theirs.
type frameBudget struct {
	max int64

	mu    sync.Mutex
	used  int64
	peak  int64
	freed chan struct{} // closed and replaced when bytes are released
	waits int           // connections waiting now
}

func newFrameBudget(max int64) *frameBudget {
	return &frameBudget{max: max, freed: make(chan struct{})}
}

// acquire takes n bytes of the budget, waiting until deadline or stop.
func (b *frameBudget) acquire(n int64, deadline time.Time, stop <-chan struct{}) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		b.mu.Lock()
		if b.used+n <= b.max {
			b.used += n
			b.peak = max(b.peak, b.used)
			b.mu.Unlock()
			return nil
		}
		freed := b.freed
		b.waits++
		b.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
		}
		var err error
		select {
		case <-freed:
		case <-timer.C:
			err = errFrameMemory
		case <-stop:
			err = errStopping
		}
		b.mu.Lock()
		b.waits--
		b.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

func (b *frameBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// pressed reports whether more than half of the budget is taken, when
// connections give back the buffers they keep between frames.
func (b *frameBudget) pressed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return 2*b.used > b.max
}

// FrameMemory reports the bytes of the frame memory budget in use now, its
// peak since the server started, and the budget (Config.MaxFrameMemory).
func (s *Server) FrameMemory() (used, peak, limit int64) {
	b := s.budget
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.peak, b.max
}

// frameLimiter is the part of a connection that enforces the limits on
// frames in flight: the frame memory budget and the minimum rate.
type frameLimiter struct {
	rawIn      int64     // bytes read from the network
	held       int64     // bytes of the budget this connection holds
	retained   int64     // the largest frame body its reader has buffered
	frameStart time.Time // when the frame being read began
	frameRaw   int64     // rawIn when it began
	deadline   time.Time // the frame's read deadline
	before     int64     // bytes consumed by readers given up
}

// beginFrame arms the read deadline of a frame that begins now, with
// buffered of its bytes already read.
func (c *conn) beginFrame(buffered int) {
	now := time.Now()
	c.fl.frameStart = now
	c.fl.frameRaw = c.fl.rawIn - int64(buffered)
	c.frameGot.Store(int64(buffered))
	c.frameSince.Store(now.UnixNano())
	c.fl.deadline = now.Add(c.srv.cfg.ReadTimeout)
	c.nc.SetReadDeadline(c.fl.deadline)
}

// read reads from the network at most maxReadChunk bytes, then charges the
// budget for what the connection now holds and, with a minimum rate,
// extends the frame's deadline by the time its bytes so far may take.
func (c *conn) read(p []byte) (int, error) {
	if len(p) > maxReadChunk {
		p = p[:maxReadChunk]
	}
	if c.evicted.Load() {
		// Checked after every deadline this connection set: evict's
		// deadline is not overwritten unseen.
		return 0, errEvicted
	}
	n, err := c.nc.Read(p)
	c.fl.rawIn += int64(n)
	if n == 0 {
		return n, err
	}
	if c.idle.Load() {
		c.beginFrame(n)
		c.idle.Store(false)
	} else {
		got := c.fl.rawIn - c.fl.frameRaw
		c.frameGot.Store(got)
		if rate := c.srv.cfg.MinFrameRate; rate > 0 {
			c.fl.deadline = c.fl.frameStart.Add(c.srv.cfg.ReadTimeout + time.Duration(float64(got)/float64(rate)*float64(time.Second)))
			c.nc.SetReadDeadline(c.fl.deadline)
		}
	}
	if cerr := c.charge(); cerr != nil {
		return n, cerr
	}
	return n, err
}

// charge brings the connection's share of the budget up to what it holds:
// the bytes read and not yet consumed as whole frames, or the buffer kept
// from an earlier frame, whichever is larger, beyond the free allowance.
func (c *conn) charge() error {
	inflight := c.fl.rawIn - c.r.Offset()
	need := max(inflight, c.fl.retained) - freeFrameBytes
	if need <= c.fl.held {
		return nil
	}
	s := c.srv
	c.memWait.Store(true)
	err := s.budget.acquire(need-c.fl.held, c.fl.deadline, s.stop)
	c.memWait.Store(false)
	if err != nil {
		s.met.frameError("frame_memory")
		return err
	}
	c.fl.held = need
	return nil
}

// frameDone updates the connection's share after a frame of bodyLen bytes
// was consumed.
func (c *conn) frameDone(bodyLen int64) {
	c.frameSince.Store(0)
	c.fl.retained = max(c.fl.retained, bodyLen)
	inflight := c.fl.rawIn - c.r.Offset()
	need := max(0, max(inflight, c.fl.retained)-freeFrameBytes)
	if need < c.fl.held {
		c.srv.budget.release(c.fl.held - need)
		c.fl.held = need
	}
}

// idleShrink gives back, while the server is short of frame memory, the
// buffer a connection keeps from its last large frame. Only called with
// nothing buffered, so no byte of the next request is lost.
func (c *conn) idleShrink() {
	if c.fl.retained <= freeFrameBytes || !c.srv.budget.pressed() || c.r.Buffered() > 0 {
		return
	}
	off := c.r.Offset()
	c.r = c.newReader()
	c.fl.before += off
	c.fl.rawIn -= off // the new reader counts from zero
	c.fl.frameRaw -= off
	c.fl.retained = 0
	c.srv.budget.release(c.fl.held)
	c.fl.held = 0
}

// releaseFrames gives back everything the connection holds when it ends.
func (c *conn) releaseFrames() {
	c.srv.budget.release(c.fl.held)
	c.fl.held = 0
}

// connReader is the network side of a connection's spec.Reader.
type connReader struct{ c *conn }

func (r connReader) Read(p []byte) (int, error) { return r.c.read(p) }

// remoteIP is the address a connection comes from, without its port.
func remoteIP(nc net.Conn) string {
	a := nc.RemoteAddr()
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
