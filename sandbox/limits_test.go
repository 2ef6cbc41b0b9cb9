package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMemoryLimitKills(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	s := newSandbox(t, Config{Memory: 256 << 20})
	if !strings.Contains(s.Limits(), "cgroup") {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no memory cgroup in CI: %s", s.Limits())
		}
		t.Skipf("memory cgroup not writable here: %s", s.Limits())
	}
	cmd := s.Command(ctx, []string{"./prog", "alloc", "4096"})
	out, err := cmd.Output()
	if err == nil {
		t.Fatalf("a program allocating 4 GiB under a 256 MiB bound finished: %q", out)
	}
	if got, want := s.Describe(err, cmd.ProcessState), "killed: memory limit (256 MiB)"; got != want {
		t.Fatalf("Describe = %q, want %q", got, want)
	}
	// A Python server trusting a 4 GiB frame header.
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		return
	}
	cmd = s.Command(ctx, []string{"python3", "-c", "b = bytearray(4 << 30); print('allocated')"})
	out, err = cmd.Output()
	if got, want := s.Describe(err, cmd.ProcessState), "killed: memory limit (256 MiB)"; got != want {
		t.Fatalf("python: %q, Describe = %q, want %q", out, got, want)
	}
}

func TestMemoryLimitWithoutCgroup(t *testing.T) {
	needIsolation(t)
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 missing in CI")
		}
		t.Skip("no /usr/bin/python3")
	}
	ctx := testContext(t)
	s := newSandbox(t, Config{Memory: 512 << 20, noCgroup: true})
	if !strings.Contains(s.Limits(), "RLIMIT_AS") {
		t.Fatalf("Limits = %q, want RLIMIT_AS", s.Limits())
	}
	// Under RLIMIT_AS the allocation fails inside the program.
	cmd := s.Command(ctx, []string{"python3", "-c", "b = bytearray(4 << 30); print('allocated')"})
	out, err := cmd.Output()
	if err == nil || strings.Contains(string(out), "allocated") {
		t.Fatalf("4 GiB under a 512 MiB RLIMIT_AS: %q, %v", out, err)
	}
	if got := s.Describe(err, cmd.ProcessState); got != "exit status 1" {
		t.Errorf("Describe = %q, want exit status 1 (MemoryError)", got)
	}
	out, err = s.Command(ctx, []string{"python3", "-c", "b = bytearray(64 << 20); print('allocated')"}).Output()
	if err != nil || string(out) != "allocated\n" {
		t.Fatalf("64 MiB under a 512 MiB RLIMIT_AS: %q, %v", out, err)
	}
}

func TestCPULimitKills(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	s := newSandbox(t, Config{CPU: time.Second})
	for _, argv := range [][]string{
		{"./prog", "spin"},                  // Go ignores SIGXCPU: killed at the hard limit
		{"sh", "-c", "while :; do :; done"}, // sh dies of SIGXCPU
	} {
		cmd := s.Command(ctx, argv)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		cmd.WaitDelay = 10 * time.Second
		err := cmd.Run()
		t.Logf("%v: %v, stderr %q", argv, err, stderr.String())
		if err == nil {
			t.Fatalf("%v: a busy loop ended by itself", argv)
		}
		if got, want := s.Describe(err, cmd.ProcessState), "killed: CPU time limit (1s)"; got != want {
			t.Errorf("%v: Describe = %q, want %q", argv, got, want)
		}
	}
}

// processesWith lists the host's processes whose command line holds marker.
func processesWith(t *testing.T, marker string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range ents {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(cmdline), marker) {
			found = append(found, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return found
}

func TestCloseKillsForkedDaemon(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	s, err := New(ctx, Config{Dir: progDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // on failure; a second Close does nothing
	marker := fmt.Sprintf("daemon-marker-%d", time.Now().UnixNano())
	p := start(t, s.Command(ctx, []string{"./prog", "fork", marker}))
	if got := p.line(t); got != "forked" {
		t.Fatalf("program says %q", got)
	}
	if len(processesWith(t, marker)) < 2 { // the program and its daemon
		t.Fatalf("processes before Close: %q", processesWith(t, marker))
	}
	ln, err := s.Listen(ctx, "tcp", "127.0.0.1:1379")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	work := s.WorkDir()
	var groups []string
	if s.cgroups != nil {
		groups = []string{s.cgroups.mem, s.cgroups.pids, s.cgroups.cpu}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, g := range groups {
		if _, err := os.Stat(g); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s after Close: %v", g, err)
		}
	}
	if left := processesWith(t, marker); len(left) > 0 {
		t.Fatalf("processes after Close: %q", left)
	}
	if _, err := os.Stat(work); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("scratch folder after Close: %v", err)
	}
	if err := p.cmd.Wait(); err == nil {
		t.Fatal("the program exited cleanly though Close killed it")
	}
	// Closed sandboxes hand out no more commands or sockets.
	if err := s.Command(ctx, []string{"./prog", "id"}).Start(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Command after Close: %v", err)
	}
	if _, err := s.DialContext(ctx, "tcp", "127.0.0.1:1379"); err == nil {
		t.Fatal("DialContext after Close succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestDaemonDiesWithItsProgram(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	s := newSandbox(t, Config{})
	marker := fmt.Sprintf("daemon-marker-%d", time.Now().UnixNano())
	p := start(t, s.Command(ctx, []string{"./prog", "fork", marker}))
	if got := p.line(t); got != "forked" {
		t.Fatalf("program says %q", got)
	}
	if _, err := p.wait(); err != nil {
		t.Fatalf("program: %v", err)
	}
	// The program's pid namespace ends with it, and the daemon with it;
	// the kernel does that after the program's exit is reported.
	var left []string
	for range 300 {
		if left = processesWith(t, marker); len(left) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("processes 30s after the program ended: %q", left)
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestCloseLeaksNoFDs(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	round := func() {
		s, err := New(ctx, Config{Dir: progDir})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close() // on failure; a second Close does nothing
		ln, err := s.Listen(ctx, "tcp", "127.0.0.1:1379")
		if err != nil {
			t.Fatal(err)
		}
		cmd := s.Command(ctx, []string{"./prog", "dial", "127.0.0.1:1379", "x"})
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c, err := accept(ln)
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%v (program: %s)", err, stderr.String())
		}
		c.Close()
		ln.Close()
		cmd.Wait()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	round() // the runtime's own descriptors (epoll, pidfds) open once
	before := openFDs(t)
	for range 3 {
		round()
	}
	if after := openFDs(t); after != before {
		t.Fatalf("open descriptors: %d before, %d after three sandboxes", before, after)
	}
}

func TestFallback(t *testing.T) {
	ctx := testContext(t)
	unavailable := map[string]string{"bwrap": "/nonexistent/bwrap"}

	_, err := New(ctx, Config{Dir: progDir, tools: unavailable})
	if err == nil || !strings.Contains(err.Error(), "bwrap not found") {
		t.Fatalf("New without bwrap: %v, want an error naming bwrap", err)
	}

	s := newSandbox(t, Config{tools: unavailable, Fallback: true})
	if s.Isolated() || !strings.Contains(s.Why(), "bwrap") {
		t.Fatalf("Isolated %v, Why %q", s.Isolated(), s.Why())
	}
	ln, err := s.Listen(ctx, "tcp", "127.0.0.1:0") // the host network: a free port
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := start(t, s.Command(ctx, []string{"./prog", "dial", ln.Addr().String(), "fallback"}))
	conn, err := accept(ln)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, len("fallback\n"))
	if _, err := conn.Read(buf); err != nil {
		t.Fatal(err)
	}
	conn.Write(buf)
	conn.Close()
	if out, err := p.wait(); err != nil || out != "fallback\n" {
		t.Fatalf("program: %q, %v (stderr %s)", out, err, p.stderr)
	}

	// The CPU bound holds without namespaces too.
	s2 := newSandbox(t, Config{tools: unavailable, Fallback: true, CPU: time.Second})
	cmd := s2.Command(ctx, []string{"sh", "-c", "while :; do :; done"})
	err = cmd.Run()
	if got := s2.Describe(err, cmd.ProcessState); got != "killed: CPU time limit (1s)" {
		t.Fatalf("Describe = %q", got)
	}

	if s.cgroups == nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no writable cgroups in CI")
		}
		t.Skip("cgroups not writable: no memory kill, and daemons that leave their process group outlive Close")
	}

	// The memory bound holds without namespaces too.
	s4 := newSandbox(t, Config{tools: unavailable, Fallback: true, Memory: 256 << 20})
	cmd = s4.Command(ctx, []string{"./prog", "alloc", "4096"})
	err = cmd.Run()
	if got := s4.Describe(err, cmd.ProcessState); got != "killed: memory limit (256 MiB)" {
		t.Fatalf("Describe = %q", got)
	}

	// Close kills a daemon the program forked, through its cgroup.
	marker := fmt.Sprintf("daemon-marker-%d", time.Now().UnixNano())
	s3, err := New(ctx, Config{Dir: progDir, tools: unavailable, Fallback: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s3.Close() })
	p3 := start(t, s3.Command(ctx, []string{"./prog", "fork", marker}))
	if got := p3.line(t); got != "forked" {
		t.Fatalf("program says %q", got)
	}
	if err := s3.Close(); err != nil {
		t.Fatal(err)
	}
	p3.cmd.Wait()
	if left := processesWith(t, marker); len(left) > 0 {
		for _, l := range left {
			pid, _, _ := strings.Cut(l, ":")
			cg, _ := os.ReadFile("/proc/" + pid + "/cgroup")
			st, _ := os.ReadFile("/proc/" + pid + "/stat")
			t.Logf("%s\n%s\n%s", l, cg, st)
		}
		t.Fatalf("processes after Close: %q", left)
	}
}

func TestBadInput(t *testing.T) {
	ctx := testContext(t)
	if _, err := New(ctx, Config{Dir: "/nonexistent/submission", Fallback: true}); err == nil || !strings.Contains(err.Error(), "/nonexistent/submission") {
		t.Errorf("missing Dir: %v", err)
	}
	file := filepath.Join(t.TempDir(), "server.py")
	os.WriteFile(file, []byte("x"), 0o644)
	if _, err := New(ctx, Config{Dir: file, Fallback: true}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Dir is a file: %v", err)
	}
	if _, err := New(ctx, Config{Memory: -1, Fallback: true}); err == nil {
		t.Errorf("negative memory accepted")
	}

	for _, fallback := range []bool{false, true} {
		cfg := Config{Dir: progDir}
		if fallback {
			cfg.tools, cfg.Fallback = map[string]string{"bwrap": "/nonexistent/bwrap"}, true
		} else if ok, _ := Available(); !ok {
			continue
		}
		s := newSandbox(t, cfg)
		for _, c := range []struct {
			argv []string
			want string
		}{
			{[]string{"python9"}, "did not start: python9: not found"},
			{[]string{"./missing.py"}, "did not start: ./missing.py: not found"},
			{[]string{"./"}, "did not start: ./: is a directory"},
			{nil, "did not start: empty command"},
		} {
			cmd := s.Command(ctx, c.argv)
			err := cmd.Start()
			if err == nil {
				cmd.Wait()
				t.Errorf("fallback %v: %q started", fallback, c.argv)
				continue
			}
			if got := s.Describe(err, cmd.ProcessState); got != c.want {
				t.Errorf("fallback %v: %q: Describe = %q, want %q", fallback, c.argv, got, c.want)
			}
		}
		cmd := s.Trusted(ctx, []string{"/nonexistent/stepkit"})
		if err := cmd.Start(); err == nil {
			cmd.Wait()
			t.Errorf("fallback %v: trusted missing program started", fallback)
		}
		// A program that fails says so in its own words.
		cmd2 := s.Command(ctx, []string{"sh", "-c", "exit 3"})
		err := cmd2.Run()
		if got := s.Describe(err, cmd2.ProcessState); got != "exit status 3" {
			t.Errorf("fallback %v: exit 3: Describe = %q", fallback, got)
		}
	}
}

func TestDescribe(t *testing.T) {
	if got := Describe(&exec.Error{Name: "python3", Err: exec.ErrNotFound}, nil); got != "did not start: python3: executable file not found in $PATH" {
		t.Errorf("Describe(not found) = %q", got)
	}
	cmd := exec.Command("sh", "-c", "kill -KILL $$")
	err := cmd.Run()
	if got := Describe(err, cmd.ProcessState); got != "signal: killed" {
		t.Errorf("Describe(SIGKILL) = %q", got)
	}
	cmd = exec.Command("sh", "-c", "kill -XCPU $$")
	err = cmd.Run()
	if got := Describe(err, cmd.ProcessState); got != "killed: CPU time limit" {
		t.Errorf("Describe(SIGXCPU) = %q", got)
	}
	cmd = exec.Command("sh", "-c", "exit 0")
	err = cmd.Run()
	if got := Describe(err, cmd.ProcessState); got != "exit status 0" {
		t.Errorf("Describe(exit 0) = %q", got)
	}
	for n, want := range map[int64]string{1 << 30: "1 GiB", 256 << 20: "256 MiB", 1536 << 20: "1536 MiB", 1000: "1000 bytes"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestCancelKillsTheTree(t *testing.T) {
	needIsolation(t)
	s := newSandbox(t, Config{})
	ctx, cancel := context.WithCancel(testContext(t))
	marker := fmt.Sprintf("daemon-marker-%d", time.Now().UnixNano())
	p := start(t, s.Command(ctx, []string{"./prog", "fork", marker}))
	if got := p.line(t); got != "forked" {
		t.Fatalf("program says %q", got)
	}
	cancel()
	if err := p.cmd.Wait(); err == nil {
		t.Fatal("a cancelled program exited cleanly")
	}
	if s.cgroups == nil {
		return // the pid namespaces end a moment later; Close waits for that
	}
	// The cgroup was emptied by the cancellation itself.
	if left := processesWith(t, marker); len(left) > 0 {
		t.Logf("processes right after cancel (exiting): %q", left)
	}
	var left []string
	for range 300 {
		if left = processesWith(t, marker); len(left) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("processes 30s after cancel: %q", left)
}

func TestForkBombIsBounded(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	s := newSandbox(t, Config{})
	if s.cgroups == nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no writable cgroups in CI")
		}
		t.Skip("cgroups not writable: no bound on tasks")
	}
	// 2*maxProcs sleeping children: the pids group refuses the ones over
	// the bound, and the shell gives up.
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do sleep 1000 & i=$((i+1)); done; echo done`, 2*maxProcs)
	cmd := s.Command(ctx, []string{"sh", "-c", script})
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err == nil || string(out) == "done\n" || !strings.Contains(stderr.String(), "fork") {
		t.Fatalf("%d children: %q, %v (stderr %.200q)", 2*maxProcs, out, err, stderr.String())
	}
}

// TestLimitsInForce reads the limits an untrusted program runs under, in
// each kind of sandbox: what the shell at the head of the chain set must
// reach the program, soft and hard, in the kernel's own units.
func TestLimitsInForce(t *testing.T) {
	ctx := testContext(t)
	want := map[string]string{
		"Max cpu time":       "3 4 seconds",
		"Max open files":     "1024 1024 files",
		"Max file size":      "8589934592 8589934592 bytes",
		"Max core file size": "0 0 bytes",
	}
	cases := []struct {
		name string
		cfg  Config
		as   string // Max address space, "" for unlimited
	}{
		{"isolated", Config{CPU: 3 * time.Second, Memory: 256 << 20}, ""},
		{"isolated with setpriv", Config{CPU: 3 * time.Second, Memory: 256 << 20, noUserns: true}, ""},
		{"isolated without cgroups", Config{CPU: 3 * time.Second, Memory: 256 << 20, noCgroup: true}, "268435456 268435456 bytes"},
		{"fallback", Config{CPU: 3 * time.Second, Memory: 256 << 20, tools: map[string]string{"bwrap": "/nonexistent/bwrap"}, Fallback: true}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.cfg.tools == nil {
				needIsolation(t)
			}
			s := newSandbox(t, c.cfg)
			as := c.as
			if s.cgroups == nil && as == "" {
				as = "268435456 268435456 bytes" // no writable cgroups: RLIMIT_AS bounds memory
			}
			out, err := s.Command(ctx, []string{"cat", "/proc/self/limits"}).Output()
			if err != nil {
				t.Fatalf("cat /proc/self/limits: %v", err)
			}
			got := map[string]string{}
			for _, line := range strings.Split(string(out), "\n") {
				if len(line) < 26 {
					continue
				}
				got[strings.TrimSpace(line[:26])] = strings.Join(strings.Fields(line[26:]), " ")
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s: %q, want %q", k, got[k], v)
				}
			}
			wantAS := "unlimited unlimited bytes"
			if as != "" {
				wantAS = as
			}
			if got["Max address space"] != wantAS {
				t.Errorf("Max address space: %q, want %q", got["Max address space"], wantAS)
			}
		})
	}
}

// TestCommandHeldUntilReady: bwrap waits for the grader before it forks
// the program, so that a start that fails once bwrap is running (its
// cgroups cannot be joined, or anything later) runs nothing of the
// program, leaves no bwrap behind, says why, and the sandbox still serves.
func TestCommandHeldUntilReady(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	cases := []struct {
		name  string
		spoil func(s *Sandbox, cg *commandCgroup) error
		want  string
	}{
		{"cgroups gone", func(s *Sandbox, cg *commandCgroup) error { return cg.remove() }, "cgroup"},
		// A failure a while after bwrap started: a program not held
		// would have run by then.
		{"late failure", func(s *Sandbox, cg *commandCgroup) error {
			s.testHookHeld = func() error {
				time.Sleep(500 * time.Millisecond)
				return errors.New("held on purpose")
			}
			return nil
		}, "held on purpose"},
	}
	for _, c := range cases {
		for _, noUserns := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/setpriv=%v", c.name, noUserns), func(t *testing.T) {
				s := newSandbox(t, Config{noUserns: noUserns})
				if s.cgroups == nil {
					if os.Getenv("CI") == "true" {
						t.Fatal("no cgroups in CI")
					}
					t.Skip("cgroups not writable here")
				}
				cmd := s.Command(ctx, []string{"sh", "-c", "echo ran > ran.txt"})
				s.mu.Lock()
				cg := s.cmds[len(s.cmds)-1].cg
				s.mu.Unlock()
				if err := c.spoil(s, cg); err != nil {
					t.Fatal(err)
				}
				err := cmd.Start()
				s.testHookHeld = nil
				if err == nil {
					cmd.Wait()
					t.Fatal("the command started")
				}
				if !strings.Contains(err.Error(), c.want) {
					t.Errorf("error %q does not say %q", err, c.want)
				}
				if got := s.Describe(err, nil); !strings.HasPrefix(got, "did not start: ") {
					t.Errorf("Describe = %q, want a line starting %q", got, "did not start: ")
				}
				deadline := time.Now().Add(10 * time.Second)
				for syscall.Kill(cmd.Process.Pid, 0) == nil {
					if time.Now().After(deadline) {
						t.Fatalf("bwrap (pid %d) still alive after the failed start", cmd.Process.Pid)
					}
					time.Sleep(10 * time.Millisecond)
				}
				if _, err := os.Stat(filepath.Join(s.WorkDir(), "ran.txt")); err == nil {
					t.Error("the program ran although its start failed")
				}
				if out, err := s.Command(ctx, []string{"echo", "ok"}).Output(); err != nil || string(out) != "ok\n" {
					t.Errorf("next command: %q, %v", out, err)
				}
			})
		}
	}
}
