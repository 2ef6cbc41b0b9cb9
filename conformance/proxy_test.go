package conformance_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stepkit/stepkit/spec"
)

// mutatingProxy sits between the suite and a real server and alters one
// thing in the conversation, to check that the suite notices.
type mutatingProxy struct {
	upstream string
	mut      *mutation
	l        net.Listener
	// serial serves one client connection at a time, as some course
	// servers do; limit, when not zero, serves that many at once (a pool
	// of workers), the others waiting their turn in the order they came.
	serial bool
	limit  int
	// refuse resets a connection that comes while limit are being
	// served, instead of letting it wait: a server with a fixed pool of
	// workers that turns away the client one too many.
	refuse bool

	mu     sync.Mutex
	tokens []string          // tokens issued by LOGIN responses, in order
	byUser map[string]string // the last token issued to each username
	wg     sync.WaitGroup
	// answered counts responses on every connection; releaseAt is the
	// earliest time the next response may leave (see mutation.stall).
	answered  int
	releaseAt time.Time
}

// mutation alters requests on their way to the server and responses on
// their way back. Either hook may be nil.
type mutation struct {
	name string
	// fail lists the requirements the suite must report as FAIL; nonStrict
	// those it must report as NON-STRICT (and not FAIL); info those it must
	// report as INFORMATIONAL.
	fail, nonStrict, info []string
	// selectors restrict the run to the cases that matter.
	selectors []string
	// request may rewrite a request (nil: forward the bytes unchanged).
	request func(p *proxyConn, req *spec.Message) *spec.Message
	// response returns the frames to send back for req's response; nil
	// drops it.
	response func(p *proxyConn, req, resp *spec.Message) []*spec.Message
	// encode, if set, writes a response frame instead of spec.AppendFrame.
	encode func(w io.Writer, m *spec.Message) error
	// stallOversized keeps a header past the limits from the server and
	// swallows what follows, silently: a server that waits for the body
	// the header announced, as the course's reference does.
	stallOversized bool
	// overRead reads a frame's binary part as the course's reference does
	// (STEP.md A.23): reads that each ask for the whole binary length,
	// everything they return kept. A block that arrives in pieces with the
	// next request behind it takes the start of that request: the block
	// goes to the server too long (406), and the rest of the connection is
	// lost, as the reference then reads a header out of the middle of a
	// request and waits for the length it finds there.
	overRead bool
	// stall, if set, holds the n-th response (counted over every
	// connection, from 1) to req for the time it returns, and every
	// response after it until then: a server that is busy (an interpreter
	// shared by its threads, a machine grading several servers) answers
	// late, and in the order it worked through the requests.
	stall func(n int, req *spec.Message) time.Duration
}

// proxyConn is the state of one proxied connection.
type proxyConn struct {
	px      *mutatingProxy
	token   string // the token this connection's LOGIN got
	pending chan *spec.Message
	// held is a response a mutation keeps back; closeAfter asks to close
	// the client connection once the current frames are written.
	held       *spec.Message
	closeAfter bool
}

func startProxy(t testing.TB, upstream string, m *mutation) string {
	t.Helper()
	return startProxyMode(t, upstream, m, false)
}

func startProxyMode(t testing.TB, upstream string, m *mutation, serial bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &mutatingProxy{upstream: upstream, mut: m, l: l, serial: serial}
	done := make(chan struct{})
	go func() {
		defer close(done)
		px.serve()
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		px.wg.Wait()
	})
	return l.Addr().String()
}

func (px *mutatingProxy) serve() {
	var workers chan struct{}
	if px.limit > 0 {
		workers = make(chan struct{}, px.limit)
	}
	for {
		c, err := px.l.Accept()
		if err != nil {
			return
		}
		if px.serial {
			px.handle(c)
			continue
		}
		if workers != nil && px.refuse {
			select {
			case workers <- struct{}{}:
			default:
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
				c.Close()
				continue
			}
		} else if workers != nil {
			workers <- struct{}{}
		}
		px.wg.Add(1)
		go func() {
			defer px.wg.Done()
			if workers != nil {
				defer func() { <-workers }()
			}
			px.handle(c)
		}()
	}
}

// startProxyWorkers starts a proxy serving at most workers connections at
// once.
func startProxyWorkers(t testing.TB, upstream string, m *mutation, workers int) string {
	t.Helper()
	return startProxyLimit(t, upstream, m, workers, false)
}

// startProxyLimit starts a proxy serving at most workers connections at
// once; with refuse, a connection past them is reset at once.
func startProxyLimit(t testing.TB, upstream string, m *mutation, workers int, refuse bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &mutatingProxy{upstream: upstream, mut: m, l: l, limit: workers, refuse: refuse}
	done := make(chan struct{})
	go func() {
		defer close(done)
		px.serve()
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		px.wg.Wait()
	})
	return l.Addr().String()
}

func (px *mutatingProxy) issued(user, tok string) {
	px.mu.Lock()
	px.tokens = append(px.tokens, tok)
	if px.byUser == nil {
		px.byUser = map[string]string{}
	}
	px.byUser[user] = tok
	px.mu.Unlock()
}

// tokenOf returns the last token issued to user through the proxy.
func (px *mutatingProxy) tokenOf(user string) string {
	px.mu.Lock()
	defer px.mu.Unlock()
	return px.byUser[user]
}

// knownToken reports whether tok was issued through the proxy.
func (px *mutatingProxy) knownToken(tok string) bool {
	px.mu.Lock()
	defer px.mu.Unlock()
	for _, t := range px.tokens {
		if t == tok {
			return true
		}
	}
	return false
}

// tokenBefore returns the token issued just before tok.
func (px *mutatingProxy) tokenBefore(tok string) string {
	px.mu.Lock()
	defer px.mu.Unlock()
	for i, t := range px.tokens {
		if t == tok && i > 0 {
			return px.tokens[i-1]
		}
	}
	return ""
}

func (px *mutatingProxy) lastToken() string {
	px.mu.Lock()
	defer px.mu.Unlock()
	if len(px.tokens) == 0 {
		return ""
	}
	return px.tokens[len(px.tokens)-1]
}

func (px *mutatingProxy) handle(client net.Conn) {
	defer client.Close()
	server, err := net.DialTimeout("tcp", px.upstream, 2*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	pc := &proxyConn{px: px, pending: make(chan *spec.Message, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pc.responses(server, client)
		client.Close()
	}()
	pc.requests(client, server)
	if tc, ok := server.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	<-done
}

// requests forwards client frames to the server. Frames it cannot parse are
// forwarded as they are; a header past the limits switches to a plain copy.
func (pc *proxyConn) requests(client, server net.Conn) {
	var br io.Reader = bufio.NewReader(client)
	if pc.px.mut.overRead {
		// Reads straight from the socket, so that a read returns what has
		// arrived, as a recv call does.
		br = client
	}
	for {
		hdr := make([]byte, spec.HeaderLen)
		if _, err := io.ReadFull(br, hdr); err != nil {
			return
		}
		jl, bl := binary.BigEndian.Uint32(hdr[:4]), binary.BigEndian.Uint32(hdr[4:])
		if jl > 1<<20 || bl > 1<<20 {
			if pc.px.mut.stallOversized {
				io.Copy(io.Discard, br)
				return
			}
			pc.pending <- spec.NewMessage()
			server.Write(hdr)
			io.Copy(server, br)
			return
		}
		body := make([]byte, int(jl)+int(bl))
		n, err := io.ReadFull(br, body[:jl])
		if err == nil && pc.px.mut.overRead {
			var bin []byte
			bin, err = recvLikeReference(br, int(bl))
			body = append(body[:jl], bin...)
			n += len(bin)
		} else if err == nil {
			var m int
			m, err = io.ReadFull(br, body[jl:])
			n += m
		}
		frame := append(hdr, body[:n]...)
		if err != nil {
			server.Write(frame)
			return
		}
		overRead := n > int(jl)+int(bl)
		m, perr := spec.ParseMessage(body[:jl])
		if perr != nil {
			pc.pending <- spec.NewMessage() // unparseable: an empty request
			server.Write(frame)
			continue
		}
		m.Binary = body[jl:]
		if overRead {
			// The block as the reference took it, too long: the server
			// answers it 406. What follows is lost.
			pc.pending <- m
			if f, err := spec.EncodeFrame(m); err == nil {
				server.Write(f)
			}
			io.Copy(io.Discard, br)
			return
		}
		if pc.px.mut.request != nil {
			if nm := pc.px.mut.request(pc, m); nm != nil {
				m = nm
				frame, _ = spec.EncodeFrame(m)
			}
		}
		pc.pending <- m
		if _, err := server.Write(frame); err != nil {
			return
		}
	}
}

// responses forwards server frames to the client through the mutation.
func (pc *proxyConn) responses(server, client net.Conn) {
	r := spec.NewReader(server, spec.Limits{MaxBinary: 1 << 20})
	for {
		resp, err := r.ReadMessage()
		if err != nil {
			return
		}
		resp = resp.Clone()
		var req *spec.Message
		select {
		case req = <-pc.pending:
		default:
		}
		if req != nil && req.Operation() == spec.OpLogin {
			if tok, err := resp.Token(); err == nil {
				pc.token = tok
				user, _ := req.Username()
				pc.px.issued(user, tok)
			}
		}
		out := []*spec.Message{resp}
		if pc.px.mut.response != nil && req != nil {
			out = pc.px.mut.response(pc, req, resp)
		}
		if len(out) > 0 {
			pc.px.pace(req)
		}
		for _, m := range out {
			if err := pc.write(client, m); err != nil {
				return
			}
		}
		if pc.closeAfter {
			return
		}
	}
}

// pace waits until the response to req may leave (mutation.stall).
func (px *mutatingProxy) pace(req *spec.Message) {
	if px.mut.stall == nil {
		return
	}
	if req == nil {
		req = spec.NewMessage()
	}
	px.mu.Lock()
	px.answered++
	at := time.Now().Add(px.mut.stall(px.answered, req))
	if at.Before(px.releaseAt) {
		at = px.releaseAt
	}
	px.releaseAt = at
	px.mu.Unlock()
	time.Sleep(time.Until(at))
}

func (pc *proxyConn) write(w io.Writer, m *spec.Message) error {
	if pc.px.mut.encode != nil {
		return pc.px.mut.encode(w, m)
	}
	b, err := spec.EncodeFrame(m)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// recvLikeReference reads a binary part of n bytes the way the course's
// reference does: each read asks for n bytes, whatever has arrived so far,
// and everything read is kept, so it may return more than n.
func recvLikeReference(r io.Reader, n int) ([]byte, error) {
	var got []byte
	buf := make([]byte, n)
	for len(got) < n {
		k, err := r.Read(buf)
		got = append(got, buf[:k]...)
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// advertisePipelining adds "pipelining": true to successful LOGIN
// responses (EXT-6).
func advertisePipelining(_ *proxyConn, req, resp *spec.Message) []*spec.Message {
	if req.Operation() == spec.OpLogin && status(resp) == spec.StatusOK {
		resp.Set(spec.FieldPipelining, true)
	}
	return one(resp)
}

// charCountEncode writes the frame with the reference's bug: the JSON
// length counts characters.
func charCountEncode(w io.Writer, m *spec.Message) error {
	js := m.AppendJSON(nil)
	b := spec.Header(uint32(utf8.RuneCount(js)), uint32(len(m.Binary)))
	b = append(b, js...)
	b = append(b, m.Binary...)
	_, err := w.Write(b)
	return err
}

// splitEncode writes the header and the rest in two writes, a moment apart.
func splitEncode(w io.Writer, m *spec.Message) error {
	b, err := spec.EncodeFrame(m)
	if err != nil {
		return err
	}
	if _, err := w.Write(b[:spec.HeaderLen]); err != nil {
		return err
	}
	time.Sleep(5 * time.Millisecond)
	_, err = w.Write(b[spec.HeaderLen:])
	return err
}
