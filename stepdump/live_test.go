package stepdump_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refclient"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/stepdump"
)

// requireRoot skips a test that captures packets when not root, except
// under CI, which runs as root: there it fails.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("live capture needs root, and CI runs as root")
	}
	t.Skip("live capture needs root or CAP_NET_RAW")
}

// messageLine is what two captures of the same traffic must agree on:
// everything but packet numbers and times.
func messageLine(m *stepdump.Message) string {
	st, _ := m.Status()
	key := ""
	bi := int64(-1)
	if m.Msg != nil {
		key, _ = m.Msg.Key()
		if v, err := m.Msg.BlockIndex(); err == nil {
			bi = v
		}
	}
	req := 0
	if m.Request != nil {
		req = m.Request.Seq
	}
	return fmt.Sprintf("c%d %s #%d @%d %s %s %d key=%q block=%d json=%d binary=%d answers=%d err=%v",
		m.Conn.ID, map[bool]string{true: "->", false: "<-"}[m.FromClient], m.Seq, m.Offset,
		m.Operation(), m.Type(), st, key, bi, m.JSONLen, m.BinaryLen, req, m.Err)
}

type lineHandler struct {
	mu    sync.Mutex
	lines []string
	notes []string
}

func (h *lineHandler) Message(m *stepdump.Message) {
	h.mu.Lock()
	h.lines = append(h.lines, messageLine(m))
	h.mu.Unlock()
}
func (h *lineHandler) Note(n *stepdump.Note) {
	h.mu.Lock()
	h.notes = append(h.notes, n.Kind+": "+n.Text)
	h.mu.Unlock()
}
func (h *lineHandler) ConnEnd(*stepdump.Conn) {}

func (h *lineHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.lines)
}

func decodeLines(t *testing.T, path string, opts stepdump.Options) *lineHandler {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := &lineHandler{}
	if _, err := stepdump.Decode(context.Background(), f, opts, h); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return h
}

// startServer runs a reference server on an ephemeral loopback port.
func startServer(t *testing.T) string {
	t.Helper()
	srv, err := refserver.New(refserver.Config{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// upload sends a file of size bytes in blocks of 20480, window blocks in
// flight, and says goodbye.
func upload(t *testing.T, addr, user string, size, window int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := refclient.Dial(ctx, addr, &refclient.Options{Window: window, JournalDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Login(ctx, user, ""); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte(user), size/len(user)+1)[:size]
	if _, err := c.Upload(ctx, user+".bin", bytes.NewReader(data), int64(size), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Bye(); err != nil {
		t.Fatal(err)
	}
}

// startTcpdump captures port on lo into path and returns once tcpdump
// listens; the returned function stops it.
func startTcpdump(t *testing.T, port, path string) func() {
	t.Helper()
	tcpdump := requireTool(t, "tcpdump")
	// -B: the ring's slots are snaplen-sized, so the default 2 MiB holds a
	// handful of 64 KiB loopback packets, which a loaded machine overruns.
	cmd := exec.Command(tcpdump, "-i", "lo", "-U", "--immediate-mode", "-B", "65536", "-n", "-w", path, "tcp port "+port)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var all []string
		for sc.Scan() {
			all = append(all, sc.Text())
			if strings.Contains(sc.Text(), "listening on") {
				listening <- ""
			}
		}
		listening <- strings.Join(all, "\n")
	}()
	select {
	case out := <-listening:
		if out != "" {
			t.Fatalf("tcpdump did not start: %s", out)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("tcpdump did not start within 20s")
	}
	return func() {
		// tcpdump writes what it holds on SIGINT.
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Fatal("tcpdump did not stop")
		}
	}
}

// TestLiveCaptureMatchesTcpdump captures on lo while two clients upload,
// one block at a time and pipelined, with tcpdump capturing the same port
// at the same time: the messages decoded live, from the file the live
// capture saved, and from tcpdump's file are the same.
func TestLiveCaptureMatchesTcpdump(t *testing.T) {
	requireRoot(t)
	addr := startServer(t)
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	tdFile, saved := filepath.Join(dir, "tcpdump.pcapng"), filepath.Join(dir, "live.pcapng")
	stopTcpdump := startTcpdump(t, port, tdFile)

	save, err := os.Create(saved)
	if err != nil {
		t.Fatal(err)
	}
	var p int
	fmt.Sscan(port, &p)
	live := &lineHandler{}
	started := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		st  *stepdump.Stats
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := stepdump.DecodeLive(ctx, stepdump.LiveOptions{Interface: "lo", Port: p, OnlyPort: true, Save: save,
			Started: func() { close(started) }}, stepdump.Options{Port: p, OnlyPort: true}, live)
		done <- result{st, err}
	}()
	select {
	case <-started:
	case r := <-done:
		t.Fatalf("live capture did not start: %v", r.err)
	}

	upload(t, addr, "stopwait", 5*20480+100, 1)
	upload(t, addr, "pipelined", 12*20480, 8)
	// Messages are decoded as they arrive: all of them before the end.
	// Each client: LOGIN, SAVE and BYE exchanged, and its blocks.
	want := 2 * ((3 + 6) + (3 + 12))
	deadline := time.Now().Add(10 * time.Second)
	for live.count() < want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := live.count(); n != want {
		t.Fatalf("%d messages decoded while capturing, want %d", n, want)
	}
	cancel()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if err := save.Close(); err != nil {
		t.Fatal(err)
	}
	stopTcpdump()
	if r.st.Live == nil || r.st.Live.Captured == 0 || r.st.Live.Captured != r.st.Packets {
		t.Fatalf("live stats %+v for %d packets", r.st.Live, r.st.Packets)
	}
	if r.st.Live.Dropped != 0 {
		t.Errorf("the kernel dropped %d packets of a small transfer", r.st.Live.Dropped)
	}

	opts := stepdump.Options{Port: p, OnlyPort: true}
	td := decodeLines(t, tdFile, opts)
	fromSaved := decodeLines(t, saved, opts)
	for name, other := range map[string]*lineHandler{"tcpdump's capture": td, "the saved capture": fromSaved} {
		if got, want := strings.Join(live.lines, "\n"), strings.Join(other.lines, "\n"); got != want {
			t.Errorf("decoded live:\n%s\n\nfrom %s:\n%s\nits notes: %q", got, name, want, other.notes)
		}
	}
	for _, n := range live.notes {
		// A capture that starts before the connections sees all of
		// them whole, each packet once.
		t.Errorf("live note: %s", n)
	}
	t.Logf("%d messages, %d packets (tcpdump's file decodes to %d messages)", len(live.lines), r.st.Packets, len(td.lines))
}

// TestLiveCaptureNeedsPrivilege runs dump -i lo as nobody: it fails in one
// line that names the privilege and the setcap command.
func TestLiveCaptureNeedsPrivilege(t *testing.T) {
	requireRoot(t)
	setpriv := requireTool(t, "setpriv")
	// A directory nobody may enter: the test's own are private.
	dir, err := os.MkdirTemp("", "stepkit-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "stepkit")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/stepkit").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
		bin, "dump", "-i", "lo", "--duration", "1s")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit %v, want status 1; stderr %q", err, stderr.String())
	}
	msg := strings.TrimSuffix(stderr.String(), "\n")
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "CAP_NET_RAW") || !strings.Contains(msg, "setcap cap_net_raw+ep "+bin) {
		t.Fatalf("stderr %q: want one line naming CAP_NET_RAW and the setcap command", msg)
	}
	if stdout.Len() != 0 {
		t.Fatalf("stdout %q", stdout.String())
	}
}

// TestLiveCaptureEndsAtCountOrDuration: --count ends the capture after so
// many packets, --duration after so long, both as a file's end does.
func TestLiveCaptureEndsAtCountOrDuration(t *testing.T) {
	requireRoot(t)
	addr := startServer(t)
	_, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	opts := stepdump.Options{Port: p, OnlyPort: true}

	h := &lineHandler{}
	done := make(chan struct{})
	var st *stepdump.Stats
	var err error
	started := make(chan struct{})
	go func() {
		defer close(done)
		st, err = stepdump.DecodeLive(context.Background(), stepdump.LiveOptions{Interface: "lo", Port: p, OnlyPort: true, Count: 3,
			Started: func() { close(started) }}, opts, h)
	}()
	<-started
	// A connection's handshake alone is three packets.
	upload(t, addr, "counted", 100, 1)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("--count 3 did not end the capture")
	}
	if err != nil || st.Live.Captured != 3 || st.Packets != 3 {
		t.Fatalf("count: %v, %+v", err, st)
	}

	start := time.Now()
	st, err = stepdump.DecodeLive(context.Background(), stepdump.LiveOptions{Interface: "lo", Port: p, OnlyPort: true, Duration: 300 * time.Millisecond}, opts, &lineHandler{})
	if el := time.Since(start); err != nil || el < 300*time.Millisecond || el > 10*time.Second {
		t.Fatalf("duration 300ms: %v after %v", err, el)
	}
	if st.Live == nil || st.Live.Interface != "lo" {
		t.Fatalf("stats %+v", st)
	}
}
