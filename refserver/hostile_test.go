package refserver_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/internal/reliability"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// dialFrom connects to addr from the loopback address ip (any 127.0.0.0/8
// address is local on Linux), so that a test can be several clients.
func dialFrom(tb testing.TB, ip, addr string) *client {
	tb.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		tb.Fatalf("dial %s from %s: %v", addr, ip, err)
	}
	tb.Cleanup(func() { nc.Close() })
	return &client{tb: tb, nc: nc, r: spec.NewReader(nc, spec.Limits{MaxBinary: 1 << 24}), w: spec.NewWriter(nc)}
}

func TestConnectionCapPerAddress(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{MaxConnsPerIP: 2})
	a, b := dialFrom(t, "127.0.0.2", addr), dialFrom(t, "127.0.0.2", addr)
	usable(t, a)
	usable(t, b)
	x := dialFrom(t, "127.0.0.2", addr)
	r := x.recv()
	wantStatus(t, r, 503)
	wantOpType(t, r, spec.OpError, spec.TypeError)
	closed(t, x)
	// Other addresses are not affected.
	usable(t, dialFrom(t, "127.0.0.3", addr))
	usable(t, dialFrom(t, "127.0.0.3", addr))
	usable(t, a)
	// A closed connection frees its address's place.
	a.nc.Close()
	for i := 0; ; i++ {
		y := dialFrom(t, "127.0.0.2", addr)
		y.send(req(spec.OpLogin, spec.TypeAuth, "username", "u", "password", md5hex([]byte("u"))))
		r := y.recv()
		if st, _ := r.Status(); st == 200 {
			break
		}
		if i == 500 {
			t.Fatalf("no place after a close: %s", r.JSONString())
		}
		time.Sleep(10 * time.Millisecond)
	}
	reliability.Record(t, reliability.Row{Area: "server", Times: 1,
		Input:   "a third connection from one address with --max-conns-per-ip 2",
		Outcome: "one ERROR/503 frame, closed; other addresses and the first two connections served; a place freed by a close",
		Lost:    "nothing"})
}

// TestMinFrameRate: with a minimum rate, a large frame that keeps
// arriving faster than it is served even when it takes longer than the
// read timeout, while a frame that trickles is cut at about the read
// timeout.
func TestMinFrameRate(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{ReadTimeout: 400 * time.Millisecond, MinFrameRate: 8 << 10, BlockSize: 65536})
	c := dial(t, addr)
	c.login("rate")
	data := pattern(65536, 3)
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", len(data))), 200)
	up := c.authed(spec.OpUpload, spec.TypeFile, "key", "k", "block_index", 0)
	up.Binary = data
	frame, err := spec.EncodeFrame(up)
	if err != nil {
		t.Fatal(err)
	}
	// 16 pieces 100ms apart: more than the read timeout in all, each
	// piece (4 KiB+) extending the deadline by half a second.
	piece := len(frame)/16 + 1
	for off := 0; off < len(frame); off += piece {
		c.sendRaw(frame[off:min(off+piece, len(frame))])
		time.Sleep(100 * time.Millisecond)
	}
	r := c.recv()
	wantStatus(t, r, 200)
	if got, _ := r.String("md5"); got != md5hex(data) {
		t.Fatalf("md5 %q, want %q", got, md5hex(data))
	}

	s := dial(t, addr)
	s.sendRaw(spec.Header(40, 0))
	for i := 0; i < 40; i++ {
		s.nc.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := s.nc.Write([]byte{' '}); err != nil {
			break // closed by the server, as it must
		}
		time.Sleep(100 * time.Millisecond)
	}
	closed(t, s)
	usable(t, dial(t, addr))
	reliability.Record(t, reliability.Row{Area: "server", Times: 1,
		Input:   "a 64 KiB block sent in 16 pieces 100 ms apart, longer than --read-timeout, faster than --min-frame-rate",
		Outcome: "accepted, MD5 right", Lost: "nothing"})
	reliability.Record(t, reliability.Row{Area: "server", Times: 1,
		Input:   "a frame header, then a byte every 100 ms (slower than --min-frame-rate)",
		Outcome: "closed at the frame's deadline, unanswered; the next connection served", Lost: "nothing"})
}

// TestFairShareAtConnectionLimit: at the connection limit, a connection
// from an address holding fewer takes the place of the least productive
// connection of the address holding the most, which is answered 503 and
// closed; the shares converge to equal ones, and a connection from the
// address holding the most is refused as before.
func TestFairShareAtConnectionLimit(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{MaxConns: 4, ReadTimeout: time.Minute})
	// Four connections from one address, each inside a frame that barely
	// arrives: a header announcing a 1 MiB body, then nothing.
	var slow []*client
	for range 4 {
		c := dialFrom(t, "127.0.0.2", addr)
		c.sendRaw(spec.Header(64, 1<<20))
		slow = append(slow, c)
	}
	// A frame is judged by its rate once it is a second old.
	time.Sleep(1500 * time.Millisecond)

	evicted := func() int {
		t.Helper()
		n := 0
		for _, c := range slow {
			c.nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			m, err := c.r.ReadMessage()
			if err != nil {
				continue // still open, or closed in an earlier round
			}
			wantStatus(t, m, 503)
			wantOpType(t, m, spec.OpError, spec.TypeError)
			if s, _ := m.String(spec.FieldStatusMsg); !strings.Contains(s, "another address") {
				t.Errorf("eviction message %q", s)
			}
			closed(t, c)
			n++
		}
		return n
	}
	a := dialFrom(t, "127.0.0.3", addr)
	usable(t, a)
	if n := evicted(); n != 1 {
		t.Fatalf("%d connections of the address holding the most closed for a new one, want 1", n)
	}
	// The address holding the most is refused, as at any full server.
	x := dialFrom(t, "127.0.0.2", addr)
	wantStatus(t, x.recv(), 503)
	closed(t, x)
	// A second from the new address: 2 against 2 after it.
	b := dialFrom(t, "127.0.0.3", addr)
	usable(t, b)
	if n := evicted(); n != 1 {
		t.Fatalf("second connection: %d closed, want 1", n)
	}
	// A third would hold more than the other address: refused.
	y := dialFrom(t, "127.0.0.3", addr)
	wantStatus(t, y.recv(), 503)
	closed(t, y)
	usable(t, a)
	usable(t, b)
	reliability.Record(t, reliability.Row{Area: "server", Times: 2,
		Input:   "a new connection from another address when one address holds every place (--max-conns 4), with frames arriving slower than 1 KiB/s",
		Outcome: "served; the slowest connection of the address holding the most answered ERROR/503 and closed; shares converge to equal, then both addresses are refused",
		Lost:    "nothing: a frame that slow was not a request yet"})
}

// TestFairShareClosesSlowFramesFirst: of the connections of the address
// holding the most, a frame arriving too slowly gives its place before an
// idle connection, and idle connections go longest idle first.
func TestFairShareClosesSlowFramesFirst(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{MaxConns: 4, ReadTimeout: time.Minute})
	var idle []*client
	for range 3 {
		c := dialFrom(t, "127.0.0.2", addr)
		usable(t, c) // then idle
		idle = append(idle, c)
		time.Sleep(100 * time.Millisecond)
	}
	slow := dialFrom(t, "127.0.0.2", addr)
	slow.sendRaw(spec.Header(64, 1<<20))
	time.Sleep(1500 * time.Millisecond)

	gone := func(c *client) bool {
		c.nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		m, err := c.r.ReadMessage()
		if err != nil {
			return false
		}
		wantStatus(t, m, 503)
		closed(t, c)
		return true
	}
	usable(t, dialFrom(t, "127.0.0.3", addr))
	if !gone(slow) {
		t.Fatal("the slow frame was not the first to give its place")
	}
	usable(t, dialFrom(t, "127.0.0.3", addr))
	if !gone(idle[0]) {
		t.Fatal("the connection idle longest was not the next to give its place")
	}
	for _, c := range idle[1:] {
		usable(t, c)
	}
}
