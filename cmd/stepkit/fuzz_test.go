package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/fuzz"
)

// stepkitRunFor is stepkitRun with a time bound of its own.
func stepkitRunFor(t *testing.T, d time.Duration, dir string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	p := stepkitCmd(t, ctx, dir, args...)
	err := p.cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("stepkit %v: %v", args, err)
	}
	return p.cmd.ProcessState.ExitCode(), p.stdout.String(), p.stderr.String()
}

// stepkit fuzz against stepkit serve finds nothing, exits 0 and writes
// its reports; bad targets are refused with the usual exit statuses.
func TestCLIFuzzServe(t *testing.T) {
	dir := t.TempDir()
	_, addr, _, _ := startServeProcess(t, dir)
	out := filepath.Join(dir, "fz")
	code, stdout, stderr := stepkitRunFor(t, 2*time.Minute, dir, "fuzz", "--target", addr, "--duration", "10s", "--seed", "5", "--out", out)
	if code != 0 || !strings.Contains(stdout, "no findings") {
		t.Fatalf("exit %d against stepkit serve, want 0 with no findings:\n%s\n%s", code, stdout, stderr)
	}
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := conformance.ValidateJSON(fuzz.ReportJSONSchema, b); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(out, "report.html")); err != nil {
		t.Error(err)
	}

	code, _, stderr = stepkitRunFor(t, 30*time.Second, dir, "fuzz", "--target", "192.0.2.1:1379", "--duration", "1s")
	if code != exitUsage || !strings.Contains(stderr, "loopback") {
		t.Errorf("a non-loopback target: exit %d, want %d, saying why: %s", code, exitUsage, stderr)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	code, _, stderr = stepkitRunFor(t, 30*time.Second, dir, "fuzz", "--target", closed, "--duration", "1s")
	if code != exitNetwork {
		t.Errorf("nothing listening: exit %d, want %d: %s", code, exitNetwork, stderr)
	}
	code, _, stderr = stepkitRunFor(t, 30*time.Second, dir, "replay", filepath.Join(dir, "nothing.json"), "--target", addr)
	if code != exitUsage {
		t.Errorf("replay of a missing file: exit %d, want %d: %s", code, exitUsage, stderr)
	}
}

// A finding's reproducers: stepkit replay and the Python script show the
// failure against the buggy server (exit 1) and not against stepkit serve
// (exit 0).
func TestCLIFuzzReproducers(t *testing.T) {
	py := requirePython(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "buggy")
	if out, err := exec.Command("go", "build", "-o", bin, "../../fuzz/testdata/buggy").CombinedOutput(); err != nil {
		t.Fatalf("build the fixture: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	buggy := l.Addr().String()
	l.Close()
	srv := exec.Command(bin, "-bug", "silence", "-listen", buggy)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", buggy); err == nil {
			c.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, good, _, _ := startServeProcess(t, dir)
	out := filepath.Join(dir, "fz")
	code, stdout, stderr := stepkitRunFor(t, 3*time.Minute, dir, "fuzz", "--target", buggy, "--duration", "60s", "--stop-at-first",
		"--shrink-time", "20s", "--read-timeout", "1s", "--seed", "2", "--out", out)
	if code != exitFailure || !strings.Contains(stdout, "REQ-6") {
		t.Fatalf("exit %d against the buggy server, want %d with its silence:\n%s\n%s", code, exitFailure, stdout, stderr)
	}
	repro, _ := filepath.Glob(filepath.Join(out, "F1-*.json"))
	script, _ := filepath.Glob(filepath.Join(out, "F1-*.py"))
	if len(repro) != 1 || len(script) != 1 {
		t.Fatalf("reproducers %v %v", repro, script)
	}
	for _, c := range []struct {
		addr string
		want int
	}{{buggy, exitFailure}, {good, 0}} {
		code, stdout, stderr := stepkitRunFor(t, time.Minute, dir, "replay", repro[0], "--target", c.addr)
		if code != c.want {
			t.Errorf("replay against %s: exit %d, want %d:\n%s\n%s", c.addr, code, c.want, stdout, stderr)
		}
		host, port, _ := net.SplitHostPort(c.addr)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		outp, err := exec.CommandContext(ctx, py, script[0], host, port).CombinedOutput()
		cancel()
		got := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			got = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("python3 %s against %s: exit %d, want %d:\n%s", filepath.Base(script[0]), c.addr, got, c.want, outp)
		}
	}
}

func requirePython(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 is required under CI=true: %v", err)
		}
		t.Skipf("python3 not installed: %v", err)
	}
	return p
}
