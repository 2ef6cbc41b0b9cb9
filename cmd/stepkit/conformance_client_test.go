package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/conformance/judge"
)

// clientFolder is a client's folder holding a copy of the test binary as
// ./stepkit: the judge copies the folder for each case, and a program
// outside it (under the host's /tmp) is not visible in a namespace.
func clientFolder(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(filepath.Join(dir, "stepkit"), os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// judgeRun runs "stepkit conformance --client ..." as a process and returns
// its exit status, output and JSON report.
func judgeRun(t *testing.T, args ...string) (int, string, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	report := filepath.Join(t.TempDir(), "report.json")
	args = append(append([]string{"conformance"}, args...), "--json-report", report,
		"--client-env", asStepkit+"=1", "--client-env", "GORACE=atexit_sleep_ms=0")
	p := stepkitCmd(t, ctx, t.TempDir(), args...)
	err := p.cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("stepkit %v: %v", args, err)
	}
	var rep map[string]any
	if b, err := os.ReadFile(report); err == nil {
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatalf("JSON report: %v", err)
		}
	}
	return p.cmd.ProcessState.ExitCode(), p.stdout.String() + p.stderr.String(), rep
}

// allPass asserts a conformant report in which every client case passed
// (but the download case, informational without {dir} in the template).
func allPass(t *testing.T, code int, out string, rep map[string]any, downloads bool) {
	t.Helper()
	if code != 0 || rep == nil {
		t.Fatalf("exit status %d, want 0:\n%s", code, out)
	}
	cases, _ := rep["cases"].([]any)
	if len(cases) != len(judge.Cases()) {
		t.Errorf("%d cases in the report, want %d", len(cases), len(judge.Cases()))
	}
	for _, c := range cases {
		c := c.(map[string]any)
		if c["id"] == "CLIENT-1.5" && !downloads {
			// The download case needs {dir}: informational, not run.
			if c["outcome"] != "INFORMATIONAL" || c["client"] != nil {
				t.Errorf("case CLIENT-1.5 without {dir}: %v, client %v", c["outcome"], c["client"])
			}
			continue
		}
		if c["outcome"] != "PASS" {
			t.Errorf("case %v: %v", c["id"], c["outcome"])
		}
		// stepkit reports a refusal, a mismatch or a silence by its exit
		// status (4, 5, 3); every other case ends in success.
		want := "exit status 0"
		switch c["id"] {
		case "CLIENT-2":
			want = "exit status 5"
		case "CLIENT-6", "CLIENT-6.2", "CLIENT-6.3":
			want = "exit status 4"
		case "CLIENT-7":
			want = "exit status 3"
		}
		if cl, _ := c["client"].(map[string]any); cl == nil || cl["exit"] != want {
			t.Errorf("case %v: client run %v, want %s", c["id"], c["client"], want)
		}
	}
	if rep["mode"] != "client" || rep["conformant"] != true {
		t.Errorf("mode %v, conformant %v", rep["mode"], rep["conformant"])
	}
	if t.Failed() {
		t.Log(out)
	}
}

// TestJudgeCourseClient: stepkit's own course client, run the way the
// course sheet spells a client's command line, passes every client case.
func TestJudgeCourseClient(t *testing.T) {
	dir := clientFolder(t)
	code, out, rep := judgeRun(t, "--host-network", "--client-dir", dir,
		"--client", "./stepkit course-client --server_ip {host} --port {port} --id {user} -f {file} --timeout 3s")
	allPass(t, code, out, rep, false)
}

// TestJudgeUploadDownload: stepkit upload, then stepkit download into
// {dir}, as one shell command line, passes every client case, the
// download included.
func TestJudgeUploadDownload(t *testing.T) {
	dir := clientFolder(t)
	code, out, rep := judgeRun(t, "--host-network", "--client-dir", dir,
		"--client", `sh -c './stepkit upload "$0" --server "$1" --user "$2" --timeout 3s --no-progress && ./stepkit download "$0" -o "$3/$0" --server "$1" --user "$2" --timeout 3s --no-progress' {file} {host}:{port} {user} {dir}`)
	allPass(t, code, out, rep, true)
}

// TestJudgeHardCodedPortInNamespaces: a client that dials 127.0.0.1:1379
// whatever it is told (course-client without --port) is judged in network
// namespaces, several cases at once, each judge on 1379 of its own.
func TestJudgeHardCodedPortInNamespaces(t *testing.T) {
	if ok, why := judge.NamespacesAvailable(); !ok {
		if os.Getenv("CI") == "true" {
			t.Fatalf("network namespaces are needed under CI: %s", why)
		}
		t.Skipf("no network namespaces here (%s); CI runs this", why)
	}
	dir := clientFolder(t)
	code, out, rep := judgeRun(t, "--client-dir", dir,
		"--client", "./stepkit course-client --server_ip {host} --id {user} -f {file} --timeout 3s")
	allPass(t, code, out, rep, false)
	if cl, _ := rep["client"].(map[string]any); cl == nil || cl["isolated"] != true || cl["port"] != float64(1379) {
		t.Errorf("client settings %v: want isolated, port 1379", rep["client"])
	}
}

// TestJudgeReportSchema: a client run's JSON report is the server run's
// schema with fields added, none removed or renamed.
func TestJudgeReportSchema(t *testing.T) {
	dir := clientFolder(t)
	_, out, client := judgeRun(t, "--host-network", "--client-dir", dir, "CLIENT-1.3",
		"--client", "./stepkit upload {file} --server {host}:{port} --user {user} --no-progress")
	if client == nil {
		t.Fatalf("no client report:\n%s", out)
	}
	report := filepath.Join(t.TempDir(), "server.json")
	code, sout, serr := stepkitRun(t, t.TempDir(), "conformance", "LOGIN-4", "--json-report", report)
	if code != 0 {
		t.Fatalf("server run: exit %d\n%s%s", code, sout, serr)
	}
	var server map[string]any
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &server); err != nil {
		t.Fatal(err)
	}
	if client["schema"] != server["schema"] {
		t.Errorf("schema %v, the server run's is %v", client["schema"], server["schema"])
	}
	missing := func(what string, s, c map[string]any) {
		for k := range s {
			if _, ok := c[k]; !ok {
				t.Errorf("%s: the client report lacks %q", what, k)
			}
		}
	}
	missing("report", server, client)
	sc := server["cases"].([]any)[0].(map[string]any)
	cc := client["cases"].([]any)[0].(map[string]any)
	for _, k := range []string{"exchange", "findings", "notes", "broken"} {
		delete(sc, k) // present only when not empty
	}
	missing("case", sc, cc)
	var keys []string
	for k := range cc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if !strings.Contains(strings.Join(keys, " "), "client") {
		t.Errorf("a client case has no client field: %v", keys)
	}
}

// TestJudgeBadCommandLines: every mistake is one line on stderr and exit
// status 2, before any client runs.
func TestJudgeBadCommandLines(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--client", "python3 client.py --server_ip {host}"}, "has no {file}"},
		{[]string{"--client", "python3 client.py -f {file} --ip {hots}"}, "unknown placeholder {hots}"},
		{[]string{"--client", "python3 'client.py -f {file}"}, "unterminated single quote"},
		{[]string{"--client", ""}, "empty"},
		{[]string{"--client", "course", "--target", "127.0.0.1:1379"}, "--target is for judging servers"},
		{[]string{"--client", "course", "--client-dir", filepath.Join(dir, "nope")}, "--client-dir"},
		{[]string{"--client", "course", "--stdin", filepath.Join(dir, "nope")}, "--stdin"},
		{[]string{"--client", "course", "--client-env", "NOEQUALS"}, "NAME=VALUE"},
		{[]string{"--client", "course", "--client-timeout", "0s"}, "--client-timeout must be positive"},
		{[]string{"--client", "course", "NO-SUCH-REQ-9"}, "names no requirement"},
		{[]string{"--client", "course", "--label-filter", "req:(("}, "bad label filter"},
		{[]string{"--client", "course", "LOGIN-4"}, "no case matches"},
	}
	for _, tt := range tests {
		code, stdout, stderr := stepkitRun(t, dir, append([]string{"conformance"}, tt.args...)...)
		if code != 2 || !strings.Contains(stderr, tt.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || stdout != "" {
			t.Errorf("stepkit conformance %q: exit %d, stdout %q, stderr %q; want 2 and one line with %q", tt.args, code, stdout, stderr, tt.want)
		}
	}
	code, stdout, _ := stepkitRun(t, dir, "conformance", "--client", "course", "--list")
	if code != 0 || !strings.Contains(stdout, "CLIENT-6.3") || !strings.Contains(stdout, "TOKEN-5 ") || !strings.Contains(stdout, "client cases") {
		t.Errorf("--client course --list: exit %d\n%s", code, stdout)
	}
}

// TestCourseClientTimeout: course-client takes --timeout (one dash or two)
// and refuses a value that is not positive.
func TestCourseClientTimeout(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f.bin")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--timeout", "-timeout"} {
		code, _, stderr := stepkitRun(t, dir, "course-client", "--server_ip", "127.0.0.1", "--id", "u", "-f", file, flag, "0s")
		if code != 2 || !strings.Contains(stderr, "--timeout must be positive") {
			t.Errorf("%s 0s: exit %d, stderr %q", flag, code, stderr)
		}
	}
	// A server that accepts and never answers: the client gives up after
	// its --timeout with the network exit status.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	code, _, stderr := stepkitRun(t, dir, "course-client", "--server_ip", "127.0.0.1", "--port", port, "--id", "u", "-f", file, "-timeout", "200ms")
	if code != 3 || !strings.Contains(stderr, "200ms") {
		t.Errorf("silent server: exit %d, stderr %q; want 3 naming the 200ms timeout", code, stderr)
	}
}

// TestJudgeClientBounds: --client-memory bounds the client in each case's
// sandbox, and a bound too small to run anything is refused up front.
func TestJudgeClientBounds(t *testing.T) {
	if ok, why := judge.NamespacesAvailable(); !ok {
		if os.Getenv("CI") == "true" {
			t.Fatalf("network namespaces are needed under CI: %s", why)
		}
		t.Skipf("no network namespaces here (%s); CI runs this", why)
	}
	dir := t.TempDir()
	hog := "b = bytearray(200 << 20)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\n"
	if err := os.WriteFile(filepath.Join(dir, "hog.py"), []byte(hog), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := judgeRun(t, "--client-dir", dir, "--client", "python3 hog.py {file}", "--client-memory", "64MiB", "CLIENT-5")
	if code != 1 || !strings.Contains(out, "the client never connected to the judge (killed: memory limit (64 MiB))") {
		t.Errorf("exit status %d, want 1 and the memory limit named:\n%s", code, out)
	}
	code, out, _ = judgeRun(t, "--client-dir", dir, "--client", "python3 hog.py {file}", "--client-memory", "1MiB")
	if code != 2 || !strings.Contains(out, `--client-memory "1MiB": want a size of at least 16MiB`) {
		t.Errorf("exit status %d, want 2 and the bound refused:\n%s", code, out)
	}
	code, out, _ = judgeRun(t, "--client-dir", dir, "--client", "python3 hog.py {file}", "--client-cpu", "10ms")
	if code != 2 || !strings.Contains(out, "--client-cpu 10ms: want a duration of at least 1s") {
		t.Errorf("exit status %d, want 2 and the CPU bound refused:\n%s", code, out)
	}
}
