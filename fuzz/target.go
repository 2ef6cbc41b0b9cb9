package fuzz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stepkit/stepkit/sandbox"
	"github.com/stepkit/stepkit/spec"
)

// Target is the server under test.
type Target interface {
	// Dial opens a connection to the server.
	Dial(ctx context.Context) (net.Conn, error)
	// Addr is the address the server listens on, as the reports name it.
	Addr() string
	// Managed reports whether stepkit started the server, so that it can
	// restart it, see it die and read its memory.
	Managed() bool
	// Restart stops the server and starts a fresh process with fresh
	// storage (managed targets only).
	Restart(ctx context.Context) error
	// Exited says whether the process has ended, and how.
	Exited() (bool, string)
	// RSS is the resident memory of the server's processes in bytes (0:
	// unknown).
	RSS() int64
	// Output is the end of what the server printed (managed targets).
	Output() string
	Close() error
}

// CheckLoopback refuses an address that is not on this machine's
// loopback: a fuzzer sends what may break a server, so it only ever talks
// to one on 127.0.0.1 or ::1 (or in the sandbox's own namespace).
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port", addr)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil {
		ips, err := net.LookupIP(host)
		if err != nil || len(ips) == 0 {
			return fmt.Errorf("%s: cannot resolve %q", addr, host)
		}
		ip = ips[0]
		for _, x := range ips {
			if !x.IsLoopback() {
				ip = x
			}
		}
	}
	if !ip.IsLoopback() {
		return fmt.Errorf("%s is not a loopback address: stepkit fuzz only sends its inputs to a server on this machine (127.0.0.1, ::1) or one it starts itself with --run", addr)
	}
	return nil
}

// Remote is a server stepkit did not start, on a loopback address.
type Remote struct{ addr string }

// NewRemote returns the target at addr, which must be a loopback address.
func NewRemote(addr string) (*Remote, error) {
	if err := CheckLoopback(addr); err != nil {
		return nil, err
	}
	return &Remote{addr: addr}, nil
}

func (r *Remote) Dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", r.addr)
}
func (r *Remote) Addr() string  { return r.addr }
func (r *Remote) Managed() bool { return false }
func (r *Remote) Restart(context.Context) error {
	return errors.New("the server was not started by stepkit")
}
func (r *Remote) Exited() (bool, string) { return false, "" }
func (r *Remote) RSS() int64             { return 0 }
func (r *Remote) Output() string         { return "" }
func (r *Remote) Close() error           { return nil }

// DefaultStartTimeout bounds the wait for a started server to listen.
const DefaultStartTimeout = 10 * time.Second

// ProcessConfig says how to start a server in the sandbox.
type ProcessConfig struct {
	Command      string        // a shell command line, run in Dir's copy
	Dir          string        // the server's folder, copied afresh at every start
	StartTimeout time.Duration // 0: DefaultStartTimeout
	Memory       int64         // the sandbox's memory bound; 0: its default
	// CPU bounds the CPU time of each start of the server; 0: the
	// sandbox's default. A run longer than that needs more.
	CPU time.Duration
}

// Process is a server stepkit starts in a sandbox of its own, listening
// on 127.0.0.1:1379 in the sandbox's network namespace. Every start is a
// fresh sandbox: a fresh copy of the folder, so fresh storage.
type Process struct {
	cfg ProcessConfig

	mu     sync.Mutex
	box    *sandbox.Sandbox
	cmd    *sandbox.Cmd
	out    *tail
	exited chan struct{}
	err    error
}

// StartProcess starts the server and waits until it accepts connections.
func StartProcess(ctx context.Context, cfg ProcessConfig) (*Process, error) {
	if strings.TrimSpace(cfg.Command) == "" {
		return nil, errors.New("no command to run")
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if ok, why := sandbox.Available(); !ok {
		return nil, fmt.Errorf("the sandbox is not available (%s): run the server yourself on 127.0.0.1 and use --target", why)
	}
	p := &Process{cfg: cfg}
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

var listenAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(spec.DefaultPort))

func (p *Process) start(ctx context.Context) error {
	box, err := sandbox.New(ctx, sandbox.Config{Dir: p.cfg.Dir, Memory: p.cfg.Memory, CPU: p.cfg.CPU})
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	out := &tail{max: 64 << 10}
	cmd := box.Command(context.Background(), []string{"/bin/sh", "-c", p.cfg.Command})
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		box.Close()
		return fmt.Errorf("start %q: %w", p.cfg.Command, err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.box, p.cmd, p.out, p.exited, p.err = box, cmd, out, exited, nil
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(exited)
	}()
	deadline := time.Now().Add(p.cfg.StartTimeout)
	for {
		dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		c, err := box.DialContext(dctx, "tcp", listenAddr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%q exited before it listened on %s: %s; it printed: %s", p.cfg.Command, listenAddr, p.describe(), lastLines(out.String(), 5))
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			return fmt.Errorf("%q did not listen on %s within %v", p.cfg.Command, listenAddr, p.cfg.StartTimeout)
		}
		select {
		case <-ctx.Done():
			p.stop()
			return ctx.Err()
		case <-exited:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *Process) describe() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.box.Describe(p.err, p.cmd.ProcessState)
}

// stop ends the process and its sandbox. Nothing is asked of the server
// on its way out: the next start is a fresh copy anyway, and closing the
// sandbox kills every process in it at once.
func (p *Process) stop() {
	p.mu.Lock()
	cmd, box, exited := p.cmd, p.box, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = box.Close()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func (p *Process) Dial(ctx context.Context) (net.Conn, error) {
	p.mu.Lock()
	box := p.box
	p.mu.Unlock()
	return box.DialContext(ctx, "tcp", listenAddr)
}

func (p *Process) Addr() string  { return listenAddr + " (in the sandbox)" }
func (p *Process) Managed() bool { return true }

func (p *Process) Restart(ctx context.Context) error {
	p.stop()
	return p.start(ctx)
}

func (p *Process) Exited() (bool, string) {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	select {
	case <-exited:
		return true, p.describe()
	default:
		return false, ""
	}
}

func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// RSS sums the resident memory of the started command and its
// descendants, read from /proc.
func (p *Process) RSS() int64 {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	return treeRSS(cmd.Process.Pid)
}

func (p *Process) Close() error {
	p.stop()
	return nil
}

// treeRSS is the resident memory of pid and its descendants.
func treeRSS(root int) int64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	parent := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		parent[pid] = ppid
	}
	var total int64
	for pid := range parent {
		for q, n := pid, 0; q > 0 && n < 64; q, n = parent[q], n+1 {
			if q == root {
				total += rss(pid)
				break
			}
		}
	}
	return total
}

func rss(pid int) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := strings.Join(lines, " | ")
	if out == "" {
		return "nothing"
	}
	return out
}
