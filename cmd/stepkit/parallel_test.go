package main

import (
	"bufio"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver"
)

// peakListener records the most connections open at once.
type peakListener struct {
	net.Listener
	mu         sync.Mutex
	open, peak int
}

type peakConn struct {
	net.Conn
	l    *peakListener
	once sync.Once
}

func (l *peakListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.open++
	l.peak = max(l.peak, l.open)
	l.mu.Unlock()
	return &peakConn{Conn: c, l: l}, nil
}

func (c *peakConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

func (c *peakConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// reset waits until the connections of the last run are closed, and
// returns the peak of that run.
func (l *peakListener) reset(t *testing.T) int {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		l.mu.Lock()
		if l.open == 0 {
			p := l.peak
			l.peak = 0
			l.mu.Unlock()
			return p
		}
		l.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("connections still open 10s after the upload")
		}
	}
}

// Several files given to one upload go at once, one connection each, to a
// server that advertised pipelining; one after another to any other
// server, or with --parallel 1. The reports come in the order of the
// arguments either way.
func TestCLIUploadsFilesInParallel(t *testing.T) {
	clientEnv(t)
	srv, err := refserver.New(refserver.Config{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &peakListener{Listener: tl}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	addr := tl.Addr().String()
	plain := noPipeliningProxy(t, addr)

	dir := t.TempDir()
	for n, tc := range []struct {
		server   string
		args     []string
		wantPeak int
	}{
		{addr, nil, min(autoParallel(), 4)},
		{addr, []string{"--parallel", "3"}, 3},
		{addr, []string{"--parallel", "1"}, 1},
		{plain, nil, 1},
	} {
		var files []string
		md5s := map[string]string{}
		for i := 0; i < 4; i++ {
			p, data := randomFile(t, dir, "p"+strconv.Itoa(n)+"-"+strconv.Itoa(i)+".bin", 50000+1000*i, uint64(n*10+i))
			files = append(files, p)
			md5s[p] = md5Of(data)
		}
		l.reset(t)
		args := append(append([]string{"upload"}, files...), "--server", tc.server, "--user", "par", "--json")
		code, out, errs := runCLI(t, "", append(args, tc.args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d %s", tc.args, code, errs)
		}
		sc := bufio.NewScanner(strings.NewReader(out))
		i := 0
		for ; sc.Scan(); i++ {
			var rep uploadReport
			if err := json.Unmarshal(sc.Bytes(), &rep); err != nil || i >= len(files) || rep.File != files[i] ||
				!rep.Verified || rep.MD5 != md5s[files[i]] {
				t.Fatalf("%v: line %d %q (%v)", tc.args, i, sc.Text(), err)
			}
		}
		if i != len(files) {
			t.Fatalf("%v: %d reports for %d files", tc.args, i, len(files))
		}
		if p := l.reset(t); p != tc.wantPeak {
			t.Fatalf("%s %v: %d connections at once, want %d", tc.server, tc.args, p, tc.wantPeak)
		}
	}
	if code, _, _ := runCLI(t, "", "upload", "x", "--server", addr, "--user", "u", "--parallel", "0"); code != exitUsage {
		t.Fatalf("--parallel 0: exit %d", code)
	}
}
