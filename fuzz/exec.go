package fuzz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// Defaults of the timeouts, those of the conformance suite.
const (
	DefaultReadTimeout = 2 * time.Second
	// byeWait bounds the wait for an answer to BYE, which a client does
	// not wait for (BYE-1) and the course server never sends.
	byeWait = 200 * time.Millisecond
	// splitPause separates the pieces of a frame written in several, so
	// that they leave in separate segments.
	splitPause = 3 * time.Millisecond
)

// Outcomes of an exchange.
const (
	Answered   = "answered"
	Silence    = "silence"     // no answer, confirmed by a LOGIN answered on a new connection
	Stalled    = "stalled"     // no answer, and none to a LOGIN on a new connection either
	Hangup     = "closed"      // the server closed the connection instead of answering
	BadFrame   = "bad-frame"   // the answer is not a well-formed frame
	NoAnswer   = "no-answer"   // nothing came to a request that needs no answer
	NotJudged  = "not-judged"  // sent where an answer cannot be told (after a lie or a failure)
	SendFailed = "send-failed" // the connection was already closed by the server
	NoConnect  = "no-connect"  // the connection could not be opened
)

// need says whether a request must be answered.
type need int

const (
	needNone     need = iota // no answer can be paired with it
	needOptional             // an answer may come (BYE, a frame that does not parse)
	needAnswer               // REQ-6: it must be answered
)

// Exchange is one step as it went.
type Exchange struct {
	Step     int
	Conn     int
	Sent     string        // the JSON text sent, placeholders resolved
	Req      *spec.Message // the request as the server should read it; nil when it is not one
	BinLen   int
	need     need
	Outcome  string
	Resp     *spec.Message
	RespBin  []byte
	Detail   string // how a silence was confirmed, what was wrong with a frame
	Latency  time.Duration
	charsLen bool   // the answer's JSON length counted characters (FRAME-2)
	tokenOf  int    // the placeholder user whose token the request carries unchanged
	block    []byte // the binary part sent
}

// Trace is an input's run.
type Trace struct {
	Exchanges []*Exchange
}

// Exec runs inputs against a target.
type Exec struct {
	Target      Target
	ReadTimeout time.Duration
}

// xconn is one of an input's connections.
type xconn struct {
	c       net.Conn
	r       *spec.Reader
	pending []*Exchange
	// closed: by the server (an EOF seen, a write failed) or by us.
	closed, shut bool
	// desync: what the server reads next is not known (a lying length, a
	// frame left unanswered), so nothing more is judged on it.
	desync bool
	// afterBye: a BYE was sent; what follows on the connection is not
	// judged.
	afterBye bool
}

func (e *Exec) rt() time.Duration {
	if e.ReadTimeout > 0 {
		return e.ReadTimeout
	}
	return DefaultReadTimeout
}

// Run sends in's steps in order and reads the answers. A step on another
// connection waits for every answer pending before it, so the server
// sees the steps in the order of the input; Pipe lets a step's answer
// wait until the next step (on the same connection) is sent.
func (e *Exec) Run(ctx context.Context, in *Input, n *names) *Trace {
	tr := &Trace{}
	conns := map[int]*xconn{}
	defer func() {
		for _, x := range conns {
			if x.c != nil {
				x.c.Close()
			}
		}
	}()
	for i := range in.Steps {
		st := &in.Steps[i]
		bye := false
		if ctx.Err() != nil {
			break
		}
		for id, x := range conns {
			if id != st.Conn && len(x.pending) > 0 {
				e.drain(ctx, x, n)
			}
		}
		x := conns[st.Conn]
		if x == nil {
			x = &xconn{}
			conns[st.Conn] = x
			dctx, cancel := context.WithTimeout(ctx, e.rt())
			c, err := e.Target.Dial(dctx)
			cancel()
			if err != nil {
				x.closed = true
				tr.Exchanges = append(tr.Exchanges, &Exchange{Step: i, Conn: st.Conn, Outcome: NoConnect, Detail: err.Error()})
				continue
			}
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetNoDelay(true)
			}
			x.c, x.r = c, spec.NewReader(c, spec.Limits{})
		}
		switch st.Act {
		case ActShut:
			if x.c != nil && !x.closed {
				if cw, ok := x.c.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
				}
				x.shut = true
			}
			continue
		case ActDrop:
			if x.c != nil {
				x.c.Close()
			}
			x.closed, x.pending = true, nil
			continue
		case ActWait:
			time.Sleep(50 * time.Millisecond)
			continue
		}
		ex := &Exchange{Step: i, Conn: st.Conn, Sent: n.resolve(st.JSON), BinLen: len(st.Bin), block: st.Bin}
		if tm, err := spec.ParseMessage([]byte(st.JSON)); err == nil {
			if raw, ok := tm.Raw(spec.FieldToken); ok {
				if u, ok := placeholderUser(raw, "token"); ok && n.tokens[u] != "" {
					ex.tokenOf = u
				}
			}
		}
		tr.Exchanges = append(tr.Exchanges, ex)
		if x.closed || x.shut {
			ex.Outcome = SendFailed
			continue
		}
		ex.need = needAnswer
		if m, err := spec.ParseMessage([]byte(ex.Sent)); err == nil && !st.lies() {
			ex.Req = m
			if m.Operation() == spec.OpBye {
				ex.need = needOptional
			}
		} else {
			ex.need = needOptional
		}
		if strings.Contains(ex.Sent, `"BYE"`) {
			// A BYE ends the session, however the server reads it.
			bye = true
		}
		if st.lies() {
			ex.need = needNone
		}
		if x.desync || x.afterBye {
			ex.need = needNone
		}
		if bye && ex.need == needAnswer {
			ex.need = needOptional
		}
		if err := e.write(x.c, st.frame(n), st.Split); err != nil {
			ex.Outcome, ex.Detail = SendFailed, err.Error()
			x.closed = true
			continue
		}
		if st.Cut > 0 {
			x.c.Close()
			x.closed, x.pending = true, nil
			ex.Outcome = NotJudged
			continue
		}
		if ex.need == needNone {
			ex.Outcome = NotJudged
			x.desync = true
			continue
		}
		x.pending = append(x.pending, ex)
		if bye {
			x.afterBye = true
		}
		if !st.Pipe {
			e.drain(ctx, x, n)
		}
	}
	for _, x := range conns {
		e.drain(ctx, x, n)
	}
	return tr
}

func (e *Exec) write(c net.Conn, b []byte, split []int) error {
	_ = c.SetWriteDeadline(time.Now().Add(e.rt()))
	prev := 0
	for _, at := range split {
		if at <= prev || at >= len(b) {
			continue
		}
		if _, err := c.Write(b[prev:at]); err != nil {
			return err
		}
		prev = at
		time.Sleep(splitPause)
	}
	_, err := c.Write(b[prev:])
	return err
}

// drain reads the answers pending on x, in order.
func (e *Exec) drain(ctx context.Context, x *xconn, n *names) {
	for len(x.pending) > 0 {
		ex := x.pending[0]
		x.pending = x.pending[1:]
		if x.closed || x.desync {
			ex.Outcome = NotJudged
			continue
		}
		wait := e.rt()
		if ex.need == needOptional && ex.Req != nil {
			wait = min(wait, byeWait)
		}
		start := time.Now()
		m, err := e.read(x, wait)
		if err != nil && isTimeout(err) && ex.need == needAnswer {
			// Confirm the silence as the conformance suite does: a LOGIN
			// on a new connection answered while this request is not.
			took, perr := e.probe(ctx)
			if perr != nil {
				ex.Detail = fmt.Sprintf("no answer within %v, and a LOGIN on a new connection got none within %v either (%v)", e.rt(), took.Round(time.Millisecond), perr)
				m, err = e.read(x, minGrace(e.rt()))
				if err != nil {
					ex.Outcome = Stalled
					x.desync = true
					continue
				}
			} else {
				m, err = e.read(x, max(2*took, minGrace(e.rt())))
				if err != nil && isTimeout(err) {
					ex.Outcome = Silence
					ex.Detail = fmt.Sprintf("no answer within %v; a LOGIN on a new connection was answered in %v meanwhile", e.rt(), took.Round(100*time.Microsecond))
					x.desync = true
					continue
				}
			}
		}
		ex.Latency = time.Since(start)
		var fe *spec.FrameError
		switch {
		case err == nil:
			ex.Outcome, ex.Resp, ex.RespBin = Answered, m, m.Binary
			n.learn(ex)
		case errors.As(err, &fe) && fe.Recovered != nil:
			ex.Outcome, ex.Resp, ex.RespBin, ex.charsLen = Answered, fe.Recovered, fe.Recovered.Binary, true
			ex.Detail = fe.Error()
			n.learn(ex)
		case errors.As(err, &fe) && !errors.Is(err, spec.ErrTruncatedHeader) && !errors.Is(err, spec.ErrTruncatedBody):
			ex.Outcome, ex.Detail = BadFrame, fe.Error()
			if !fe.Resumable() {
				x.desync = true
			}
		case isTimeout(err):
			ex.Outcome = NoAnswer
			x.desync = true
		default:
			ex.Outcome, ex.Detail = Hangup, err.Error()
			x.closed = true
		}
	}
}

func (e *Exec) read(x *xconn, d time.Duration) (*spec.Message, error) {
	_ = x.c.SetReadDeadline(time.Now().Add(d))
	m, err := x.r.ReadMessage()
	if err == nil {
		m.Binary = append([]byte(nil), m.Binary...)
	}
	return m, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

func minGrace(rt time.Duration) time.Duration { return max(rt/10, 50*time.Millisecond) }

// probe sends a LOGIN for a made-up user on a new connection and waits
// for any STEP answer, up to four read timeouts.
func (e *Exec) probe(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	d := 4 * e.rt()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	c, err := e.Target.Dial(ctx)
	if err != nil {
		return time.Since(start), fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d))
	user := fmt.Sprintf("probe%d", time.Now().UnixNano()%1e9)
	m := spec.NewRequest(spec.OpLogin, spec.TypeAuth).SetString(spec.FieldUsername, user).SetString(spec.FieldPassword, coursePassword(user))
	if err := spec.NewWriter(c).WriteMessage(m); err != nil {
		return time.Since(start), err
	}
	_, err = spec.NewReader(c, spec.Limits{}).ReadMessage()
	var fe *spec.FrameError
	if errors.As(err, &fe) && fe.Recovered != nil {
		err = nil
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("the connection was closed without an answer")
	}
	return time.Since(start), err
}

// learn records the token a LOGIN of a placeholder user was issued.
func (n *names) learn(ex *Exchange) {
	if ex.Req == nil || ex.Req.Operation() != spec.OpLogin || ex.Resp == nil {
		return
	}
	user, err := ex.Req.String(spec.FieldUsername)
	if err != nil {
		return
	}
	for i := 1; i <= maxUsers; i++ {
		if user == n.user(i) {
			if st, ok := ex.Resp.Status(); ok && st == spec.StatusOK {
				if tok, err := ex.Resp.Token(); err == nil && tok != "" {
					n.tokens[i] = tok
				}
			}
		}
	}
}

// maxUsers is how many users an input speaks for.
const maxUsers = 2
