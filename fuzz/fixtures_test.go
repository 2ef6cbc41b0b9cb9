package fuzz_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stepkit/stepkit/fuzz"
	"github.com/stepkit/stepkit/sandbox"
)

// requireTool returns the path of an external tool, skipping the test
// without it unless CI=true, where a missing tool fails.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

// requireSandbox skips a test that starts servers in the sandbox where
// it cannot be made, unless CI=true.
func requireSandbox(t *testing.T) {
	t.Helper()
	if ok, why := sandbox.Available(); !ok {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the sandbox is required under CI=true: %s", why)
		}
		t.Skipf("the sandbox is not available: %s", why)
	}
}

// buildBuggy builds the fixture server (testdata/buggy) into a folder of
// its own, the folder a sandbox copies.
func buildBuggy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "buggy"), "./testdata/buggy").CombinedOutput()
	if err != nil {
		t.Fatalf("build the fixture: %v\n%s", err, out)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startBuggy runs the fixture on the host at a free port, for the
// Python reproducer.
func startBuggy(t *testing.T, dir, bug string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(filepath.Join(dir, "buggy"), "-bug", bug, "-listen", addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the fixture did not listen on %s", addr)
	return ""
}

// Each fixture server is the reference server with one bug the
// conformance suite does not catch. The fuzzer finds each within 60
// seconds, shrinks it to at most 5 requests, and the reproducer shows it
// again on every fresh process; the Python script fails against the
// buggy server and passes against the correct one.
func TestFixtureBugsAreFound(t *testing.T) {
	requireSandbox(t)
	py := requireTool(t, "python3")
	dir := buildBuggy(t)
	for _, tc := range []struct {
		bug    string
		oracle string
	}{
		{"crash", fuzz.OracleDied},
		{"silence", fuzz.OracleSilence},
		{"md5", fuzz.OracleData},
	} {
		t.Run(tc.bug, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			target, err := fuzz.StartProcess(ctx, fuzz.ProcessConfig{Command: "./buggy -bug " + tc.bug, Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer target.Close()
			res, err := fuzz.Run(ctx, fuzz.Options{Target: target, Duration: 60 * time.Second, Seed: 1, StopAtFirst: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Findings) != 1 {
				t.Fatalf("%d findings in %d inputs, want the one bug: %v", len(res.Findings), res.Inputs, summary(res))
			}
			f := res.Findings[0]
			t.Logf("%s: %s %s %s %d found after %v (%d inputs); reproducer %d requests on %d connections, %d shrinking runs; %s",
				tc.bug, f.Oracle, f.Requirement, f.Operation, f.Status, f.FoundAfter.Round(time.Millisecond), f.FoundAtInput, f.Repro.Requests(), f.Repro.Conns(), f.ShrinkChecks, f.Message)
			for _, a := range f.Answers {
				t.Logf("  step %d: %s -> %s %s", a.Step, a.Sent, a.Outcome, a.Answer)
			}
			if f.Oracle != tc.oracle {
				t.Errorf("oracle %s, want %s", f.Oracle, tc.oracle)
			}
			if f.FoundAfter > 60*time.Second {
				t.Errorf("found after %v, more than 60 s", f.FoundAfter)
			}
			if n := f.Repro.Requests(); n > 5 {
				t.Errorf("the reproducer has %d requests, want at most 5", n)
			}
			if f.Reproduced != f.Confirmed || f.Confirmed != 3 {
				t.Errorf("reproduced %d of %d times on a fresh process", f.Reproduced, f.Confirmed)
			}

			out := t.TempDir()
			if err := fuzz.WriteRepro(out, "repro", f, res.ReadTimeout); err != nil {
				t.Fatal(err)
			}
			r, err := fuzz.ReadRepro(filepath.Join(out, "repro.json"))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				if err := target.Restart(ctx); err != nil {
					t.Fatal(err)
				}
				rr, err := fuzz.Replay(ctx, r, target, 0)
				if err != nil {
					t.Fatal(err)
				}
				if !rr.Shown {
					t.Errorf("replay %d on a fresh process did not show the failure: %v", i+1, rr.Violations)
				}
			}

			script := filepath.Join(out, "repro.py")
			buggy := startBuggy(t, dir, tc.bug)
			if code, outp := runPython(t, py, script, buggy); code != 1 {
				t.Errorf("the Python reproducer exits %d against the buggy server, want 1:\n%s", code, outp)
			}
			good := startBuggy(t, dir, "none")
			if code, outp := runPython(t, py, script, good); code != 0 {
				t.Errorf("the Python reproducer exits %d against the correct server, want 0:\n%s", code, outp)
			}
		})
	}
}

func runPython(t *testing.T, py, script, addr string) (int, string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, script, host, port).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("python3 %s: %v\n%s", script, err, out)
	}
	return 0, string(out)
}

func summary(res *fuzz.Result) string {
	s := ""
	for _, f := range res.Findings {
		s += fmt.Sprintf("[%s %s %s %s]", f.Oracle, f.Requirement, f.Operation, strconv.Itoa(f.Status))
	}
	return s
}

// A server whose memory grows without bound is a finding when stepkit
// started it: its resident memory is read from /proc after every input.
func TestFixtureLeakIsFound(t *testing.T) {
	requireSandbox(t)
	dir := buildBuggy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	target, err := fuzz.StartProcess(ctx, fuzz.ProcessConfig{Command: "./buggy -bug leak", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	res, err := fuzz.Run(ctx, fuzz.Options{Target: target, Duration: 60 * time.Second, Seed: 1, StopAtFirst: true,
		MemoryBound: 48 << 20, ShrinkTime: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Findings) != 1 || res.Findings[0].Oracle != fuzz.OracleMemory {
		t.Fatalf("want the one memory finding, got %s", summary(res))
	}
	t.Logf("found after %v: %s", res.Findings[0].FoundAfter.Round(time.Millisecond), res.Findings[0].Message)
}
