package judge

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// behaviour is how the judging server treats a client in one case: the
// plan it makes, how it writes responses, and which requests it refuses,
// alters or leaves unanswered. The zero value is the course server as
// clients know it: block_size 20480, no pipelining advertised, each
// response in one write.
type behaviour struct {
	blockSize int  // block_size of the plans (0: 20480)
	advertise bool // keep "pipelining": true in LOGIN responses (EXT-6)
	segment   bool // write every response in pieces, with pauses between them
	coalesce  bool // write the responses to requests already waiting in one write
	// hold, when not zero, delays the response to the first UPLOAD until
	// more bytes arrive from the client or hold has passed: a client that
	// does not wait for it shows itself.
	hold time.Duration
	// answer, when it returns a message, answers the request in place of
	// the server.
	answer func(r *request) *spec.Message
	// silent, when it reports true, leaves the request unanswered, and
	// every later one on its connection.
	silent func(r *request) bool
	// alter changes a server response before it goes out.
	alter func(r *request, resp *spec.Message)
	// clock, when set, is the judging server's clock, which stamps the
	// tokens it issues; nil is the host's clock, with every LOGIN
	// answered so that its token's second is still the client's when the
	// response has reached it whole (see tokenWait).
	clock func() time.Time
}

// request is one request the client sent, as the judge saw it.
type request struct {
	conn, seq int
	at        time.Duration
	msg       *spec.Message
	// charCount is set when the frame's JSON length counted characters,
	// with the header as sent and the JSON text's length in bytes.
	charCount bool
	header    []byte
	jsonBytes int
	// pipelined is set when the request carries a block and its bytes
	// had begun to arrive before the response to the previous request on
	// its connection was written (CLIENT-4).
	pipelined bool
	binLen    int           // the length of its block
	dropped   bool          // its block was not kept (past the case's budget)
	resp      *spec.Message // the answer (nil: none)
	altered   string        // what the judge changed or answered itself
}

func (r *request) op() spec.Operation { return r.msg.Operation() }
func (r *request) typ() spec.Type     { return r.msg.Type() }
func (r *request) is(op spec.Operation, t spec.Type) bool {
	return r.op() == op && r.typ() == t
}

// status is the status the judge answered, -1 for none.
func (r *request) status() spec.Status {
	if r.resp == nil {
		return -1
	}
	s, ok := r.resp.Status()
	if !ok {
		return -1
	}
	return s
}

// badFrame is a frame the judge could not read.
type badFrame struct {
	conn    int
	err     error
	header  []byte // as announced, when the header was read
	snippet string // what the parser saw
}

// Timing of the judging server.
const (
	segmentPause = 100 * time.Millisecond // between the pieces of a segmented response
	maxEvents    = 400
	maxKept      = 64 << 20 // bytes of the client's blocks kept for judging
	maxRequests  = 20000    // requests kept for judging
	writeTimeout = 5 * time.Second
)

// server is the judging server of one case: refserver (the backend, on
// the host's loopback) behind a relay that listens where the client looks
// for its server, records every frame, and applies the case's behaviour.
type server struct {
	b       behaviour
	srv     *refserver.Server
	backend string
	root    string
	bl      net.Listener
	served  chan error
	l       net.Listener
	start   time.Time

	mu      sync.Mutex
	reqs    []*request
	events  []conformance.Event
	msgs    map[string]bool // status_msg texts the client was sent
	conns   []net.Conn
	nconn   int
	uploads int // UPLOAD requests seen, for the hold of the first
	bad     []badFrame
	kept    int64 // bytes of blocks kept
	unkept  int   // requests past maxRequests, counted only
	wg      sync.WaitGroup
	// hookMu serialises the behaviour's hooks: a client may use several
	// connections at once.
	hookMu sync.Mutex
}

// startServer starts the backend and the relay on l.
func startServer(b behaviour, l net.Listener, start time.Time) (*server, error) {
	root, err := os.MkdirTemp("", "stepkit-judge-")
	if err != nil {
		return nil, fmt.Errorf("judge storage: %w", err)
	}
	srv, err := refserver.New(refserver.Config{Root: root, BlockSize: b.blockSize,
		ReadTimeout: 10 * time.Minute, IdleTimeout: 10 * time.Minute, UploadMaxAge: -1, Now: b.clock})
	if err != nil {
		os.RemoveAll(root)
		return nil, fmt.Errorf("judging server: %w", err)
	}
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		os.RemoveAll(root)
		return nil, fmt.Errorf("judging server: %w", err)
	}
	s := &server{msgs: map[string]bool{}, b: b, srv: srv, backend: bl.Addr().String(), root: root, bl: bl, served: make(chan error, 1), l: l, start: start}
	go func() { s.served <- srv.Serve(bl) }()
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.l.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.nconn++
		id := s.nconn
		s.conns = append(s.conns, nc)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.relay(nc, id)
		}()
	}
}

// stopRelay stops accepting, gives the connections still open until grace
// to end by themselves (the client has exited; what it sent last is still
// being read), then closes them and waits for the relays.
func (s *server) stopRelay(grace time.Duration) {
	s.l.Close()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(grace):
	}
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	<-done
}

// close stops the backend and removes its storage.
func (s *server) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	<-s.served
	os.RemoveAll(s.root)
}

func (s *server) event(e conformance.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.At = time.Since(s.start)
	if len(s.events) < maxEvents {
		s.events = append(s.events, e)
	} else if len(s.events) == maxEvents {
		s.events = append(s.events, conformance.Event{Dir: "note", At: e.At, Note: "(further events not recorded)"})
	}
}

func (s *server) note(conn int, format string, args ...any) {
	s.event(conformance.Event{Conn: conn, Dir: "note", Note: fmt.Sprintf(format, args...)})
}

// requests returns the requests seen so far, in arrival order.
func (s *server) requests() []*request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*request(nil), s.reqs...)
}

func (s *server) exchange() []conformance.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]conformance.Event(nil), s.events...)
}

func (s *server) statusMsgs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.msgs))
	for m := range s.msgs {
		out = append(out, m)
	}
	return out
}

// relay serves one client connection: each request is read whole, recorded,
// and answered by the case's behaviour or by the backend.
func (s *server) relay(nc net.Conn, id int) {
	defer nc.Close()
	s.note(id, "the client connected from %s", nc.RemoteAddr())
	bc, err := net.DialTimeout("tcp", s.backend, 5*time.Second)
	if err != nil {
		s.note(id, "judge error: the judging server cannot be reached: %v", err)
		return
	}
	defer bc.Close()
	br := spec.NewReader(bc, spec.Limits{})
	cr := spec.NewReader(nc, spec.Limits{MaxBinary: spec.MaxBlockSize})
	var queued []byte
	silent := false
	early := false // the request being read arrived before the last response was written
	for seq := 1; ; seq++ {
		msg, err := cr.ReadMessage()
		r := &request{conn: id, seq: seq, at: time.Since(s.start)}
		var fe *spec.FrameError
		switch {
		case err == nil:
		case errors.As(err, &fe) && errors.Is(err, spec.ErrCharCountLength) && fe.Recovered != nil:
			msg = fe.Recovered
			r.charCount = true
			r.header = spec.Header(fe.JSONLen, fe.BinaryLen)
			r.jsonBytes = fe.ActualJSONLen
		default:
			if len(queued) > 0 {
				s.write(nc, id, queued)
			}
			switch {
			case errors.Is(err, io.EOF):
				s.note(id, "the client closed the connection")
			case errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET):
				s.note(id, "the connection ended: %v", err)
			case errors.Is(err, spec.ErrTruncatedHeader) || errors.Is(err, spec.ErrTruncatedBody):
				// A client that ends in the middle of a frame has not sent
				// a bad one: what it did send is judged.
				s.note(id, "the client closed the connection in the middle of a frame: %v", err)
			default:
				s.note(id, "the client sent bytes that are not a STEP frame: %v", err)
				s.mu.Lock()
				bf := badFrame{conn: id, err: err}
				if errors.As(err, &fe) {
					bf.header = spec.Header(fe.JSONLen, fe.BinaryLen)
					bf.snippet = fe.Detail
				}
				s.bad = append(s.bad, bf)
				s.mu.Unlock()
			}
			return
		}
		// The reader reuses its buffer: the request is kept, its block as
		// long as the case's budget lasts (a client resending blocks in a
		// loop must not fill the judge's memory).
		r.binLen = len(msg.Binary)
		bin := msg.Binary
		msg.Binary = nil
		r.msg = msg.Clone()
		msg.Binary = bin
		s.mu.Lock()
		if s.kept+int64(r.binLen) <= maxKept {
			s.kept += int64(r.binLen)
			r.msg.Binary = append([]byte(nil), msg.Binary...)
		} else {
			r.msg.Binary, r.dropped = nil, r.binLen > 0
		}
		s.mu.Unlock()
		r.pipelined = early && r.binLen > 0
		early = false
		e := conformance.Event{Conn: id, Dir: "recv", JSON: msg.JSONString(), Binary: len(msg.Binary)}
		if r.charCount {
			e.Note = fmt.Sprintf("the header's JSON length is %d, the JSON text is %d bytes: it counts characters", fe.JSONLen, fe.ActualJSONLen)
			e.Hex = hex.Dump(r.header)
		}
		s.event(e)
		s.mu.Lock()
		if len(s.reqs) < maxRequests {
			s.reqs = append(s.reqs, r)
		} else {
			s.unkept++
		}
		isUpload := r.is(spec.OpUpload, spec.TypeFile)
		if isUpload {
			s.uploads++
		}
		first := isUpload && s.uploads == 1
		s.mu.Unlock()

		s.hookMu.Lock()
		hold := s.b.silent != nil && s.b.silent(r)
		s.hookMu.Unlock()
		if silent || hold {
			if !silent {
				s.note(id, "the judge leaves this request unanswered, and every later one on this connection")
			}
			silent = true
			continue
		}
		var resp *spec.Message
		if s.b.answer != nil {
			s.hookMu.Lock()
			resp = s.b.answer(r)
			s.hookMu.Unlock()
			if resp != nil {
				r.altered = "answered by the judge"
			}
		}
		if resp == nil {
			if r.is(spec.OpLogin, spec.TypeAuth) && s.b.clock == nil {
				if d := tokenWait(time.Now(), s.loginSpan()); d > 0 {
					s.note(id, "the judge answers this LOGIN %v later, just after the clock's second changes, so that the second its token is stamped with lasts until the response has reached the client whole", d.Round(time.Millisecond))
					time.Sleep(d)
				}
			}
			resp, err = forward(bc, br, msg)
			if err != nil {
				s.note(id, "judge error: the judging server did not answer: %v", err)
				return
			}
			if r.is(spec.OpLogin, spec.TypeAuth) && !s.b.advertise && resp.Has(spec.FieldPipelining) {
				resp.Delete(spec.FieldPipelining)
			}
			if s.b.alter != nil {
				before := resp.JSONString()
				s.hookMu.Lock()
				s.b.alter(r, resp)
				s.hookMu.Unlock()
				if resp.JSONString() != before {
					r.altered = "altered by the judge"
				}
			}
		}
		r.resp = resp
		if len(msg.Binary) > 0 && first && s.b.hold > 0 {
			waitPending(nc, cr, s.b.hold)
		}
		// Whether the next request is already on its way: judged when it
		// is read, by whether it carries a block.
		early = !s.b.advertise && pending(nc, cr)
		frame, err := spec.EncodeFrame(resp)
		if err != nil {
			s.note(id, "judge error: %v", err)
			return
		}
		re := conformance.Event{Conn: id, Dir: "send", JSON: resp.JSONString(), Binary: len(resp.Binary), Note: r.altered}
		s.event(re)
		s.mu.Lock()
		if m := resp.StatusMsg(); m != "" {
			s.msgs[m] = true
		}
		s.mu.Unlock()
		if s.b.coalesce && len(queued) < 8<<10 && pending(nc, cr) {
			// Another request is already here: its response will share
			// this one's write.
			queued = append(queued, frame...)
			continue
		}
		if len(queued) > 0 {
			frame = append(queued, frame...)
			s.note(id, "the judge writes the last %d responses in one write", countFrames(frame))
			queued = nil
		}
		if !s.write(nc, id, frame) {
			return
		}
		if r.op() == spec.OpBye {
			return
		}
	}
}

// Course tokens carry the second of the login (TOKEN-8), and some course
// clients rebuild the token from their own clock as soon as they have read
// the LOGIN response, and stop when the two differ. That is their defect
// (TOKEN-5), judged by a case of its own; every other case must not depend
// on whether a second boundary falls between the moment the judging server
// stamps the token and the moment the client has read it whole, or the
// same client passes a case in one run and fails it in the next, blamed on
// whatever the case is about. So a LOGIN is answered at once only when the
// current second has room for the whole response (its pieces and pauses in
// a cut-up case) and tokenMargin more for the client to read it and look at
// its clock; otherwise the judge waits for the next second to begin, and
// the token is stamped with a second that lasts until the client has read
// it. The clocks are one (the client runs on the judge's machine), and the
// zone is one (TZ is passed on to the client, /etc/localtime is shared).
//
// A client that built its expected token before sending LOGIN would meet a
// new second whenever the judge waits (the judge cannot move the moment it
// sends); course clients build it after reading the response, and the
// judge serves them.
const (
	tokenMargin = 300 * time.Millisecond
	// tokenSkew is how far past the boundary the judge waits, so that the
	// server's clock, read a moment later, is surely in the new second.
	tokenSkew = 5 * time.Millisecond
)

// tokenWait is how long to wait, at now, before a LOGIN is answered whose
// response takes span to write: zero when the current second has room for
// span and tokenMargin, else until just after the next second begins.
func tokenWait(now time.Time, span time.Duration) time.Duration {
	left := now.Truncate(time.Second).Add(time.Second).Sub(now)
	if left > span+tokenMargin {
		return 0
	}
	return left + tokenSkew
}

// loginSpan is how long the judge takes to write a LOGIN response: the
// pauses between its pieces when responses are cut up (see pieces).
func (s *server) loginSpan() time.Duration {
	if s.b.segment {
		return 2 * segmentPause
	}
	return 0
}

// forward sends msg to the backend and reads its response.
func forward(bc net.Conn, br *spec.Reader, msg *spec.Message) (*spec.Message, error) {
	b, err := spec.EncodeFrame(msg)
	if err != nil {
		return nil, err
	}
	bc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := bc.Write(b); err != nil {
		return nil, err
	}
	return br.ReadMessage()
}

// write writes frame to the client, whole or, for a segmenting case, in
// pieces: the header cut in two, then the JSON cut in the middle, with a
// pause after each piece so that each reaches the client on its own.
func (s *server) write(nc net.Conn, id int, frame []byte) bool {
	nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if !s.b.segment || len(frame) <= spec.HeaderLen {
		if _, err := nc.Write(frame); err != nil {
			s.note(id, "writing to the client failed: %v", err)
			return false
		}
		return true
	}
	cuts := pieces(frame)
	for i, p := range cuts {
		if i > 0 {
			time.Sleep(segmentPause)
			nc.SetWriteDeadline(time.Now().Add(writeTimeout))
		}
		if _, err := nc.Write(p); err != nil {
			s.note(id, "writing to the client failed: %v", err)
			return false
		}
	}
	return true
}

// pieces cuts a frame inside its header and in the middle of its JSON part.
func pieces(frame []byte) [][]byte {
	jlen := int(uint32(frame[0])<<24 | uint32(frame[1])<<16 | uint32(frame[2])<<8 | uint32(frame[3]))
	mid := spec.HeaderLen + jlen/2
	if mid <= 3 || mid >= len(frame) {
		return [][]byte{frame[:3], frame[3:]}
	}
	return [][]byte{frame[:3], frame[3:mid], frame[mid:]}
}

func countFrames(b []byte) int {
	n := 0
	for len(b) >= spec.HeaderLen {
		j := int(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]))
		k := int(uint32(b[4])<<24 | uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7]))
		if spec.HeaderLen+j+k > len(b) {
			break
		}
		b = b[spec.HeaderLen+j+k:]
		n++
	}
	return n
}

// pending reports whether bytes of a further request have arrived: in the
// reader's buffer or, peeked without reading, in the socket.
func pending(nc net.Conn, r *spec.Reader) bool {
	if r.Buffered() > 0 {
		return true
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	_ = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, _ = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	})
	return n > 0
}

// waitPending waits until bytes of a further request arrive, or for d.
func waitPending(nc net.Conn, r *spec.Reader, d time.Duration) {
	deadline := time.Now().Add(d)
	for !pending(nc, r) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}
