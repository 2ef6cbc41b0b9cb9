package refserver_test

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

func TestQuota(t *testing.T) {
	root := t.TempDir()
	addr, srv := refserver.StartTest(t, refserver.Config{Root: root, Quota: 10000, BlockSize: 1000})
	c := dial(t, addr)
	c.login("q")
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "a", "size", 6000)), 200)
	r := c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "b", "size", 4001))
	wantStatus(t, r, 413)
	wantOpType(t, r, spec.OpSave, spec.TypeFile)
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "b", "size", 3900)), 200)
	// DATA documents count too: 100 bytes left.
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeData, "key", "d", "pad", strings.Repeat("x", 200))), 413)
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeData, "key", "d")), 200)
	// Restarting a plan counts the new size instead of the old.
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "a", "size", 5000)), 200)
	if u := srv.Usage("q"); u < 8900 || u > 9100 {
		t.Fatalf("usage %d", u)
	}
	// Other users have their own quota.
	o := dial(t, addr)
	o.login("other")
	wantStatus(t, o.do(o.authed(spec.OpSave, spec.TypeFile, "key", "a", "size", 9000)), 200)
	// Deleting gives the space back.
	wantStatus(t, c.do(c.authed(spec.OpDelete, spec.TypeFile, "key", "a")), 404) // in progress: removed
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "c", "size", 5000)), 200)
	c.upload("c", pattern(5000, 1))
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "e", "size", 2000)), 413)
	wantStatus(t, c.do(c.authed(spec.OpDelete, spec.TypeFile, "key", "c")), 200)
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "e", "size", 2000)), 200)

	// A restarted server counts what is on disk.
	srv.Close()
	addr2, srv2 := refserver.StartTest(t, refserver.Config{Root: root, Quota: 10000, BlockSize: 1000})
	if u := srv2.Usage("q"); u < 5900 || u > 6100 {
		t.Fatalf("usage after restart %d", u)
	}
	d := dial(t, addr2)
	d.token = c.token
	wantStatus(t, d.do(d.authed(spec.OpSave, spec.TypeFile, "key", "f", "size", 4500)), 413)
}

func TestRateLimit(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{RateLimit: 0.001, RateBurst: 4}) // the login and three requests
	c := dial(t, addr)
	c.login("r")
	for i := 0; i < 3; i++ {
		wantStatus(t, c.do(c.authed(spec.OpGet, spec.TypeData, "key", "x")), 404)
	}
	r := c.do(c.authed(spec.OpGet, spec.TypeData, "key", "x"))
	wantStatus(t, r, 429)
	wantOpType(t, r, spec.OpGet, spec.TypeData)
	// The limit is per user, on every connection, and the connection
	// stays usable.
	d := dial(t, addr)
	d.token = c.token
	wantStatus(t, d.do(d.authed(spec.OpSave, spec.TypeFile, "key", "x", "size", 1)), 429)
	d.login("someone else")
	wantStatus(t, d.do(d.authed(spec.OpGet, spec.TypeData, "key", "x")), 404)
	// Logins count against the limit of the user they name.
	r = d.do(req(spec.OpLogin, spec.TypeAuth, "username", "r", "password", md5hex([]byte("r"))))
	wantStatus(t, r, 429)
	wantOpType(t, r, spec.OpLogin, spec.TypeAuth)
	wantStatus(t, d.do(d.authed(spec.OpGet, spec.TypeData, "key", "x")), 404)
}

func TestConnectionCap(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{MaxConns: 2})
	a, b := dial(t, addr), dial(t, addr)
	usable(t, a)
	usable(t, b)
	x := dial(t, addr)
	r := x.recv()
	wantStatus(t, r, 503)
	wantOpType(t, r, spec.OpError, spec.TypeError)
	closed(t, x)
	usable(t, a)
	// A closed connection frees its place.
	a.nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		y := dial(t, addr)
		y.send(req(spec.OpLogin, spec.TypeAuth, "username", "u", "password", md5hex([]byte("u"))))
		r := y.recv()
		if st, _ := r.Status(); st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no place after a close: %s", r.JSONString())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestIdleTimeout(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{IdleTimeout: 50 * time.Millisecond})
	c := dial(t, addr)
	usable(t, c)
	start := time.Now()
	closed(t, c)
	if time.Since(start) > 4*time.Second {
		t.Fatal("idle connection not closed")
	}
	usable(t, dial(t, addr))
}

func TestReadTimeoutInsideFrame(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{ReadTimeout: 50 * time.Millisecond})
	c := dial(t, addr)
	c.sendRaw(append(spec.Header(40, 0), `{"oper`...))
	closed(t, c)
	usable(t, dial(t, addr))
}

// countingListener counts the writes of each accepted connection.
type countingListener struct {
	net.Listener
	writes atomic.Int64
}

type countingConn struct {
	net.Conn
	l *countingListener
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, l: l}, nil
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.l.writes.Add(1)
	return c.Conn.Write(p)
}

func (c *countingConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

func TestEachResponseIsOneWrite(t *testing.T) {
	srv, err := refserver.New(refserver.Config{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &countingListener{Listener: tl}
	go srv.Serve(l)
	defer srv.Close()
	c := dial(t, tl.Addr().String())
	c.login("w")
	data := pattern(3*spec.DefaultBlockSize, 1)
	c.upload("f", data)
	c.download("f")
	wantStatus(t, c.do(c.authed(spec.OpGet, spec.TypeData, "key", "none")), 404)
	const responses = 1 + 1 + 3 + 1 + 3 + 1
	if n := l.writes.Load(); n != responses {
		t.Fatalf("%d writes for %d responses", n, responses)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	met, err := refserver.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := refserver.StartTest(t, refserver.Config{Metrics: met})
	c := dial(t, addr)
	c.login("m")
	c.upload("f", pattern(100, 1))
	wantStatus(t, c.do(c.authed(spec.OpGet, spec.TypeData, "key", "none")), 404)
	c.sendRaw(spec.RawFrame([]byte("nope"), nil))
	wantStatus(t, c.recv(), 400)

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string, labels ...string) float64 {
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		next:
			for _, m := range mf.Metric {
				for i := 0; i+1 < len(labels); i += 2 {
					found := false
					for _, lp := range m.Label {
						if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
							found = true
						}
					}
					if !found {
						continue next
					}
				}
				if m.Counter != nil {
					return m.Counter.GetValue()
				}
				return m.Gauge.GetValue()
			}
		}
		return -1
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"step_requests_total", []string{"operation", "UPLOAD", "status", "200"}, 1},
		{"step_requests_total", []string{"operation", "SAVE", "status", "200"}, 1},
		{"step_requests_total", []string{"operation", "GET", "status", "404"}, 1},
		{"step_requests_total", []string{"operation", "LOGIN", "status", "200"}, 1},
		{"step_uploads_completed_total", nil, 1},
		{"step_connections_total", nil, 1},
		{"step_connections_active", nil, 1},
		{"step_frame_errors_total", []string{"error", "malformed"}, 1},
	} {
		if got := value(tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if in, out := value("step_received_bytes_total"), value("step_sent_bytes_total"); in < 100 || out < 100 {
		t.Errorf("bytes in %v, out %v", in, out)
	}
}
