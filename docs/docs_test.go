// Package docs_test runs the commands of the lab guide and the shell
// steps of the CI examples as written, against servers on 127.0.0.1 in a
// network namespace of their own (port 1379 there is the test's).
package docs_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/stepkit/stepkit/grade"
	"github.com/stepkit/stepkit/internal/testbin"
)

// stepkitBin is the stepkit binary the documents' commands run: its
// folder goes first on their PATH.
var stepkitBin string

func TestMain(m *testing.M) { os.Exit(testbin.Run(m, &stepkitBin)) }

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

// shBlocks returns the fenced ```sh blocks of a Markdown file.
func shBlocks(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []string
	var cur *strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```sh":
			cur = &strings.Builder{}
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	if len(blocks) == 0 {
		t.Fatalf("%s has no sh block", path)
	}
	return blocks
}

// inNamespace runs a bash script in dir inside a network namespace of its
// own (loopback up, nothing else), with stepkit on the PATH. With pidns,
// also in a PID namespace, so that every process the script leaves
// behind dies with it; without, the script must stop what it starts (the
// client judge's own sandboxes do not work inside a PID namespace that
// holds other processes).
func inNamespace(t *testing.T, dir, script string, pidns bool) (string, error) {
	t.Helper()
	bwrap := requireTool(t, "bwrap")
	path := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--unshare-net", "--die-with-parent", "--dev-bind", "/", "/", "--chdir", dir}
	if pidns {
		args = append(args, "--unshare-pid", "--proc", "/proc")
	}
	cmd := exec.Command(bwrap, append(args, "--", "bash", path)...)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(stepkitBin)+":"+os.Getenv("PATH"), "HOME="+dir, "NO_COLOR=1")
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(4 * time.Minute): // bound: a hung step fails the test
			cmd.Process.Kill()
		}
	}()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// TestLabGuide runs every sh block of docs/lab-guide.md in order, in one
// shell, as a student would: the client and server are the small Python
// programs written for stepkit's tests.
func TestLabGuide(t *testing.T) {
	requireTool(t, "tcpdump")
	requireTool(t, "python3")
	dir := t.TempDir()
	copyFile(t, filepath.Join("..", "grade", "testdata", "stepclient.py"), filepath.Join(dir, "client.py"), 0o644)
	copyFile(t, filepath.Join("..", "grade", "testdata", "stepserver.py"), filepath.Join(dir, "server.py"), 0o644)
	// Whatever the guide leaves running when a step fails is stopped.
	script := "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\nset -e\n" + strings.Join(shBlocks(t, "lab-guide.md"), "")
	out, err := inNamespace(t, dir, script, false)
	if err != nil {
		t.Fatalf("the lab guide's commands failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"uploaded report.bin (50000 bytes, 3 blocks)", // the client ran against the reference server
		"the file on the wire is the file on disk",    // dump --extract rebuilt it
		"LOGIN", "SAVE", "UPLOAD", // dump's lines
		`UPLOAD FILE key="notes.bin"`, "packets captured, 0 dropped by the kernel", // dump -i lo
		"NOT CONFORMANT", "exit status 1", // the suite judged the (partial) server
		"FRAME-2", // stepkit spec
		// stepkit sandbox check
		"can     bind 127.0.0.1:1379", "can     write /dev/shm",
		"FAILURE SHOWN", // the fuzzer's reproducer, against the partial server
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the guide's output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"client.pcap", "live.pcapng", "ladder.html", "client-report.html", "server-report.html", "server-report.json", "fuzz-report/report.html"} {
		if info, err := os.Stat(filepath.Join(dir, f)); err != nil || info.Size() == 0 {
			t.Errorf("the guide did not make %s: %v", f, err)
		}
	}
	if _, err := grade.ReadReport(filepath.Join(dir, "server-report.json")); err != nil {
		t.Errorf("server-report.json: %v", err)
	}
}

// studentRepo is a student's repository with a correct server.py (a
// wrapper around stepkit serve) and a correct client.py (the fixture
// client), so that the CI steps succeed.
func studentRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	py := "import os\nos.execvp('stepkit', ['stepkit', 'serve', '--addr', '127.0.0.1:1379', '--root', 'store'])\n"
	if err := os.WriteFile(filepath.Join(dir, "server.py"), []byte(py), 0o644); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join("..", "grade", "testdata", "stepclient.py"), filepath.Join(dir, "client.py"), 0o644)
	return dir
}

// TestGitHubActionsExample runs the shell steps of each job of
// docs/ci/github-actions.yml (each step in a shell of its own, as the
// runner does) but the one installing stepkit, which the test has built,
// then builds the class reports from what they left.
func TestGitHubActionsExample(t *testing.T) {
	requireTool(t, "python3")
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				Name string `yaml:"name"`
				Uses string `yaml:"uses"`
				Run  string `yaml:"run"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	b, err := os.ReadFile(filepath.Join("ci", "github-actions.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &wf); err != nil {
		t.Fatalf("github-actions.yml: %v", err)
	}
	for name, reports := range map[string][2]string{
		"server": {"reports/server-report.json", "reports/server-junit.xml"},
		"client": {"reports/client-report.json", "reports/client-junit.xml"},
	} {
		t.Run(name, func(t *testing.T) {
			job, ok := wf.Jobs[name]
			if !ok {
				t.Fatalf("github-actions.yml has no %s job", name)
			}
			dir := studentRepo(t)
			var script strings.Builder
			script.WriteString("export GITHUB_PATH=$(mktemp)\n")
			n := 0
			for _, s := range job.Steps {
				if s.Run == "" || s.Name == "Install stepkit" {
					continue
				}
				n++
				fmt.Fprintf(&script, "echo '== %s'\nbash -e <<'STEP'\n%sSTEP\n[ $? -eq 0 ] || { echo 'step failed: %s'; exit 1; }\n", s.Name, s.Run, s.Name)
			}
			if n == 0 {
				t.Fatalf("the %s job has no shell step besides the install", name)
			}
			// The server job leaves its server running, as on a runner: a
			// PID namespace stops it. The client job leaves nothing, and the
			// judge's own sandboxes want no PID namespace around them.
			out, err := inNamespace(t, dir, script.String(), name == "server")
			if err != nil {
				t.Fatalf("the %s job's steps failed: %v\n%s", name, err, out)
			}
			checkCollected(t, dir, filepath.FromSlash(reports[0]), filepath.FromSlash(reports[1]), out)
		})
	}
}

// TestGitLabCIExample runs the script of each job of docs/ci/gitlab-ci.yml
// in one shell, as GitLab's runner does (before_script installs stepkit,
// which the test has built).
func TestGitLabCIExample(t *testing.T) {
	requireTool(t, "python3")
	var jobs map[string]struct {
		Script []string `yaml:"script"`
	}
	b, err := os.ReadFile(filepath.Join("ci", "gitlab-ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &jobs); err != nil {
		t.Fatalf("gitlab-ci.yml: %v", err)
	}
	for name, reports := range map[string][2]string{
		"step-conformance":        {"reports/report.json", "reports/junit.xml"},
		"step-client-conformance": {"reports/client-report.json", "reports/client-junit.xml"},
	} {
		t.Run(name, func(t *testing.T) {
			job, ok := jobs[name]
			if !ok || len(job.Script) == 0 {
				t.Fatalf("gitlab-ci.yml has no %s script", name)
			}
			dir := studentRepo(t)
			out, err := inNamespace(t, dir, "set -e\n"+strings.Join(job.Script, "\n")+"\n", name == "step-conformance")
			if err != nil {
				t.Fatalf("the job's script failed: %v\n%s", err, out)
			}
			checkCollected(t, dir, filepath.FromSlash(reports[0]), filepath.FromSlash(reports[1]), out)
		})
	}
}

// checkCollected builds a class from the reports a CI run left, the JSON
// one as one student and the JUnit one as another: both conformant.
func checkCollected(t *testing.T, dir, jsonReport, junitReport, out string) {
	t.Helper()
	collected := t.TempDir()
	copyFile(t, filepath.Join(dir, jsonReport), filepath.Join(collected, "s1.json"), 0o644)
	copyFile(t, filepath.Join(dir, junitReport), filepath.Join(collected, "s2.xml"), 0o644)
	class, err := grade.FromReports(collected, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, r := range class.Results {
		if r.Verdict != grade.Conformant {
			t.Errorf("%s: %s %s, want CONFORMANT\n%s", r.ID, r.Verdict, r.Problem, out)
		}
	}
}
