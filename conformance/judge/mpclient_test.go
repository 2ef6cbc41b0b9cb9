package judge

import (
	"context"
	stdhtml "html"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/conformance"
)

// TestMultiprocessingClientPassesInTheSandbox: a Python client whose
// worker processes feed its uploader through a multiprocessing.Queue (a
// POSIX semaphore in /dev/shm) passes the course flow in a namespace as
// it does on the host network, with the fork and the spawn start methods.
func TestMultiprocessingClientPassesInTheSandbox(t *testing.T) {
	needNamespaces(t)
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 missing in CI")
		}
		t.Skip("no /usr/bin/python3")
	}
	src, err := os.ReadFile("testdata/mpclient.py")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "client.py"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	tp, err := ParseTemplate("python3 client.py --server_ip {host} --port {port} --id {user} --f {file}")
	if err != nil {
		t.Fatal(err)
	}
	for _, start := range []string{"fork", "spawn"} {
		for _, iso := range []Isolation{Auto, Host} {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			rep, err := Run(ctx, Options{Template: tp, Dir: dir, Timeout: 30 * time.Second, Isolation: iso,
				Selectors: []string{"CLIENT-5"}, Env: []string{"STEP_MP_START=" + start}})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if iso == Auto && !rep.Client.Isolated {
				t.Fatalf("the case did not run in a namespace: %+v", rep.Client)
			}
			t.Logf("%s start, isolated %v: %v", start, rep.Client.Isolated, time.Duration(rep.DurationMS*float64(time.Millisecond)))
			c, ok := rep.Case("CLIENT-5")
			if !ok {
				t.Fatal("no course-flow case in the report")
			}
			if c.Outcome != conformance.Pass {
				t.Errorf("%s start, isolated %v: course flow %s, want PASS", start, rep.Client.Isolated, c.Outcome)
				dump(t, rep)
			}
		}
	}
}

// TestClientThatWritesOutsideItsFolder: a client that fails because it
// writes a log outside its folder gets a report that says so in words,
// beside its output, rather than only the protocol findings.
func TestClientThatWritesOutsideItsFolder(t *testing.T) {
	needNamespaces(t)
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 missing in CI")
		}
		t.Skip("no /usr/bin/python3")
	}
	dir := t.TempDir()
	client := "import sys\nlog = open('/var/log/stepclient.log', 'a')\nprint('connecting', file=log)\n"
	if err := os.WriteFile(filepath.Join(dir, "client.py"), []byte(client), 0o644); err != nil {
		t.Fatal(err)
	}
	tp, err := ParseTemplate("python3 client.py --server_ip {host} --id {user} --f {file}")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{Template: tp, Dir: dir, Timeout: 20 * time.Second, Selectors: []string{"CLIENT-5"}})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := rep.Case("CLIENT-5")
	want := "denied writing /var/log/stepclient.log: outside the submission's folder"
	if c.Outcome == conformance.Pass || c.Client == nil || !strings.HasPrefix(c.Client.Sandbox, want) {
		t.Fatalf("case %s, client %+v, want the sandbox line %q", c.Outcome, c.Client, want)
	}
	if !strings.HasPrefix(rep.Sandbox, want) || !strings.HasSuffix(rep.Sandbox, "(case CLIENT-5)") {
		t.Errorf("report's sandbox line %q", rep.Sandbox)
	}
	var text, html strings.Builder
	rep.WriteText(&text, false, true)
	rep.WriteHTML(&html)
	for name, s := range map[string]string{"text": text.String(), "html": stdhtml.UnescapeString(html.String())} {
		if !strings.Contains(s, "sandbox: "+want) || !strings.Contains(s, "Read-only file system") {
			t.Errorf("the %s report lacks the sandbox line beside the client's output:\n%s", name, s)
		}
	}
}
