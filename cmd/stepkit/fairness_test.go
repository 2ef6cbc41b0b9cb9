package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stepkit/stepkit/internal/reliability"
	"github.com/stepkit/stepkit/refclient"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// The fairness tests' load: fixed counts, so that what they try is the
// same on every run.
const (
	fairSlow        = 1100 // slow connections from one address: more than the default --max-conns
	fairGood        = 16   // well-behaved clients from another address beside them
	fairGoodCycles  = 4    // each a new connection: upload, download, delete
	fairFileSize    = 256 << 10
	fairNAT         = 300 // well-behaved clients from one address at once
	fairNATFileSize = 128 << 10
	fairTimeLimit   = 3 * time.Minute
	fairSlowAddr    = "127.0.0.2"
	fairGoodAddr    = "127.0.0.1"
	fairEvictedText = "another address"
	fairBusyText    = "connections open"
)

// defaultServe runs stepkit serve with its default flags (only where to
// listen, where to store and the log format are given) and returns the
// address to dial, the process and the path of its log.
func defaultServe(t *testing.T, bin string) (addr string, proc *exec.Cmd, logPath string) {
	t.Helper()
	dir := t.TempDir()
	logPath = filepath.Join(dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	proc = exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--root", filepath.Join(dir, "store"), "--log-format", "json")
	proc.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	proc.Stderr = logf
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- proc.Wait() }()
	t.Cleanup(func() {
		proc.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("stepkit serve after SIGTERM: %v", err)
			}
		case <-time.After(20 * time.Second):
			proc.Process.Kill()
			<-exited
			t.Error("stepkit serve did not stop in 20s after SIGTERM")
		}
	})
	for i := 0; addr == ""; i++ {
		if i == 1000 {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("stepkit serve did not report its address:\n%s", b)
		}
		time.Sleep(10 * time.Millisecond)
		b, _ := os.ReadFile(logPath)
		for _, l := range strings.Split(string(b), "\n") {
			var line struct{ Msg, Addr string }
			if json.Unmarshal([]byte(l), &line) == nil && line.Msg == "serving" {
				addr = line.Addr
			}
		}
	}
	return addr, proc, logPath
}

// logCount counts the server's log lines with message msg.
func logCount(t *testing.T, path, msg string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		var line struct{ Msg string }
		if json.Unmarshal([]byte(l), &line) == nil && line.Msg == msg {
			n++
		}
	}
	return n
}

// peakConns is the most connections the server's log shows open at once.
func peakConns(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	open, peak := 0, 0
	for _, l := range strings.Split(string(b), "\n") {
		var line struct{ Msg string }
		if json.Unmarshal([]byte(l), &line) != nil {
			continue
		}
		switch line.Msg {
		case "connection opened":
			open++
			peak = max(peak, open)
		case "connection closed":
			open--
		}
	}
	return peak
}

// raiseFileLimit makes room for n open files in this process.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	lim.Cur = n
	lim.Max = max(lim.Max, n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raise the open file limit to %d: %v", n, err)
	}
}

// wellBehaved uploads data under key through a new connection from the
// default address, downloads it, compares and deletes it.
func wellBehaved(ctx context.Context, addr, user, key string, data []byte) error {
	// Generous timeouts: a loaded machine may be slow, never wrong.
	c, err := refclient.Dial(ctx, addr, &refclient.Options{DialTimeout: time.Minute, ReplyTimeout: time.Minute})
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Login(ctx, user, ""); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if _, err := c.Upload(ctx, key, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	var got bytes.Buffer
	if _, err := c.Download(ctx, key, &got, nil); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		return fmt.Errorf("download of %s differs from its upload", key)
	}
	if err := c.DeleteFile(ctx, key); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

// errList keeps the first few errors of many goroutines and counts all.
type errList struct {
	n     atomic.Int64
	mu    sync.Mutex
	first []string
}

func (e *errList) add(err error) {
	e.n.Add(1)
	e.mu.Lock()
	if len(e.first) < 5 {
		e.first = append(e.first, err.Error())
	}
	e.mu.Unlock()
}

// TestFairShareDefaultFlags runs stepkit serve, built without the race
// detector, with its default flags, under the two loads its fair sharing
// of the connection limit must serve (STEP.md Appendix B): one address
// holding more slow connections than the limit beside well-behaved
// clients of another address, and a class of well-behaved clients behind
// one address all uploading at once. Neither may see an error.
func TestFairShareDefaultFlags(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("dials from 127.0.0.2 and reads the server's memory from /proc")
	}
	raiseFileLimit(t, 2*fairSlow+4*fairNAT+1024)
	bin := buildStepkit(t, t.TempDir())

	t.Run("SlowAddressBesideClients", func(t *testing.T) { fairSlowAddress(t, bin) })
	t.Run("OneAddressClass", func(t *testing.T) { fairOneAddress(t, bin) })
}

// slowTally counts how the slow connections ended.
type slowTally struct {
	dialed, refused, evicted, open, cut atomic.Int64
	unexpected                          errList
}

// fairSlowAddress: fairSlow connections from one address, each announcing
// a 1 MiB frame and sending a byte of it every half second, fill the
// server's places; well-behaved clients of another address upload and
// download beside them without an error.
func fairSlowAddress(t *testing.T, bin string) {
	addr, proc, logPath := defaultServe(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), fairTimeLimit)
	defer cancel()

	stop := make(chan struct{})
	var slow slowTally
	var attackers sync.WaitGroup
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(fairSlowAddr)}}
	slowConn := func() {
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			slow.unexpected.add(fmt.Errorf("dial: %w", err))
			return
		}
		defer nc.Close()
		slow.dialed.Add(1)
		start := time.Now()
		nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		nc.Write(spec.Header(64, 1<<20))
		var got []byte
		for {
			b, closed := waitClosed(nc, 500*time.Millisecond)
			got = append(got, b...)
			if closed {
				break
			}
			select {
			case <-stop:
				slow.open.Add(1)
				return
			default:
			}
			if len(got) == 0 {
				nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
				nc.Write([]byte{' '})
			}
		}
		rs := responses(got)
		switch {
		case len(got) == 0 && time.Since(start) > refserver.DefaultReadTimeout:
			slow.cut.Add(1) // its frame's deadline
		case len(rs) != 1:
			slow.unexpected.add(fmt.Errorf("closed after %d bytes, %d responses", len(got), len(rs)))
		default:
			st, _ := rs[0].Status()
			msg, _ := rs[0].String(spec.FieldStatusMsg)
			switch {
			case st == spec.StatusServiceBusy && strings.Contains(msg, fairEvictedText):
				slow.evicted.Add(1)
			case st == spec.StatusServiceBusy && strings.Contains(msg, fairBusyText):
				slow.refused.Add(1)
			default:
				slow.unexpected.add(fmt.Errorf("answered %s", rs[0].JSONString()))
			}
		}
	}
	for range fairSlow {
		attackers.Add(1)
		go func() {
			defer attackers.Done()
			for {
				slowConn()
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	stopSlow := sync.OnceFunc(func() {
		close(stop)
		attackers.Wait()
	})
	defer stopSlow()

	// The server is full once the slow address is refused; its frames
	// are judged slow once a second old.
	for slow.refused.Load() == 0 {
		if ctx.Err() != nil {
			t.Fatalf("the slow connections never filled the server: %d dialled, first errors %v", slow.dialed.Load(), slow.unexpected.first)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond)
	refusedBefore := slow.refused.Load()

	var good sync.WaitGroup
	var goodErrs errList
	var moved atomic.Int64
	for i := range fairGood {
		good.Add(1)
		go func() {
			defer good.Done()
			rng := rand.NewChaCha8([32]byte{byte(i), 2})
			data := make([]byte, fairFileSize)
			for cycle := range fairGoodCycles {
				rng.Read(data)
				if err := wellBehaved(ctx, addr, fmt.Sprintf("good%d", i), fmt.Sprintf("f%d", cycle), data); err != nil {
					goodErrs.add(err)
					return
				}
				moved.Add(2 * fairFileSize)
			}
		}()
	}
	good.Wait()
	// Still full: the slow address was refused while the clients worked.
	refusedDuring := slow.refused.Load() - refusedBefore
	rss := vmHWM(t, proc.Process.Pid)
	stopSlow()
	if ctx.Err() != nil {
		t.Fatalf("the test did not finish in %s", fairTimeLimit)
	}

	if n := goodErrs.n.Load(); n > 0 {
		t.Errorf("%d well-behaved clients from %s failed beside %d slow connections from %s: %v",
			n, fairGoodAddr, fairSlow, fairSlowAddr, goodErrs.first)
	}
	if want := int64(fairGood * fairGoodCycles * 2 * fairFileSize); moved.Load() != want {
		t.Errorf("well-behaved clients moved %d bytes, want %d", moved.Load(), want)
	}
	if n := slow.unexpected.n.Load(); n > 0 {
		t.Errorf("%d slow connections ended otherwise than refused, closed for another address or cut at their deadline: %v",
			n, slow.unexpected.first)
	}
	evictedLog := logCount(t, logPath, "connection closed to make room for another address")
	if slow.evicted.Load() == 0 || evictedLog == 0 || refusedDuring == 0 {
		t.Errorf("the server was not at its limit: %d slow connections closed for another address (%d logged), %d refused while the clients worked",
			slow.evicted.Load(), evictedLog, refusedDuring)
	}
	bound := rssBound(refserver.DefaultMaxFrameMemory, refserver.DefaultMaxConns+fairGood)
	t.Logf("server peak RSS %d MiB, bound %d MiB (%.2f of it); slow connections: %d dialled, %d refused, %d closed for another address (%d logged), %d cut at their deadline, %d open at the end",
		rss>>20, bound>>20, float64(rss)/float64(bound), slow.dialed.Load(), slow.refused.Load(), slow.evicted.Load(), evictedLog,
		slow.cut.Load(), slow.open.Load())
	if rss > bound {
		t.Errorf("server peak RSS %d bytes, over the bound %d", rss, bound)
	}
	if t.Failed() {
		return
	}
	reliability.Record(t, reliability.Row{Area: "server", Times: fairGood * fairGoodCycles,
		Input: fmt.Sprintf("%d connections from one address, each a header announcing a 1 MiB frame then a byte every half second, against the default --max-conns %d; beside them %d clients of another address, each connection an upload, download and delete of %d KiB",
			fairSlow, refserver.DefaultMaxConns, fairGood, fairFileSize>>10),
		Outcome: "every client served without an error: at the full server a new connection of theirs takes the place of a slow one, which is answered ERROR/503 and closed; the slow address is refused 503 beyond its share",
		Lost:    "nothing: every upload downloaded intact"})
}

// fairOneAddress: fairNAT well-behaved clients behind one address, as a
// class behind a NAT, upload at once and download what they uploaded,
// without an error and without a connection closed to make room.
func fairOneAddress(t *testing.T, bin string) {
	addr, proc, logPath := defaultServe(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), fairTimeLimit)
	defer cancel()
	var wg sync.WaitGroup
	var errs errList
	// Every file is made first, so that the clients start together and
	// nothing but the transfers takes the machine's time.
	files := make([][]byte, fairNAT)
	for i := range files {
		files[i] = make([]byte, fairNATFileSize)
		rand.NewChaCha8([32]byte{byte(i), byte(i >> 8), 3}).Read(files[i])
	}
	start := make(chan struct{})
	for i := range fairNAT {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := wellBehaved(ctx, addr, fmt.Sprintf("student%d", i), "lab", files[i]); err != nil {
				errs.add(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	rss := vmHWM(t, proc.Process.Pid)
	if ctx.Err() != nil {
		t.Fatalf("the test did not finish in %s", fairTimeLimit)
	}
	if n := errs.n.Load(); n > 0 {
		t.Errorf("%d of %d clients from one address failed: %v", n, fairNAT, errs.first)
	}
	if n := logCount(t, logPath, "connection closed to make room for another address"); n > 0 {
		t.Errorf("%d connections closed to make room below the connection limit", n)
	}
	if n := logCount(t, logPath, "connection refused"); n > 0 {
		t.Errorf("%d connections refused below the connection limit", n)
	}
	bound := rssBound(refserver.DefaultMaxFrameMemory, fairNAT)
	t.Logf("server peak RSS %d MiB, bound %d MiB (%.2f of it); %d connections open at once at the most",
		rss>>20, bound>>20, float64(rss)/float64(bound), peakConns(t, logPath))
	if rss > bound {
		t.Errorf("server peak RSS %d bytes, over the bound %d", rss, bound)
	}
	if t.Failed() {
		return
	}
	reliability.Record(t, reliability.Row{Area: "server", Times: fairNAT,
		Input:   fmt.Sprintf("%d clients behind one address (a class behind a NAT) uploading %d KiB each at once, with the default flags", fairNAT, fairNATFileSize>>10),
		Outcome: "every upload and download served; no connection refused or closed to make room",
		Lost:    "nothing: every upload downloaded intact"})
}
