package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stepkit/stepkit/internal/reliability"
	"github.com/stepkit/stepkit/refclient"
	"github.com/stepkit/stepkit/spec"
)

// The soak's load: fixed counts, so that what it tried is the same on
// every run; only how long it takes depends on the machine.
const (
	soakClients      = 50 // well-behaved clients
	soakCycles       = 30 // upload + download + delete each
	soakFileSize     = 200 << 10
	soakSlowloris    = 1000 // connections at once announcing a 1 MiB frame, a byte a second
	soakStallers     = 100  // connections at once sending 900 KiB of a 1 MiB frame, then nothing
	soakRounds       = 4    // of the slowloris and stalling connections, one after another
	soakEach         = 1000 // attempts of each other hostile kind
	soakHostileProcs = 8    // goroutines for each other hostile kind
	soakFrameMemory  = 64 << 20
	soakReadTimeout  = 5 * time.Second
	soakMaxConns     = 4000
	soakTimeLimit    = 5 * time.Minute // a guard against a hang, not an assertion
)

// rssBound is the bound on the server's resident memory that README and
// STEP.md state: 64 MiB for the program, twice the frame memory budget (a
// buffer grows by doubling) and 384 KiB per connection open at once (its
// read buffer, its free frame allowance, a growth step, a goroutine, the
// socket, with the collector's headroom). The 64 MiB they add for upload
// blocks held for the hash is left out: the soak uploads small files in
// order on one connection each, hashed as they arrive, which hold none.
func rssBound(frameMemory int64, conns int) int64 {
	return 64<<20 + 2*frameMemory + int64(conns)*(384<<10)
}

// buildStepkit builds the stepkit command without the race detector, so
// that the server's memory is its own.
func buildStepkit(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "stepkit")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// serverGauges scrapes the server's goroutine and open file counts.
func serverGauges(t *testing.T, url string) (goroutines, fds int) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "go_goroutines":
			goroutines = int(v)
		case "process_open_fds":
			fds = int(v)
		}
	}
	if goroutines == 0 || fds == 0 {
		t.Fatal("metrics lack go_goroutines or process_open_fds")
	}
	return goroutines, fds
}

// vmHWM is a process's peak resident memory in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// hostileTally counts, per kind, the attempts and those that ended as the
// server must end them.
type hostileTally struct {
	tried, asExpected atomic.Int64
	mu                sync.Mutex
	unexpected        []string
}

func (h *hostileTally) done(ok bool, what string) {
	h.tried.Add(1)
	if ok {
		h.asExpected.Add(1)
		return
	}
	h.mu.Lock()
	if len(h.unexpected) < 5 {
		h.unexpected = append(h.unexpected, what)
	}
	h.mu.Unlock()
}

// waitClosed reads what the server still sends until it closes the
// connection, and returns it with whether the close came before limit.
func waitClosed(nc net.Conn, limit time.Duration) ([]byte, bool) {
	nc.SetReadDeadline(time.Now().Add(limit))
	b, err := io.ReadAll(nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return b, false
	}
	return b, true
}

// responses decodes the frames in b, the bytes a server sent.
func responses(b []byte) []*spec.Message {
	var out []*spec.Message
	r := spec.NewReader(bytes.NewReader(b), spec.Limits{MaxBinary: 1 << 24})
	for {
		m, err := r.ReadMessage()
		if err != nil {
			return out
		}
		out = append(out, m.Clone())
	}
}

// TestSoakHostileClients runs stepkit serve, built without the race
// detector, under a fixed load of hostile connections of every kind
// alongside well-behaved clients uploading and downloading. The
// well-behaved clients must see no error, every hostile connection must be
// ended as STEP.md Appendix B says, the server's peak RSS must stay under
// the stated bound, and when it is over no goroutine or file descriptor
// may be left behind.
func TestSoakHostileClients(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the server's memory and descriptors from /proc")
	}
	dir := t.TempDir()
	bin := buildStepkit(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), soakTimeLimit)
	defer cancel()

	logf, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	srv := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--root", filepath.Join(dir, "store"),
		"--log-format", "json", "--metrics-addr", "127.0.0.1:0", "--max-conns", strconv.Itoa(soakMaxConns),
		"--max-frame-memory", strconv.Itoa(soakFrameMemory), "--read-timeout", soakReadTimeout.String(),
		"--idle-timeout", "60s", "--shutdown-timeout", "10s")
	srv.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	srv.Stderr = logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	defer func() {
		srv.Process.Kill()
		<-exited
	}()
	var addr, metricsURL string
	for i := 0; addr == "" || metricsURL == ""; i++ {
		if i == 1000 {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("stepkit serve did not report its addresses:\n%s", b)
		}
		time.Sleep(10 * time.Millisecond)
		b, _ := os.ReadFile(logf.Name())
		for _, l := range strings.Split(string(b), "\n") {
			var line struct{ Msg, Addr, URL string }
			if json.Unmarshal([]byte(l), &line) == nil {
				switch line.Msg {
				case "serving":
					addr = line.Addr
				case "metrics":
					metricsURL = line.URL
				}
			}
		}
	}
	baseG, baseFD := serverGauges(t, metricsURL)

	var hostile sync.WaitGroup
	stopHostile := make(chan struct{})
	dial := func() (net.Conn, error) {
		d := net.Dialer{Timeout: 30 * time.Second}
		return d.DialContext(ctx, "tcp", addr)
	}

	// Slowloris: announce a 1 MiB frame and send it a byte a second; the
	// server must cut each at its frame's deadline.
	var slow hostileTally
	slowloris := func() {
		nc, err := dial()
		if err != nil {
			slow.done(false, "dial: "+err.Error())
			return
		}
		defer nc.Close()
		nc.SetWriteDeadline(time.Now().Add(time.Minute))
		if _, err := nc.Write(spec.Header(64, 1<<20)); err != nil {
			slow.done(false, "header: "+err.Error())
			return
		}
		for sent := 0; sent < 64; sent++ {
			if _, err := nc.Write([]byte{'{'}); err != nil {
				slow.done(true, "")
				return
			}
			b, closed := waitClosed(nc, time.Second)
			if closed {
				slow.done(len(b) == 0, fmt.Sprintf("answered %q", b))
				return
			}
		}
		slow.done(false, "a byte a second for 64 seconds was never cut")
	}
	for i := 0; i < soakSlowloris; i++ {
		hostile.Add(1)
		go func() {
			defer hostile.Done()
			for range soakRounds {
				slowloris()
			}
		}()
	}

	// Stallers: most of a large frame at once, then nothing: they hold
	// frame memory, more of it together than the budget.
	var stall hostileTally
	stallFrame := append(spec.Header(2, 1<<20), "{}"...)
	stallFrame = append(stallFrame, make([]byte, 900<<10)...)
	staller := func() {
		nc, err := dial()
		if err != nil {
			stall.done(false, "dial: "+err.Error())
			return
		}
		defer nc.Close()
		go func() {
			nc.SetWriteDeadline(time.Now().Add(time.Minute))
			nc.Write(stallFrame)
		}()
		b, closed := waitClosed(nc, time.Minute)
		stall.done(closed && len(b) == 0, fmt.Sprintf("closed %v, answered %q", closed, b))
	}
	for i := 0; i < soakStallers; i++ {
		hostile.Add(1)
		go func() {
			defer hostile.Done()
			for range soakRounds {
				staller()
			}
		}()
	}

	// The other kinds, soakEach attempts each from soakHostileProcs
	// goroutines.
	kinds := []struct {
		name, outcome string
		tally         hostileTally
		try           func(i int) (bool, string)
	}{
		{name: "a header announcing a 4 GiB binary part", outcome: "ERROR/413, connection closed, nothing read or allocated",
			try: func(i int) (bool, string) {
				nc, err := dial()
				if err != nil {
					return false, err.Error()
				}
				defer nc.Close()
				nc.SetWriteDeadline(time.Now().Add(time.Minute))
				nc.Write(append(spec.Header(2, 1<<32-1), "{}"...))
				b, closed := waitClosed(nc, time.Minute)
				rs := responses(b)
				if !closed || len(rs) != 1 {
					return false, fmt.Sprintf("closed %v, %d responses", closed, len(rs))
				}
				st, _ := rs[0].Status()
				return st == spec.StatusTooLarge, rs[0].JSONString()
			}},
		{name: "4 KiB of random bytes, then a half-close", outcome: "each frame read answered, connection closed",
			try: func(i int) (bool, string) {
				nc, err := dial()
				if err != nil {
					return false, err.Error()
				}
				defer nc.Close()
				junk := make([]byte, 4096)
				rng := rand.New(rand.NewPCG(uint64(i), 7))
				for j := range junk {
					junk[j] = byte(rng.Uint32())
				}
				nc.SetWriteDeadline(time.Now().Add(time.Minute))
				nc.Write(junk)
				nc.(*net.TCPConn).CloseWrite()
				b, closed := waitClosed(nc, time.Minute)
				for _, r := range responses(b) {
					if r.Direction() != spec.DirResponse {
						return false, r.JSONString()
					}
				}
				return closed, "not closed"
			}},
		{name: "a LOGIN, then a half-close", outcome: "LOGIN answered 200, connection closed",
			try: func(i int) (bool, string) {
				nc, err := dial()
				if err != nil {
					return false, err.Error()
				}
				defer nc.Close()
				login, _ := spec.EncodeFrame(spec.NewRequest(spec.OpLogin, spec.TypeAuth).
					Set("username", "half").Set("password", refclient.CoursePassword("half")))
				nc.SetWriteDeadline(time.Now().Add(time.Minute))
				nc.Write(login)
				nc.(*net.TCPConn).CloseWrite()
				b, closed := waitClosed(nc, time.Minute)
				rs := responses(b)
				if !closed || len(rs) != 1 {
					return false, fmt.Sprintf("closed %v, %d responses", closed, len(rs))
				}
				st, _ := rs[0].Status()
				return st == spec.StatusOK, rs[0].JSONString()
			}},
		{name: "connect, send half a header, vanish (reset)", outcome: "connection released",
			try: func(i int) (bool, string) {
				nc, err := dial()
				if err != nil {
					return false, err.Error()
				}
				if i%2 == 1 {
					nc.Write(spec.Header(10, 0)[:4])
				}
				nc.(*net.TCPConn).SetLinger(0)
				return nc.Close() == nil, "close failed"
			}},
	}
	for k := range kinds {
		kind := &kinds[k]
		next := atomic.Int64{}
		for g := 0; g < soakHostileProcs; g++ {
			hostile.Add(1)
			go func() {
				defer hostile.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= soakEach {
						return
					}
					select {
					case <-stopHostile:
						return
					default:
					}
					ok, what := kind.try(i)
					kind.tally.done(ok, what)
				}
			}()
		}
	}

	// The well-behaved clients.
	var good sync.WaitGroup
	var goodErrs atomic.Int64
	var goodBytes atomic.Int64
	var errMu sync.Mutex
	var firstErrs []string
	for i := 0; i < soakClients; i++ {
		good.Add(1)
		go func() {
			defer good.Done()
			fail := func(err error) {
				goodErrs.Add(1)
				errMu.Lock()
				if len(firstErrs) < 5 {
					firstErrs = append(firstErrs, err.Error())
				}
				errMu.Unlock()
			}
			c, err := refclient.Dial(ctx, addr, &refclient.Options{ReplyTimeout: time.Minute})
			if err != nil {
				fail(err)
				return
			}
			defer c.Close()
			user := fmt.Sprintf("good%d", i)
			if _, err := c.Login(ctx, user, ""); err != nil {
				fail(err)
				return
			}
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			data := make([]byte, soakFileSize)
			for cycle := 0; cycle < soakCycles; cycle++ {
				for j := range data {
					data[j] = byte(rng.Uint32())
				}
				key := fmt.Sprintf("f%d", cycle)
				if _, err := c.Upload(ctx, key, bytes.NewReader(data), int64(len(data)), nil); err != nil {
					fail(fmt.Errorf("upload: %w", err))
					return
				}
				var got bytes.Buffer
				if _, err := c.Download(ctx, key, &got, nil); err != nil {
					fail(fmt.Errorf("download: %w", err))
					return
				}
				if !bytes.Equal(got.Bytes(), data) {
					fail(fmt.Errorf("download of %s differs from its upload", key))
					return
				}
				goodBytes.Add(int64(2 * len(data)))
				if err := c.DeleteFile(ctx, key); err != nil {
					fail(fmt.Errorf("delete: %w", err))
					return
				}
			}
		}()
	}
	good.Wait()
	hostile.Wait()
	close(stopHostile)
	if ctx.Err() != nil {
		t.Fatalf("the soak did not finish in %s", soakTimeLimit)
	}

	if n := goodErrs.Load(); n > 0 {
		t.Errorf("%d well-behaved clients failed: %v", n, firstErrs)
	}
	if want := int64(soakClients * soakCycles * 2 * soakFileSize); goodBytes.Load() != want {
		t.Errorf("well-behaved clients moved %d bytes, want %d", goodBytes.Load(), want)
	}
	check := func(name string, h *hostileTally, want int) {
		if h.tried.Load() != int64(want) || h.asExpected.Load() != int64(want) {
			t.Errorf("%s: %d of %d tried, %d ended as they must; first others: %v", name, h.tried.Load(), want,
				h.asExpected.Load(), h.unexpected)
		}
	}
	check("slowloris", &slow, soakSlowloris*soakRounds)
	check("stallers", &stall, soakStallers*soakRounds)
	for k := range kinds {
		check(kinds[k].name, &kinds[k].tally, soakEach)
	}

	// Nothing left behind: the counts return to what they were before the
	// load. The connections closed just now may still be ending.
	var g, fds int
	for i := 0; ; i++ {
		g, fds = serverGauges(t, metricsURL)
		if g <= baseG && fds <= baseFD {
			break
		}
		if i == 300 {
			t.Errorf("left behind: %d goroutines (%d before), %d open files (%d before)", g, baseG, fds, baseFD)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	peakConns := soakSlowloris + soakStallers + soakClients + kindsConns(len(kinds))
	rss, bound := vmHWM(t, srv.Process.Pid), rssBound(soakFrameMemory, peakConns)
	t.Logf("server peak RSS %d MiB, bound %d MiB (%.2f of it); goroutines %d→%d, files %d→%d",
		rss>>20, bound>>20, float64(rss)/float64(bound), baseG, g, baseFD, fds)
	if rss > bound {
		t.Errorf("server peak RSS %d bytes, over the bound %d", rss, bound)
	}

	srv.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Errorf("stepkit serve after SIGTERM: %v", err)
	}
	exited <- nil // for the deferred Kill

	if t.Failed() {
		return
	}
	lost := "nothing: every upload downloaded intact"
	rows := []reliability.Row{
		{Area: "server", Input: fmt.Sprintf("slowloris: a header announcing a 1 MiB frame, then a byte a second (%d at once)", soakSlowloris), Times: soakSlowloris * soakRounds,
			Outcome: "cut at the frame's deadline (--read-timeout), unanswered", Lost: lost},
		{Area: "server", Input: fmt.Sprintf("900 KiB of a 1 MiB frame at once, then nothing (%d at once: more than the frame memory budget)", soakStallers),
			Times: soakStallers * soakRounds, Outcome: "held within --max-frame-memory, cut at the frame's deadline", Lost: lost},
	}
	for k := range kinds {
		rows = append(rows, reliability.Row{Area: "server", Input: kinds[k].name, Times: soakEach, Outcome: kinds[k].outcome, Lost: lost})
	}
	rows = append(rows, reliability.Row{Area: "server",
		Input:   fmt.Sprintf("well-behaved clients beside all of the above: %d clients × %d uploads and downloads of %d KiB", soakClients, soakCycles, soakFileSize>>10),
		Times:   soakClients * soakCycles,
		Outcome: "no error; peak RSS under the stated bound; no goroutine or file descriptor left after", Lost: "nothing"})
	for _, r := range rows {
		reliability.Record(t, r)
	}
}

// kindsConns is how many connections the other hostile kinds may have open
// at once.
func kindsConns(kinds int) int { return kinds * soakHostileProcs }
