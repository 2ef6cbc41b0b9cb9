package conformance

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// Reasons a read ends without a frame. The harness tells them apart because
// a grader must know whether the server was silent, hung up, or sent bytes
// that are not a STEP frame.
var (
	ErrSilent = errors.New("no response before the read timeout")
	ErrClosed = errors.New("the server closed the connection")
)

// Event is one entry of a case's wire exchange: a frame sent or received,
// or something that happened to a connection.
type Event struct {
	Conn   int           `json:"conn"`             // connection number within the case, from 1
	At     time.Duration `json:"at_ns"`            // since the case started
	Dir    string        `json:"dir"`              // "send", "recv" or "note"
	JSON   string        `json:"json,omitempty"`   // the JSON part as text
	Binary int           `json:"binary,omitempty"` // length of the binary part
	Hex    string        `json:"hex,omitempty"`    // the bytes, where they matter
	Note   string        `json:"note,omitempty"`
}

// String renders the event on one line (plus a hex dump when present).
func (e Event) String() string {
	var s string
	switch e.Dir {
	case "send":
		s = fmt.Sprintf("c%d -> %s", e.Conn, e.JSON)
	case "recv":
		s = fmt.Sprintf("c%d <- %s", e.Conn, e.JSON)
	default:
		s = fmt.Sprintf("c%d .. %s", e.Conn, e.Note)
	}
	if e.Binary > 0 {
		s += fmt.Sprintf(" + %d binary bytes", e.Binary)
	}
	if e.Note != "" && e.Dir != "note" {
		s += " (" + e.Note + ")"
	}
	if e.Hex != "" {
		s += "\n" + e.Hex
	}
	return s
}

// wireLog collects the events of one case, across its connections.
type wireLog struct {
	mu     sync.Mutex
	start  time.Time
	events []Event
	sent   int // frames and raw writes, counted past maxEvents too
}

const maxEvents = 400 // a case that sends thousands of frames keeps its first ones

func (l *wireLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e.At = time.Since(l.start)
	if e.Dir == "send" {
		l.sent++
	}
	if len(l.events) < maxEvents {
		l.events = append(l.events, e)
	} else if len(l.events) == maxEvents {
		l.events = append(l.events, Event{Dir: "note", At: e.At, Note: "(further events not recorded)"})
	}
}

func (l *wireLog) sends() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent
}

func (l *wireLog) snapshot() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

// hexDump renders at most max bytes of b as a hex dump.
func hexDump(b []byte, max int) string {
	if len(b) <= max {
		return hex.Dump(b)
	}
	return hex.Dump(b[:max]) + fmt.Sprintf("... (%d more bytes)\n", len(b)-max)
}

// captureReader keeps the bytes most recently read from the socket, so that
// a frame the codec cannot parse can still be shown as it arrived.
type captureReader struct {
	r   io.Reader
	mu  sync.Mutex
	buf []byte
}

const captureMax = 4096

func (c *captureReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.buf = append(c.buf, p[:n]...)
		if len(c.buf) > captureMax {
			c.buf = append(c.buf[:0], c.buf[len(c.buf)-captureMax:]...)
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *captureReader) take() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buf
	c.buf = nil
	return b
}

// Conn is a raw STEP connection for conformance cases: it writes exactly the
// frames or bytes a case gives it, reads one frame at a time under a per-read
// deadline, and records everything in the case's wire exchange.
type Conn struct {
	nc          net.Conn
	id          int
	r           *spec.Reader
	cap         *captureReader
	readTimeout time.Duration
	log         *wireLog
	ctx         context.Context
	lastSent    *spec.Message
	lastRaw     []byte
	closed      atomic.Bool // closed by the case, or by its context running out
	broken      bool        // a read failed: the stream may be out of step
	answered    int         // frames received
	// judge confirms a read timeout before it counts as silence (nil: the
	// timeout is final); note adds a line to the case's report.
	judge *silenceJudge
	note  func(string)
	// unconfirmed is called when a silence could not be confirmed: the
	// server answered nothing at all meanwhile.
	unconfirmed func()
	// firm is called when a silence is firm (see readWait.firm).
	firm    func()
	wait    readWait      // the read in progress
	slowest time.Duration // the longest a frame took to come, on this connection
}

// readWait is the state of one read: when it began and how its timeout
// was confirmed.
type readWait struct {
	start     time.Time
	limit     time.Duration // the read's own timeout
	confirmed bool          // the first timeout was confirmed (more time given)
	why       string        // what the confirmation found
	// firm: the connection had answered before and a LOGIN on a new one
	// was answered promptly meanwhile: a silence load does not explain.
	firm bool
}

// minConnectTimeout is the least time a connect is given: long enough for
// TCP's retries of a SYN at 1 s, 3 s and 7 s. A server whose listen backlog
// is short (socketserver's is 5, many a listen(5) as well) drops the SYNs
// of connections that cases running side by side open at once, which a
// run one case at a time never does; a connect that gets in on a retry
// is not the server's failure.
const minConnectTimeout = 10 * time.Second

// dialConn connects to addr, giving the connect the read timeout or
// minConnectTimeout, whichever is longer.
func dialConn(ctx context.Context, addr string, id int, readTimeout time.Duration, log *wireLog) (*Conn, error) {
	return dialConnNet(ctx, "tcp", addr, id, readTimeout, log)
}

// dialConnNet is dialConn over a given network ("tcp4" for CONN-6).
func dialConnNet(ctx context.Context, network, addr string, id int, readTimeout time.Duration, log *wireLog) (*Conn, error) {
	d := net.Dialer{Timeout: max(readTimeout, minConnectTimeout)}
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	c := &Conn{nc: nc, id: id, readTimeout: readTimeout, log: log, ctx: ctx}
	c.cap = &captureReader{r: patientReader{c}}
	// Responses may legitimately carry a whole block; anything past the
	// largest block the document allows is not a sane response.
	c.r = spec.NewReader(c.cap, spec.Limits{MaxJSON: 1 << 20, MaxBinary: spec.MaxBlockSize + 1<<10})
	log.add(Event{Conn: id, Dir: "note", Note: "connected to " + addr})
	return c, nil
}

// ID is the connection's number within its case.
func (c *Conn) ID() int { return c.id }

// Close closes the connection.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	return c.nc.Close()
}

// CloseWrite half-closes the connection (FIN), when the transport allows it.
func (c *Conn) CloseWrite() error {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		c.log.add(Event{Conn: c.id, Dir: "note", Note: "half-closed (FIN sent)"})
		return tc.CloseWrite()
	}
	return c.Close()
}

// WriteMessage sends m as one frame with byte lengths.
func (c *Conn) WriteMessage(m *spec.Message) error {
	b, err := spec.EncodeFrame(m)
	if err != nil {
		return err
	}
	c.lastSent, c.lastRaw = m, nil
	c.log.add(Event{Conn: c.id, Dir: "send", JSON: m.JSONString(), Binary: len(m.Binary)})
	return c.write(b)
}

// WriteRaw sends b exactly as given; note says what the bytes are meant to be.
func (c *Conn) WriteRaw(b []byte, note string) error {
	c.lastSent, c.lastRaw = nil, b
	c.log.add(Event{Conn: c.id, Dir: "send", Note: note, Hex: hexDump(b, 256)})
	return c.write(b)
}

func (c *Conn) write(b []byte) error {
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.readTimeout + time.Second)); err != nil {
		return fmt.Errorf("set write deadline: %w", err)
	}
	if _, err := c.nc.Write(b); err != nil {
		c.log.add(Event{Conn: c.id, Dir: "note", Note: "write failed: " + err.Error()})
		return fmt.Errorf("write to server: %w", err)
	}
	return nil
}

// ReadMessage reads one frame under the per-read timeout. It returns
// ErrSilent when nothing complete arrived in time and ErrClosed when the
// server closed the connection between frames; other errors are the codec's
// (*spec.FrameError) or the transport's.
func (c *Conn) ReadMessage() (*spec.Message, error) {
	return c.readWithin(c.readTimeout)
}

func (c *Conn) readWithin(d time.Duration) (*spec.Message, error) {
	if err := c.startWait(d); err != nil {
		return nil, err
	}
	m, err := c.r.ReadMessage()
	if err == nil {
		m = m.Clone()
		c.answered++
		c.cap.take()
		c.log.add(Event{Conn: c.id, Dir: "recv", JSON: m.JSONString(), Binary: len(m.Binary)})
		c.lateAnswer()
		c.slowest = max(c.slowest, time.Since(c.wait.start))
		return m, nil
	}
	got := c.cap.take()
	c.broken = true
	var ne net.Error
	switch {
	case c.ctx.Err() != nil:
		err = fmt.Errorf("case aborted: %w", c.ctx.Err())
		c.log.add(Event{Conn: c.id, Dir: "note", Note: err.Error()})
		return nil, err
	case errors.Is(err, io.EOF):
		c.log.add(Event{Conn: c.id, Dir: "note", Note: "connection closed by the server"})
		return nil, ErrClosed
	case errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded):
		note := fmt.Sprintf("no response within %v", d)
		if len(got) > 0 {
			note = fmt.Sprintf("only %d bytes of a frame within %v", len(got), d)
		}
		if c.wait.why != "" {
			note += "; " + c.wait.why
		}
		c.log.add(Event{Conn: c.id, Dir: "note", Note: note, Hex: dumpIf(got)})
		if c.wait.firm && c.firm != nil {
			c.firm()
		}
		if len(got) > 0 {
			err = fmt.Errorf("%w: %d bytes of an incomplete frame arrived", ErrSilent, len(got))
		} else {
			err = ErrSilent
		}
		if c.wait.why != "" {
			err = fmt.Errorf("%w (%s)", err, c.wait.why)
		}
		return nil, err
	case errors.Is(err, spec.ErrTruncatedHeader) || errors.Is(err, spec.ErrTruncatedBody):
		c.log.add(Event{Conn: c.id, Dir: "note", Note: "connection closed by the server inside a frame: " + err.Error(), Hex: dumpIf(got)})
		return nil, fmt.Errorf("%w inside a frame", ErrClosed)
	case isReset(err):
		c.log.add(Event{Conn: c.id, Dir: "note", Note: "connection reset by the server", Hex: dumpIf(got)})
		return nil, fmt.Errorf("%w (reset)", ErrClosed)
	}
	c.log.add(Event{Conn: c.id, Dir: "note", Note: "unreadable response: " + err.Error(), Hex: dumpIf(got)})
	return nil, err
}

// startWait arms the deadline of a read that may last d.
func (c *Conn) startWait(d time.Duration) error {
	c.wait = readWait{start: time.Now(), limit: d}
	if err := c.nc.SetReadDeadline(c.wait.start.Add(d)); err != nil {
		return fmt.Errorf("set read deadline: %w", err)
	}
	return nil
}

// moreTime is asked when the read in progress reaches its deadline with
// nothing more received. The first time, the judge confirms the silence
// and says how much longer to wait; the second time the silence stands.
func (c *Conn) moreTime() time.Duration {
	if c.judge == nil || c.wait.confirmed || c.ctx.Err() != nil {
		return 0
	}
	c.wait.confirmed = true
	more, why, answered, prompt := c.judge.confirm(c.ctx, c.slowest)
	c.wait.why = why
	c.wait.firm = prompt && c.answered > 0
	if !answered && c.unconfirmed != nil {
		c.unconfirmed()
	}
	return more
}

// lateAnswer notes a response that came only after the read's timeout
// was confirmed: the server was slow, not silent, and the answer counts.
func (c *Conn) lateAnswer() {
	if !c.wait.confirmed {
		return
	}
	msg := fmt.Sprintf("the response came %v after the read began, past the %v read timeout, and was accepted: %s",
		time.Since(c.wait.start).Round(time.Millisecond), c.wait.limit, c.wait.why)
	c.log.add(Event{Conn: c.id, Dir: "note", Note: msg})
	if c.note != nil {
		c.note(msg)
	}
}

// patientReader reads the connection for the frame reader, asking the
// connection for more time when a deadline passes, so that a timeout
// confirmed as a slow server's does not lose the bytes of a frame half
// read.
type patientReader struct{ c *Conn }

func (p patientReader) Read(b []byte) (int, error) {
	for {
		n, err := p.c.nc.Read(b)
		if n > 0 || err == nil || !isTimeout(err) {
			return n, err
		}
		more := p.c.moreTime()
		if more <= 0 {
			return n, err
		}
		if derr := p.c.nc.SetReadDeadline(time.Now().Add(more)); derr != nil {
			return n, err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

func dumpIf(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return hexDump(b, 256)
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && !oe.Timeout()
}

// expectClose waits up to d for the server to close the connection, reading
// and discarding anything before it. It reports whether the close came.
func (c *Conn) expectClose(d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false, nil
		}
		_, err := c.readWithin(left)
		switch {
		case err == nil:
			continue
		case errors.Is(err, ErrClosed):
			return true, nil
		case errors.Is(err, ErrSilent):
			return false, nil
		default:
			var fe *spec.FrameError
			if errors.As(err, &fe) && !fe.Resumable() {
				// Truncated frames end in EOF: the server closed mid-frame.
				if errors.Is(err, spec.ErrTruncatedBody) || errors.Is(err, spec.ErrTruncatedHeader) {
					return true, nil
				}
			}
			return false, err
		}
	}
}

// normalizeReadErr maps a raw socket read error onto ErrSilent / ErrClosed.
func normalizeReadErr(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		return ErrClosed
	case errors.As(err, &ne) && ne.Timeout():
		return ErrSilent
	case isReset(err):
		return fmt.Errorf("%w (reset)", ErrClosed)
	}
	return err
}
