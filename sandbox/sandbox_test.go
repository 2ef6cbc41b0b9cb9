package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// progDir holds the test program, built once by TestMain.
var progDir string

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == probeArg {
		// The test binary is the probe of Check.
		if err := Probe(context.Background(), os.Stdout, !slices.Contains(os.Args, "--host")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if dir := os.Getenv("SANDBOX_TEST_GRADER"); dir != "" {
		graderThatDies(dir)
		return
	}
	dir, err := os.MkdirTemp("", "sandbox-prog-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "prog"), "./testdata/prog")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build test program: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	// The scratch copy is made from a folder the tests never write to.
	os.Chmod(dir, 0o755)
	progDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needIsolation skips the test when namespaces cannot be made here,
// except in CI, where that is a failure.
func needIsolation(t *testing.T) {
	t.Helper()
	if ok, why := Available(); !ok {
		if os.Getenv("CI") == "true" {
			t.Fatalf("isolation unavailable in CI: %s", why)
		}
		t.Skip(why)
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newSandbox(t *testing.T, cfg Config) *Sandbox {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = progDir
	}
	s, err := New(testContext(t), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// running is a started command whose output the test reads line by line.
type running struct {
	cmd    *Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *bytes.Buffer
}

func start(t *testing.T, cmd *Cmd) *running {
	t.Helper()
	r := &running{cmd: cmd, stderr: &bytes.Buffer{}}
	var err error
	if r.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.stdout = bufio.NewReader(out)
	cmd.Stderr = r.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("Start %v: %v", cmd.Args, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return r
}

// accept accepts one connection, failing rather than hanging when none comes.
func accept(ln net.Listener) (net.Conn, error) {
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(time.Minute))
	return ln.Accept()
}

// line reads the program's next line of output.
func (r *running) line(t *testing.T) string {
	t.Helper()
	s, err := r.stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("read output of %s: %v (stderr: %s)", r.cmd.Args[len(r.cmd.Args)-1], err, r.stderr)
	}
	return strings.TrimSuffix(s, "\n")
}

// wait closes stdin, reads the rest of stdout and waits for the end.
func (r *running) wait() (string, error) {
	r.stdin.Close()
	rest, _ := io.ReadAll(r.stdout)
	err := r.cmd.Wait()
	return string(rest), err
}

func TestTwoSandboxesBindTheSamePort(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	var boxes []*Sandbox
	var progs []*running
	for range 2 {
		s := newSandbox(t, Config{})
		p := start(t, s.Command(ctx, []string{"./prog", "bind", "127.0.0.1:1379"}))
		if got := p.line(t); got != "listening" {
			t.Fatalf("program says %q, want listening", got)
		}
		boxes = append(boxes, s)
		progs = append(progs, p)
	}
	// Both are listening at once, each in its own namespace.
	for i, s := range boxes {
		c, err := s.DialContext(ctx, "tcp", "127.0.0.1:1379")
		if err != nil {
			t.Fatalf("sandbox %d: %v", i, err)
		}
		c.Close()
	}
	for i, p := range progs {
		if out, err := p.wait(); err != nil {
			t.Errorf("program %d: %v, output %q, stderr %s", i, err, out, p.stderr)
		}
	}
}

func TestJudgeListensProgramDials(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	s := newSandbox(t, Config{})
	ln, err := s.Listen(ctx, "tcp", "127.0.0.1:1379")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := start(t, s.Command(ctx, []string{"./prog", "dial", "127.0.0.1:1379", "hello"}))
	conn, err := accept(ln)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if line != "hello\n" {
		t.Fatalf("judge got %q, want hello", line)
	}
	fmt.Fprintf(conn, "judge:%s", line)
	out, err := p.wait()
	if err != nil {
		t.Fatalf("program: %v (stderr %s)", err, p.stderr)
	}
	if out != "judge:hello\n" {
		t.Fatalf("program got %q, want judge:hello", out)
	}
}

func TestDialReachesProgramInside(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	s := newSandbox(t, Config{})
	p := start(t, s.Command(ctx, []string{"./prog", "echo-server", "127.0.0.1:1379"}))
	if got := p.line(t); got != "listening" {
		t.Fatalf("program says %q", got)
	}
	c, err := s.DialContext(ctx, "tcp", "127.0.0.1:1379")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	msg := []byte("STEP frame bytes\x00\x01\x02")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	back, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, msg) {
		t.Fatalf("echo %q, want %q", back, msg)
	}
}

func TestProgramCannotReachHost(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	s := newSandbox(t, Config{})
	p := start(t, s.Command(ctx, []string{"./prog", "dial", host.Addr().String(), "escape"}))
	out, err := p.wait()
	if err == nil {
		t.Fatalf("program reached the host's listener %s: %q", host.Addr(), out)
	}
	if !strings.Contains(p.stderr.String(), "connection refused") {
		t.Errorf("program's error is %q, want connection refused", p.stderr)
	}
	// Nor does trusted code dialling inside the sandbox reach it.
	if c, err := s.DialContext(ctx, "tcp", host.Addr().String()); err == nil {
		c.Close()
		t.Fatalf("DialContext inside the sandbox reached the host's %s", host.Addr())
	}
	// The host listener saw no connection: the first it accepts is ours.
	go func() {
		if c, err := net.Dial("tcp", host.Addr().String()); err == nil {
			c.Write([]byte("host"))
			c.Close()
		}
	}()
	c, err := accept(host)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	first, _ := io.ReadAll(c)
	c.Close()
	if string(first) != "host" {
		t.Fatalf("host listener's first connection sent %q, want the host's own", first)
	}
}

// TestProgramRunsUnprivileged checks both ways of dropping privileges
// (bwrap started as the unprivileged uid in a user namespace, or bwrap
// as root and setpriv): the program's real, effective and saved uids and
// gids are 65534 as the host sees them, it has no capabilities, no
// supplementary groups and no_new_privs, and the grader's own threads
// keep their credentials.
func TestProgramRunsUnprivileged(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	for _, c := range []struct {
		name string
		cfg  Config
	}{{"user namespace", Config{}}, {"setpriv", Config{noUserns: true}}} {
		t.Run(c.name, func(t *testing.T) {
			s := newSandbox(t, c.cfg)
			if !c.cfg.noUserns && s.cgroups != nil && !s.userns {
				if os.Getenv("CI") == "true" {
					t.Fatal("an unprivileged bwrap cannot make a user namespace in CI")
				}
				t.Log("an unprivileged bwrap cannot make a user namespace here: setpriv drops privileges")
			}
			out, err := s.Command(ctx, []string{"./prog", "id"}).Output()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(out)); got != "65534 65534" {
				t.Fatalf("uid gid %q, want 65534 65534", got)
			}
			// As the host sees it: the program's /proc/PID/status from here.
			cmd := s.Command(ctx, []string{"sleep", "30"})
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			status := hostStatusOf(t, "sleep", s.WorkDir())
			for _, f := range []string{"Uid", "Gid"} {
				if got := strings.Join(strings.Fields(status[f]), " "); got != "65534 65534 65534 65534" {
					t.Errorf("%s (real, effective, saved, fs) on the host: %q, want 65534 for each", f, got)
				}
			}
			for _, f := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
				if got := strings.TrimSpace(status[f]); strings.Trim(got, "0") != "" {
					t.Errorf("%s: %s, want none", f, got)
				}
			}
			if got := strings.TrimSpace(status["Groups"]); got != "" && got != "65534" {
				t.Errorf("supplementary groups %q", got)
			}
			if got := strings.TrimSpace(status["NoNewPrivs"]); got != "1" {
				t.Errorf("NoNewPrivs %q, want 1", got)
			}
			// The threads that set the child's limits are back to root.
			tasks, _ := filepath.Glob("/proc/self/task/*/status")
			for _, task := range tasks {
				b, err := os.ReadFile(task)
				if err != nil {
					continue // the thread ended meanwhile
				}
				for _, line := range strings.Split(string(b), "\n") {
					if f, ok := strings.CutPrefix(line, "Uid:"); ok && strings.Join(strings.Fields(f), " ") != "0 0 0 0" {
						t.Errorf("a grader thread (%s) kept uids %q", task, f)
					}
					if f, ok := strings.CutPrefix(line, "Gid:"); ok && strings.Join(strings.Fields(f), " ") != "0 0 0 0" {
						t.Errorf("a grader thread (%s) kept gids %q", task, f)
					}
				}
			}
		})
	}
}

// hostStatusOf finds the process named comm whose working folder is dir
// and returns its /proc/PID/status fields, read from the host.
func hostStatusOf(t *testing.T, comm, dir string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		procs, _ := filepath.Glob("/proc/[0-9]*")
		for _, p := range procs {
			if c, _ := os.ReadFile(p + "/comm"); strings.TrimSpace(string(c)) != comm {
				continue
			}
			if cwd, _ := os.Readlink(p + "/cwd"); cwd != dir {
				continue
			}
			b, err := os.ReadFile(p + "/status")
			if err != nil {
				continue
			}
			fields := map[string]string{}
			for _, line := range strings.Split(string(b), "\n") {
				if k, v, ok := strings.Cut(line, ":"); ok {
					fields[k] = v
				}
			}
			return fields
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no process %s in %s", comm, dir)
	return nil
}

func TestProgramWritesOnlyWorkDirAndTmp(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "server.py"), []byte("print('hi')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	prog, err := os.ReadFile(filepath.Join(progDir, "prog"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "prog"), prog, 0o755); err != nil {
		t.Fatal(err)
	}
	s := newSandbox(t, Config{Dir: dir})
	hostTmp := filepath.Join(os.TempDir(), fmt.Sprintf("sandbox-escape-%d", time.Now().UnixNano()))
	targets := map[string]string{
		filepath.Join(s.WorkDir(), "upload.bin"): "written",
		"/tmp/scratch":                           "written",
		hostTmp:                                  "written", // the private /tmp, not the host's
		filepath.Join(dir, "server.py"):          "denied",
		filepath.Join(dir, "new.txt"):            "denied",
		"/var/tmp/sandbox-escape":                "denied",
		"/etc/sandbox-escape":                    "denied",
		"/dev/shm/sandbox-escape":                "written", // a private tmpfs
	}
	argv := []string{"./prog", "write"}
	for p := range targets {
		argv = append(argv, p)
	}
	out, err := s.Command(ctx, argv).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		p, got, _ := strings.Cut(line, ": ")
		if want := targets[p]; got != want {
			t.Errorf("%s: %s, want %s", p, got, want)
		}
	}
	if _, err := os.Stat(hostTmp); err == nil {
		os.Remove(hostTmp)
		t.Errorf("the program wrote the host's %s", hostTmp)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "server.py")); err != nil || string(data) != "print('hi')\n" {
		t.Errorf("original folder changed: %q, %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "new.txt")); err == nil {
		t.Errorf("the program wrote into the original folder")
	}
	if data, err := os.ReadFile(filepath.Join(s.WorkDir(), "upload.bin")); err != nil || string(data) != "x" {
		t.Errorf("WorkDir/upload.bin: %q, %v", data, err)
	}
}

func TestPythonServerBindsInside(t *testing.T) {
	needIsolation(t)
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 missing in CI")
		}
		t.Skip("no /usr/bin/python3")
	}
	ctx := testContext(t)
	dir := t.TempDir()
	server := `import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 1379))
s.listen()
print("listening", flush=True)
c, _ = s.accept()
c.sendall(c.recv(100).upper())
c.close()
`
	if err := os.WriteFile(filepath.Join(dir, "server.py"), []byte(server), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSandbox(t, Config{Dir: dir})
	p := start(t, s.Command(ctx, []string{"python3", "server.py"}))
	if got := p.line(t); got != "listening" {
		t.Fatalf("server says %q", got)
	}
	c, err := s.DialContext(ctx, "tcp", "127.0.0.1:1379")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	c.Write([]byte("step"))
	back, err := io.ReadAll(c)
	if err != nil || string(back) != "STEP" {
		t.Fatalf("python server answered %q, %v", back, err)
	}
	if _, err := p.wait(); err != nil {
		t.Fatalf("python server: %v (stderr %s)", err, p.stderr)
	}
}

func TestTrustedJoinsNetworkOnly(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	s := newSandbox(t, Config{})
	ln, err := s.Listen(ctx, "tcp", "127.0.0.1:1379")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A trusted program runs from the host's file system, as root.
	cmd := s.Trusted(ctx, []string{filepath.Join(progDir, "prog"), "dial", "127.0.0.1:1379", "trusted"})
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	conn, err := accept(ln)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(time.Minute))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	fmt.Fprint(conn, line)
	conn.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if out.String() != "trusted\n" {
		t.Fatalf("trusted program got %q", out.String())
	}
}

func TestManySandboxesAtOnce(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	const n = 4
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- func() error {
				s, err := New(ctx, Config{Dir: progDir})
				if err != nil {
					return err
				}
				defer s.Close()
				cmd := s.Command(ctx, []string{"./prog", "echo-server", "127.0.0.1:1379"})
				out, err := cmd.StdoutPipe()
				if err != nil {
					return err
				}
				if err := cmd.Start(); err != nil {
					return err
				}
				defer cmd.Wait()
				if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "listening\n" {
					return fmt.Errorf("sandbox %d: program says %q, %v", i, line, err)
				}
				c, err := s.DialContext(ctx, "tcp", "127.0.0.1:1379")
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				msg := fmt.Sprintf("sandbox %d", i)
				io.WriteString(c, msg)
				c.(*net.TCPConn).CloseWrite()
				back, err := io.ReadAll(c)
				if err != nil || string(back) != msg {
					return fmt.Errorf("sandbox %d: echo %q, %v", i, back, err)
				}
				return nil
			}()
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// graderThatDies is a grader that makes a sandbox, starts a program that
// forks a daemon, says where everything is and waits to be killed.
func graderThatDies(progDir string) {
	ctx := context.Background()
	s, err := New(ctx, Config{Dir: progDir})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	// The program outlives its stdin: only the sandbox's end stops it.
	cmd := s.Command(ctx, []string{"./prog", "fork-and-sleep", os.Getenv("SANDBOX_TEST_MARKER")})
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	fmt.Print(line)
	fmt.Println(s.WorkDir())
	if s.cgroups != nil {
		fmt.Println(s.cgroups.mem, s.cgroups.pids, s.cgroups.cpu)
	} else {
		fmt.Println()
	}
	time.Sleep(time.Hour) // until killed (select{} would be a deadlock)
	out.Close()
}

func TestGraderDeathEndsItsSandboxes(t *testing.T) {
	needIsolation(t)
	marker := fmt.Sprintf("daemon-marker-%d", time.Now().UnixNano())
	grader := exec.Command(os.Args[0], "-test.run=^$")
	grader.Env = append(os.Environ(), "SANDBOX_TEST_GRADER="+progDir, "SANDBOX_TEST_MARKER="+marker)
	out, err := grader.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := grader.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { grader.Process.Kill(); grader.Wait() }) // on failure
	r := bufio.NewReader(out)
	var lines []string
	for range 3 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("grader: %q, %v", lines, err)
		}
		lines = append(lines, strings.TrimSuffix(line, "\n"))
	}
	// A crashed grader cannot remove its scratch folder and cgroups.
	t.Cleanup(func() {
		os.RemoveAll(lines[1])
		for _, g := range strings.Fields(lines[2]) {
			entries, _ := os.ReadDir(g)
			for _, e := range entries {
				if e.IsDir() {
					removeGroup(filepath.Join(g, e.Name()))
				}
			}
			if err := removeGroup(g); err != nil {
				t.Error(err)
			}
		}
	})
	if lines[0] != "forked" {
		t.Fatalf("grader: %q", lines)
	}
	if len(processesWith(t, marker)) < 2 {
		t.Fatalf("before: %q", processesWith(t, marker))
	}
	grader.Process.Kill()
	grader.Wait()
	var left []string
	for range 300 {
		if left = processesWith(t, marker); len(left) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Fatalf("processes 30s after the grader died: %q", left)
	}
	// The next sandbox made on the machine removes what the dead grader
	// left behind; a group whose killed tasks are still leaving it (on a
	// loaded machine) is removed by one of the sandboxes after.
	leftovers := append([]string{lines[1]}, strings.Fields(lines[2])...)
	var still []string
	for range 20 {
		s, err := New(context.Background(), Config{})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		still = still[:0]
		for _, p := range leftovers {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				still = append(still, p)
			}
		}
		if len(still) == 0 {
			return
		}
	}
	t.Fatalf("left by the dead grader, still there after 20 sandboxes: %q", still)
}

// Leftovers are taken only from sandboxes whose maker is gone: not from
// a live one, not from one whose pid was taken again by another process,
// and never by a name without an owner.
func TestOrphaned(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{stalePrefix + ownerTag() + "-123", false},
		{fmt.Sprintf("%s%d-1-123", stalePrefix, os.Getpid()), true}, // another start time
		{stalePrefix + "999999999-5-1", true},                       // no such process
		{stalePrefix + "123456", false},
		{stalePrefix + "x-1-2", false},
		{"other-1-2-3", false},
	} {
		if got := orphaned(tc.name); got != tc.want {
			t.Errorf("orphaned(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestProgramCannotReachAnotherSandbox(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	other := newSandbox(t, Config{})
	ln, err := other.Listen(ctx, "tcp", "127.0.0.1:1380")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := newSandbox(t, Config{})
	p := start(t, s.Command(ctx, []string{"./prog", "dial", "127.0.0.1:1380", "neighbour"}))
	if out, err := p.wait(); err == nil || !strings.Contains(p.stderr.String(), "connection refused") {
		t.Fatalf("program dialling another sandbox's 127.0.0.1:1380: %q, %v, stderr %q", out, err, p.stderr)
	}
	// The other sandbox's listener is up: its own side reaches it.
	c, err := other.DialContext(ctx, "tcp", "127.0.0.1:1380")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestSparsePlanFile: a server that plans a file of 2^32 + 1 bytes (the
// largest size the conformance suite plans) by seeking to its end, as the
// course's server does, may do so in a sandbox, as on a laptop; the file
// takes no room.
func TestSparsePlanFile(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	s := newSandbox(t, Config{})
	script := "f = open('plan.bin', 'wb'); f.seek(2**32); f.write(b'x'); f.close(); print('planned')"
	out, err := s.Command(ctx, []string{"python3", "-c", script}).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "planned" {
		t.Fatalf("python3 planning a 2^32 + 1 byte file: %v, %q", err, out)
	}
	fi, err := os.Stat(filepath.Join(s.WorkDir(), "plan.bin"))
	if err != nil || fi.Size() != 1<<32+1 {
		t.Fatalf("plan.bin: %v, %v", fi, err)
	}
}

// TestNewCanceledWhileStarting cancels New at every moment of the
// namespace holder's start: it returns (a sandbox, or the context's
// error), never waits for ever, and a sandbox it returns closes.
func TestNewCanceledWhileStarting(t *testing.T) {
	needIsolation(t)
	for i := range 60 {
		delay := time.Duration(i%30) * time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		type result struct {
			s   *Sandbox
			err error
		}
		done := make(chan result, 1)
		go func() {
			s, err := New(ctx, Config{Dir: progDir})
			done <- result{s, err}
		}()
		time.Sleep(delay)
		cancel()
		select {
		case r := <-done:
			if r.err != nil && !strings.Contains(r.err.Error(), "context canceled") {
				t.Errorf("canceled after %v: %v, want the context's error", delay, r.err)
			}
			if r.s != nil {
				if err := r.s.Close(); err != nil {
					t.Errorf("canceled after %v: Close: %v", delay, err)
				}
			}
		case <-time.After(time.Minute):
			t.Fatalf("New canceled after %v has not returned in a minute", delay)
		}
	}
}
