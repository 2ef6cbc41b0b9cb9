package judge

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/conformance"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(asTestClient); mode != "" {
		os.Exit(testClient(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// testTemplate runs the test client; hard-coded-port variants leave out
// {port} and dial 127.0.0.1:1379.
const (
	testTemplate     = "./client --server {host}:{port} --user {user} --file {file}"
	testTemplate1379 = "./client --server 127.0.0.1:1379 --user {user} --file {file}"
)

// clientDir is a client's folder holding a copy of the test binary as
// ./client: the folder is what the judge copies for each case, and the
// binary must be inside it to be seen in a namespace's private /tmp.
func clientDir(t *testing.T) string {
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
	out, err := os.OpenFile(filepath.Join(dir, "client"), os.O_CREATE|os.O_WRONLY, 0o755)
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

// judgeClient runs the selected cases against the test client in mode.
func judgeClient(t *testing.T, dir, tmpl, mode string, iso Isolation, selectors ...string) *conformance.Report {
	t.Helper()
	tp, err := ParseTemplate(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{Template: tp, Dir: dir, Timeout: 10 * time.Second, Isolation: iso, Selectors: selectors,
		Env: []string{asTestClient + "=" + mode, "GORACE=atexit_sleep_ms=0"}})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// dump shows a report in the test log when the test fails.
func dump(t *testing.T, rep *conformance.Report) {
	t.Helper()
	var b strings.Builder
	rep.WriteText(&b, false, true)
	t.Log("\n" + b.String())
}

// wellBehaved asserts the verdict on a client that does everything right:
// every case passes, except that a client that never pipelines leaves
// CLIENT-3.2 informational.
func wellBehaved(t *testing.T, rep *conformance.Report, pipelines bool) {
	t.Helper()
	if len(rep.Cases) != len(Cases()) {
		t.Errorf("%d cases reported, want %d", len(rep.Cases), len(Cases()))
	}
	for _, c := range rep.Cases {
		want := conformance.Pass
		if c.ID == "CLIENT-3.2" && !pipelines {
			want = conformance.Informational
		}
		if c.Outcome != want {
			t.Errorf("case %s: %s, want %s", c.ID, c.Outcome, want)
		}
		if c.Client == nil || len(c.Client.Command) == 0 {
			t.Errorf("case %s: no client run in the report", c.ID)
		}
	}
	if !rep.Conformant {
		t.Error("a well-behaved client is judged not conformant")
	}
	if t.Failed() {
		dump(t, rep)
	}
}

func TestWellBehavedClientOnTheHostNetwork(t *testing.T) {
	rep := judgeClient(t, clientDir(t), testTemplate, modeGood, Host)
	wellBehaved(t, rep, false)
	if rep.Client == nil || rep.Client.Isolated || rep.Client.Port != 0 || rep.Mode != "client" {
		t.Errorf("client settings %+v, mode %q: want a host run on free ports", rep.Client, rep.Mode)
	}
}

// TestBrokenClients runs each deliberately broken client on the cases that
// matter and asserts that the requirement it breaks is reported, with the
// right outcome, by the right case, and that the cases it does not break
// pass.
func TestBrokenClients(t *testing.T) {
	dir := clientDir(t)
	type verdict struct {
		outcome conformance.Outcome
		broken  []string
	}
	pass := verdict{outcome: conformance.Pass}
	tests := []struct {
		mode      string
		selectors []string
		want      map[string]verdict
	}{
		{modeOneRecv, []string{"CLIENT-3", "CLIENT-5"}, map[string]verdict{
			"CLIENT-3": {conformance.Fail, []string{"CLIENT-3", "FRAME-4"}},
			"CLIENT-5": pass,
		}},
		{modeFixedBlock, []string{"CLIENT-1"}, map[string]verdict{
			"CLIENT-1":   {conformance.Fail, []string{"CLIENT-1"}},
			"CLIENT-1.2": {conformance.Fail, []string{"CLIENT-1"}},
			"CLIENT-1.3": pass,
			"CLIENT-1.4": pass,
		}},
		{modeCharCount, []string{"FRAME-2", "CLIENT-5"}, map[string]verdict{
			"FRAME-2":  {conformance.Fail, []string{"CLIENT-3", "FRAME-2"}},
			"CLIENT-5": pass,
		}},
		{modeLiar, []string{"CLIENT-6", "CLIENT-2", "CLIENT-5"}, map[string]verdict{
			"CLIENT-6":   {conformance.Fail, []string{"CLIENT-6"}},
			"CLIENT-6.2": {conformance.Fail, []string{"CLIENT-6"}},
			"CLIENT-6.3": {conformance.Fail, []string{"CLIENT-6"}},
			"CLIENT-2":   {conformance.Fail, []string{"CLIENT-2"}},
			"CLIENT-5":   pass,
		}},
		{modeNoTimeout, []string{"CLIENT-7"}, map[string]verdict{
			"CLIENT-7": {conformance.NonStrict, []string{"CLIENT-7"}},
		}},
		{modePipeline, []string{"CLIENT-4", "CLIENT-3.2"}, map[string]verdict{
			"CLIENT-4":   {conformance.NonStrict, []string{"CLIENT-4"}},
			"CLIENT-3.2": pass,
		}},
		{modeBadPassword, []string{"CLIENT-5"}, map[string]verdict{
			"CLIENT-5": {conformance.Fail, []string{"CLIENT-8"}},
		}},
		{modeTokenless, []string{"CLIENT-5"}, map[string]verdict{
			"CLIENT-5": {conformance.Fail, []string{"TOKEN-5"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			rep := judgeClient(t, dir, testTemplate, tt.mode, Host, tt.selectors...)
			seen := map[string]bool{}
			for _, c := range rep.Cases {
				w, ok := tt.want[c.ID]
				if !ok {
					continue
				}
				seen[c.ID] = true
				if c.Outcome != w.outcome || strings.Join(c.Broken, ",") != strings.Join(w.broken, ",") {
					t.Errorf("case %s: %s broken %v, want %s broken %v", c.ID, c.Outcome, c.Broken, w.outcome, w.broken)
				}
				for _, f := range c.Findings {
					if f.Outcome == conformance.Fail && f.Received == "" && f.Expected == "" {
						t.Errorf("case %s: a FAIL without evidence: %+v", c.ID, f)
					}
				}
			}
			for id := range tt.want {
				if !seen[id] {
					t.Errorf("case %s was not run", id)
				}
			}
			mustFail := false
			for _, w := range tt.want {
				mustFail = mustFail || w.outcome == conformance.Fail
			}
			if rep.Conformant == mustFail {
				t.Errorf("conformant: %v, want %v", rep.Conformant, !mustFail)
			}
			if t.Failed() {
				dump(t, rep)
			}
		})
	}
}
