package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// asStepkit, set in a process's environment, makes the test binary run the
// stepkit command itself: the end-to-end test starts real stepkit processes
// without building a second binary.
const asStepkit = "STEPKIT_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asStepkit) == "1" || len(os.Args) > 2 && os.Args[1] == "sandbox" && os.Args[2] == "probe" {
		// stepkit sandbox check runs this binary in a sandbox, where the
		// environment is not passed on, as "sandbox probe".
		main()
		return
	}
	os.Exit(m.Run())
}

// stepkitProc is a stepkit process started by the test.
type stepkitProc struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr *lockedBuffer
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// stepkitCmd prepares the test binary to run as "stepkit args...", in dir,
// with an environment free of the caller's STEPKIT_ settings.
func stepkitCmd(t testing.TB, ctx context.Context, dir string, args ...string) *stepkitProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &stepkitProc{cmd: exec.CommandContext(ctx, exe, args...), stderr: &lockedBuffer{}}
	p.cmd.Dir = dir
	var env []string
	gorace := "atexit_sleep_ms=0" // a -race binary otherwise sleeps 1s at exit
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "STEPKIT_"):
		case strings.HasPrefix(kv, "GORACE="):
			gorace = strings.TrimPrefix(kv, "GORACE=") + " " + gorace
		default:
			env = append(env, kv)
		}
	}
	p.cmd.Env = append(env, asStepkit+"=1", envJournal+"="+filepath.Join(dir, "journal"), "GORACE="+gorace)
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = p.stderr
	return p
}

// stepkitRun runs "stepkit args..." to the end and returns its exit status
// and output.
func stepkitRun(t testing.TB, dir string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	p := stepkitCmd(t, ctx, dir, args...)
	err := p.cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("stepkit %v: %v", args, err)
	}
	return p.cmd.ProcessState.ExitCode(), p.stdout.String(), p.stderr.String()
}

// servingLine is the log line in which stepkit serve says where it listens.
type servingLine struct{ Msg, Addr string }

// startServeProcess starts "stepkit serve" on 127.0.0.1 at a port the
// kernel picks, reads the address from its "serving" log line and waits
// until it accepts connections. The returned channel is closed when the
// process has exited, and *exitErr then holds what Wait returned.
func startServeProcess(t testing.TB, dir string) (p *stepkitProc, addr string, exited <-chan struct{}, exitErr *error) {
	t.Helper()
	return startServeWith(t, dir, nil, "--root", filepath.Join(dir, "store"))
}

// startServeWith is startServeProcess with the storage flags args and the
// extra environment variables env.
func startServeWith(t testing.TB, dir string, env []string, args ...string) (p *stepkitProc, addr string, exited <-chan struct{}, exitErr *error) {
	t.Helper()
	p = stepkitCmd(t, context.Background(), dir, append([]string{"serve", "--addr", "127.0.0.1:0",
		"--log-format", "json", "--shutdown-timeout", "5s"}, args...)...)
	p.cmd.Env = append(p.cmd.Env, env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = p.cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill() // an error, ignored, once it has exited
		<-done
	})
	for deadline := time.Now().Add(10 * time.Second); addr == ""; {
		for _, l := range strings.Split(p.stderr.String(), "\n") {
			var line servingLine
			if json.Unmarshal([]byte(l), &line) == nil && line.Msg == "serving" {
				addr = line.Addr
			}
		}
		if addr != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stepkit serve did not report its address; log:\n%s", p.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			nc.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stepkit serve on %s does not accept: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p, addr, done, &waitErr
}

// TestEndToEndProcesses runs the server and every client command as
// separate stepkit processes over TCP on 127.0.0.1, as a user would.
func TestEndToEndProcesses(t *testing.T) {
	dir := t.TempDir()
	srv, addr, exited, exitErr := startServeProcess(t, dir)
	conn := []string{"--server", addr, "--user", "2362202"}

	// The conformance suite finds the server conformant.
	report := filepath.Join(dir, "report.json")
	code, out, errs := stepkitRun(t, dir, "conformance", "--target", addr, "--json-report", report)
	if code != exitOK || !strings.Contains(out, "CONFORMANT") {
		t.Fatalf("conformance: exit %d\n%s\n%s", code, out, errs)
	}
	var rep struct {
		Schema     string
		Conformant bool
		Target     string
		Counts     map[string]int
	}
	if b, err := os.ReadFile(report); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	if !rep.Conformant || rep.Target != addr || rep.Schema != "stepkit-conformance/1" || rep.Counts["PASS"] == 0 || rep.Counts["FAIL"] != 0 || rep.Counts["ERROR"] != 0 {
		t.Fatalf("JSON report: %+v", rep)
	}

	// A file goes up and comes back the same.
	path, data := randomFile(t, dir, "report.pdf", 3*20480+17, 42)
	code, out, errs = stepkitRun(t, dir, append([]string{"upload", path, "--json"}, conn...)...)
	var up uploadReport
	if code != exitOK || json.Unmarshal([]byte(out), &up) != nil || !up.Verified || up.MD5 != md5Of(data) || up.Key != "report.pdf" {
		t.Fatalf("upload: exit %d %q %s", code, out, errs)
	}
	copyPath := filepath.Join(dir, "copy.pdf")
	code, out, errs = stepkitRun(t, dir, append([]string{"download", "report.pdf", "-o", copyPath}, conn...)...)
	if got, err := os.ReadFile(copyPath); code != exitOK || err != nil || !bytes.Equal(got, data) {
		t.Fatalf("download: exit %d %q %s (file equal: %v)", code, out, errs, bytes.Equal(got, data))
	}

	// A DATA document is stored, read back and deleted.
	code, out, errs = stepkitRun(t, dir, append([]string{"data", "put", `{"name":"Zoë","score":92}`, "--key", "grade"}, conn...)...)
	if code != exitOK || strings.TrimSpace(out) != "grade" {
		t.Fatalf("data put: exit %d %q %s", code, out, errs)
	}
	code, out, errs = stepkitRun(t, dir, append([]string{"data", "get", "grade"}, conn...)...)
	var doc map[string]any
	if code != exitOK || json.Unmarshal([]byte(out), &doc) != nil || doc["name"] != "Zoë" || doc["score"] != 92.0 {
		t.Fatalf("data get: exit %d %q %s", code, out, errs)
	}
	if code, out, errs = stepkitRun(t, dir, append([]string{"data", "rm", "grade"}, conn...)...); code != exitOK {
		t.Fatalf("data rm: exit %d %q %s", code, out, errs)
	}
	if code, _, errs = stepkitRun(t, dir, append([]string{"data", "get", "grade"}, conn...)...); code != exitRefused || !strings.Contains(errs, "404") {
		t.Fatalf("data get after rm: exit %d %s, want %d and a 404", code, errs, exitRefused)
	}

	// The file is deleted and is then gone.
	if code, out, errs = stepkitRun(t, dir, append([]string{"rm", "report.pdf"}, conn...)...); code != exitOK || !strings.Contains(out, "deleted report.pdf") {
		t.Fatalf("rm: exit %d %q %s", code, out, errs)
	}
	code, _, errs = stepkitRun(t, dir, append([]string{"download", "report.pdf", "-o", filepath.Join(dir, "gone")}, conn...)...)
	if code != exitRefused || !strings.Contains(errs, "404") {
		t.Fatalf("download after rm: exit %d %s, want %d and a 404", code, errs, exitRefused)
	}

	// SIGTERM stops the server gracefully: exit status 0.
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if *exitErr != nil {
			t.Fatalf("stepkit serve after SIGTERM: %v; log:\n%s", *exitErr, srv.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("stepkit serve still running 10s after SIGTERM; log:\n%s", srv.stderr)
	}
	if log := srv.stderr.String(); !strings.Contains(log, `"shutting down"`) || !strings.Contains(log, `"server stopped"`) {
		t.Errorf("serve log lacks the shutdown:\n%s", log)
	}
}
