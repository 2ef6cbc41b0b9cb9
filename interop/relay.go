package interop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/stepkit/stepkit/spec"
	"github.com/stepkit/stepkit/stepdump/capgen"
)

// chunk is what one read of one side of a relayed connection returned.
type chunk struct {
	at         time.Time
	fromClient bool
	data       []byte
}

// relayConn is one client connection as the relay saw it.
type relayConn struct {
	clientPort uint16
	opened     time.Time
	dialErr    error // the server could not be reached
	mu         sync.Mutex
	chunks     []chunk
	closed     time.Time
	// clientClosed is when the client ended its side (end of file or an
	// error), zero while it has not.
	clientClosed time.Time
	rec          *recording
}

func (c *relayConn) add(fromClient bool, b []byte) {
	c.mu.Lock()
	c.chunks = append(c.chunks, chunk{at: time.Now(), fromClient: fromClient, data: append([]byte(nil), b...)})
	c.mu.Unlock()
}

// recording is the traffic of one scenario.
type recording struct {
	mu    sync.Mutex
	conns []*relayConn
	bytes int64 // recorded so far, of maxRecorded
	// overflow names the side whose bytes passed maxRecorded: the relay
	// then ended the connection.
	overflow string
}

// maxRecorded bounds the bytes a scenario records (and so relays): a
// scenario moves a few MiB; a program that streams without end must not
// fill the grader's memory.
const maxRecorded = 64 << 20

// take counts n bytes against the budget; false once it is spent.
func (r *recording) take(n int, fromClient bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bytes+int64(n) > maxRecorded {
		if r.overflow == "" {
			r.overflow = SideServer
			if fromClient {
				r.overflow = SideClient
			}
		}
		return false
	}
	r.bytes += int64(n)
	return true
}

func (r *recording) list() []*relayConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*relayConn(nil), r.conns...)
}

// relay sits between a client and a server that cannot see each other
// (each in a network namespace of its own): it accepts the client's
// connections where the client looks for its server, dials the server for
// each, copies bytes both ways untouched and records them with the time
// they passed. It never parses a frame: the capture it writes is decoded by
// stepdump like any other.
type relay struct {
	l    net.Listener
	dial func(ctx context.Context) (net.Conn, error)

	mu   sync.Mutex
	rec  *recording
	open map[net.Conn]bool
	// ending is set while end waits for the scenario's connections: a
	// connection accepted then is closed, not counted in wg, since a
	// WaitGroup must not grow while it is waited for.
	ending bool
	wg     sync.WaitGroup
	accWG  sync.WaitGroup
}

func newRelay(l net.Listener, dial func(ctx context.Context) (net.Conn, error)) *relay {
	r := &relay{l: l, dial: dial, open: map[net.Conn]bool{}}
	r.accWG.Add(1)
	go r.accept()
	return r
}

// begin starts the recording of a scenario.
func (r *relay) begin() {
	r.mu.Lock()
	r.rec = &recording{}
	r.mu.Unlock()
}

// end gives the connections still open until grace to end by themselves
// (the client has exited; the server is still answering what it sent
// last), then closes them and returns the scenario's recording.
func (r *relay) end(grace time.Duration) *recording {
	r.mu.Lock()
	r.ending = true
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		r.mu.Lock()
		for c := range r.open {
			c.Close()
		}
		r.mu.Unlock()
		<-done
	}
	r.mu.Lock()
	rec := r.rec
	r.rec, r.ending = nil, false
	r.mu.Unlock()
	return rec
}

// close stops accepting; connections still open are closed.
func (r *relay) close() {
	r.l.Close()
	r.accWG.Wait()
	r.mu.Lock()
	for c := range r.open {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *relay) track(c net.Conn, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.open[c] = true
	} else {
		delete(r.open, c)
	}
}

func (r *relay) accept() {
	defer r.accWG.Done()
	for {
		cc, err := r.l.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		rec := r.rec
		if rec == nil || r.ending { // between scenarios: nobody is being recorded
			r.mu.Unlock()
			cc.Close()
			continue
		}
		r.wg.Add(1)
		r.open[cc] = true
		r.mu.Unlock()
		rc := &relayConn{opened: time.Now(), rec: rec}
		if a, ok := cc.RemoteAddr().(*net.TCPAddr); ok {
			rc.clientPort = uint16(a.Port)
		}
		rec.mu.Lock()
		rec.conns = append(rec.conns, rc)
		rec.mu.Unlock()
		go func() {
			defer r.wg.Done()
			defer r.track(cc, false)
			r.serve(cc, rc)
		}()
	}
}

// serve relays one connection until both sides have closed.
func (r *relay) serve(cc net.Conn, rc *relayConn) {
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	sc, err := r.dial(ctx)
	cancel()
	if err != nil {
		rc.mu.Lock()
		rc.dialErr = err
		rc.closed = time.Now()
		rc.mu.Unlock()
		return
	}
	r.track(sc, true)
	defer r.track(sc, false)
	defer sc.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		eof := copyRecorded(sc, cc, rc, true)
		rc.mu.Lock()
		rc.clientClosed = time.Now()
		rc.mu.Unlock()
		if eof {
			closeWrite(sc)
		} else {
			sc.Close()
			cc.Close()
		}
	}()
	go func() {
		defer wg.Done()
		if copyRecorded(cc, sc, rc, false) {
			closeWrite(cc)
		} else {
			sc.Close()
			cc.Close()
		}
	}()
	wg.Wait()
	rc.mu.Lock()
	rc.closed = time.Now()
	rc.mu.Unlock()
}

// copyRecorded copies src to dst, recording every read; it reports
// whether src ended with a clean end of file.
func copyRecorded(dst, src net.Conn, rc *relayConn, fromClient bool) bool {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !rc.rec.take(n, fromClient) {
				return false
			}
			rc.add(fromClient, buf[:n])
			dst.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return false
			}
		}
		if err != nil {
			return errors.Is(err, io.EOF)
		}
	}
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite()
		return
	}
	c.Close()
}

// clientClosed gives, by the client's port, when the client ended each
// connection, from the recording's first connection.
func (rec *recording) clientClosed() map[uint16]time.Duration {
	out := map[uint16]time.Duration{}
	var first time.Time
	for _, rc := range rec.list() {
		rc.mu.Lock()
		if first.IsZero() || rc.opened.Before(first) {
			first = rc.opened
		}
		rc.mu.Unlock()
	}
	for _, rc := range rec.list() {
		rc.mu.Lock()
		if !rc.clientClosed.IsZero() {
			out[rc.clientPort] = rc.clientClosed.Sub(first)
		}
		rc.mu.Unlock()
	}
	return out
}

// Capture addresses: the client as the relay saw it, the server on the
// STEP port, as a capture on a student's laptop would show them.
var (
	captureClient = netip.MustParseAddr("127.0.0.1")
	captureServer = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), spec.DefaultPort)
)

// captureMSS is the segment size of the synthesized packets: loopback's,
// so that a scenario of 2 MiB is a few dozen packets, not thousands.
const captureMSS = 65000

// writePcapng writes the recording as a pcapng file: one synthesized TCP
// connection per relayed connection, with the bytes as they passed and
// their times.
func (rec *recording) writePcapng(path string) error {
	var conns []*capgen.Conn
	for i, rc := range rec.list() {
		rc.mu.Lock()
		chunks := append([]chunk(nil), rc.chunks...)
		opened, closed := rc.opened, rc.closed
		port := rc.clientPort
		rc.mu.Unlock()
		if port == 0 {
			port = uint16(40000 + i)
		}
		sort.SliceStable(chunks, func(a, b int) bool { return chunks[a].at.Before(chunks[b].at) })
		c := capgen.NewConn(netip.AddrPortFrom(captureClient, port), captureServer, opened, captureMSS)
		c.Step = time.Microsecond
		c.Handshake()
		for _, ch := range chunks {
			if d := ch.at.Sub(c.Now()); d > 0 {
				c.Wait(d)
			}
			c.Write(ch.fromClient, ch.data)
		}
		if closed.IsZero() {
			closed = time.Now()
		}
		if d := closed.Sub(c.Now()); d > 0 {
			c.Wait(d)
		}
		c.Close()
		conns = append(conns, c)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	w, err := capgen.NewWriter(f, capgen.Ethernet, true, 0)
	if err != nil {
		f.Close()
		return err
	}
	if err := w.WriteAll(conns...); err != nil {
		f.Close()
		return fmt.Errorf("capture: %w", err)
	}
	return f.Close()
}
