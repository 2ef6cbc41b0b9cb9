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
	"github.com/stepkit/stepkit/spec"
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
	testTemplate     = "./client --server {host}:{port} --user {user} --file {file} --dir {dir}"
	testTemplate1379 = "./client --server 127.0.0.1:1379 --user {user} --file {file}"
	testTemplateUp   = "./client --server {host}:{port} --user {user} --file {file}"
)

// clientDir is a client's folder holding a copy of the test binary as
// ./client: the folder is what the judge copies for each case, and the
// binary must be inside it to be seen in a namespace's private /tmp.
func clientDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	copyTestBinary(t, dir)
	return dir
}

// copyTestBinary copies the test binary into dir as ./client.
func copyTestBinary(tb testing.TB, dir string) {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	in, err := os.Open(exe)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(filepath.Join(dir, "client"), os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
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
	// The limit is well above the test client's 2 s read timeout.
	rep, err := Run(ctx, Options{Template: tp, Dir: dir, Timeout: 6 * time.Second, Isolation: iso, Selectors: selectors,
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
// CLIENT-3.2 informational, and one that is not asked to download
// CLIENT-1.5.
func wellBehaved(t *testing.T, rep *conformance.Report, pipelines, downloads bool) {
	t.Helper()
	if len(rep.Cases) != len(Cases()) {
		t.Errorf("%d cases reported, want %d", len(rep.Cases), len(Cases()))
	}
	for _, c := range rep.Cases {
		want := conformance.Pass
		if c.ID == "CLIENT-3.2" && !pipelines || c.ID == "CLIENT-1.5" && !downloads {
			want = conformance.Informational
		}
		if c.Outcome != want {
			t.Errorf("case %s: %s, want %s", c.ID, c.Outcome, want)
		}
		if (c.Client == nil || len(c.Client.Command) == 0) && want == conformance.Pass {
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
	wellBehaved(t, rep, false, true)
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
		{modeByeWait, []string{"BYE-1", "CLIENT-1.3"}, map[string]verdict{
			"BYE-1":      {conformance.Fail, []string{"BYE-1"}},
			"CLIENT-1.3": pass,
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
		{modeOwnToken, []string{"TOKEN-5"}, map[string]verdict{
			"CLIENT-5": pass,
			"TOKEN-5":  {conformance.Fail, []string{"TOKEN-5"}},
		}},
		{modeNotJSON, []string{"CLIENT-5"}, map[string]verdict{
			"CLIENT-5": {conformance.Fail, []string{"FRAME-3"}},
		}},
		{modeByeEarly, []string{"CLIENT-4"}, map[string]verdict{
			"CLIENT-4":   pass,
			"CLIENT-3.2": pass,
		}},
		{modeStaleBlock, []string{"CLIENT-5", "CLIENT-1.3"}, map[string]verdict{
			"CLIENT-5":   {conformance.Fail, []string{"CLIENT-5"}},
			"CLIENT-1.3": pass,
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

// TestHardCodedPortOnTheHost: without namespaces, a client that ignores
// {port} meets the judge on the host's 127.0.0.1:1379, one case at a time;
// when that port is taken (by another program on this machine), the case
// says so.
func TestHardCodedPortOnTheHost(t *testing.T) {
	rep := judgeClient(t, clientDir(t), testTemplate1379, modeGood, Host, "CLIENT-5", "CLIENT-6")
	if rep.Client.Port != 1379 || rep.Client.Parallel != 1 {
		t.Errorf("port %d, parallel %d: want 1379, one case at a time", rep.Client.Port, rep.Client.Parallel)
	}
	for _, c := range rep.Cases {
		taken := c.Outcome == conformance.Error && strings.Contains(c.Findings[0].Message, "port 1379 on 127.0.0.1 is in use")
		if c.Outcome != conformance.Pass && !taken {
			t.Errorf("case %s: %s %v, want PASS, or an ERROR naming port 1379", c.ID, c.Outcome, c.Findings)
		}
	}
	if t.Failed() {
		dump(t, rep)
	}
}

// TestFeatureTheTemplateLacks: a case needing a placeholder the template
// does not offer is INFORMATIONAL, and the client is not run for it.
func TestFeatureTheTemplateLacks(t *testing.T) {
	rep := judgeClient(t, clientDir(t), testTemplateUp, modeGood, Host, "CLIENT-1.5")
	c, ok := rep.Case("CLIENT-1.5")
	if !ok || c.Outcome != conformance.Informational || c.Client != nil || !strings.Contains(c.Findings[0].Message, "{dir}") {
		t.Errorf("CLIENT-1.5 without {dir}: %+v", c)
	}
	if !rep.Conformant {
		t.Error("an informational case made the client not conformant")
	}
}

func TestTemplate(t *testing.T) {
	tp, err := ParseTemplate(`sh -c './stepkit upload "$0" --user {user}' {file} --x="a b"\ c 'it''s'`)
	if err != nil {
		t.Fatal(err)
	}
	got := tp.Expand(map[string]string{"{user}": "zoë 1", "{file}": "my file.bin"})
	want := []string{"sh", "-c", `./stepkit upload "$0" --user zoë 1`, "my file.bin", "--x=a b c", "its"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("expanded %q, want %q", got, want)
	}
	if f := strings.Join(tp.Features(), " "); f != "{user} {file}" {
		t.Errorf("features %q", f)
	}
	for _, bad := range []string{"", "  ", "client -f {fil}", "client --ip {host}", `client -f {file} "x`, `client -f {file} \`} {
		if _, err := ParseTemplate(bad); err == nil {
			t.Errorf("ParseTemplate(%q) accepted", bad)
		}
	}
	if _, err := ParseTemplate(CourseTemplate); err != nil {
		t.Errorf("the course template: %v", err)
	}
}

func TestSelect(t *testing.T) {
	for _, tt := range []struct {
		filter string
		sel    []string
		want   string
	}{
		{"", []string{"CLIENT-6"}, "CLIENT-6 CLIENT-6.2 CLIENT-6.3 CLIENT-7"},
		{"", []string{"client-6.2"}, "CLIENT-6.2"},
		{"level:SHOULD", nil, "CLIENT-3 CLIENT-3.2 CLIENT-4 CLIENT-7 FRAME-2"},
		{"req:FRAME-2", nil, "FRAME-2"},
	} {
		cs, err := Select(tt.filter, tt.sel)
		if err != nil {
			t.Errorf("%q %q: %v", tt.filter, tt.sel, err)
			continue
		}
		var ids []string
		for _, c := range cs {
			ids = append(ids, c.ID)
		}
		if strings.Join(ids, " ") != tt.want {
			t.Errorf("%q %q: %v, want %s", tt.filter, tt.sel, ids, tt.want)
		}
	}
	for _, bad := range [][2]string{{"req:((", ""}, {"", "NOPE-1"}, {"", "LOGIN-4"}} {
		var sel []string
		if bad[1] != "" {
			sel = []string{bad[1]}
		}
		if _, err := Select(bad[0], sel); err == nil {
			t.Errorf("Select(%q, %v) accepted", bad[0], sel)
		}
	}
}

// TestEveryClientRequirementHasACase: the judge cites every client
// requirement of the catalogue, except MSG-3 (pairing responses by order,
// not by operation), which a judge answering in order cannot observe.
func TestEveryClientRequirementHasACase(t *testing.T) {
	cited := map[string]bool{}
	for _, c := range Cases() {
		for _, id := range c.Reqs {
			cited[id] = true
		}
	}
	for _, r := range spec.Requirements() {
		if r.Subject == spec.Client && !cited[r.ID] && r.ID != "MSG-3" {
			t.Errorf("client requirement %s has no client case", r.ID)
		}
	}
}

// needNamespaces skips a test where network namespaces cannot be made,
// except under CI, where it fails.
func needNamespaces(t *testing.T) {
	t.Helper()
	if ok, why := NamespacesAvailable(); !ok {
		if os.Getenv("CI") == "true" {
			t.Fatalf("network namespaces are needed under CI: %s", why)
		}
		t.Skipf("no network namespaces here (%s); CI runs this", why)
	}
}

// TestNamespaces: in network namespaces, a client that dials the
// hard-coded 127.0.0.1:1379 meets its own judge in every case, several at
// once, and a broken one gets the verdict it gets on the host.
func TestNamespaces(t *testing.T) {
	needNamespaces(t)
	dir := clientDir(t)
	rep := judgeClient(t, dir, testTemplate1379, modeGood, Auto)
	if rep.Client == nil || !rep.Client.Isolated || rep.Client.Port != 1379 || rep.Client.Parallel < 2 {
		t.Fatalf("client settings %+v: want isolated cases on 1379, several at once", rep.Client)
	}
	wellBehaved(t, rep, false, false)

	rep = judgeClient(t, dir, testTemplate1379, modeFixedBlock, Auto, "CLIENT-1")
	for _, c := range rep.Cases {
		want := map[string]conformance.Outcome{"CLIENT-1": conformance.Fail, "CLIENT-1.2": conformance.Fail,
			"CLIENT-1.5": conformance.Informational}[c.ID]
		if want == "" {
			want = conformance.Pass
		}
		if c.Outcome != want {
			t.Errorf("fixed-block client, case %s: %s, want %s", c.ID, c.Outcome, want)
		}
	}
	if t.Failed() {
		dump(t, rep)
	}
}

// TestStdinAndStartFailures: the client gets --stdin on its standard
// input (here the username it logs in with), and a program that cannot be
// started makes every case an ERROR saying so.
func TestStdinAndStartFailures(t *testing.T) {
	dir := clientDir(t)
	tp, err := ParseTemplate("./client --server {host}:{port} --user - --file {file}")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Options{Template: tp, Dir: dir, Isolation: Host, Selectors: []string{"CLIENT-1.3"},
		Stdin: []byte("2362202\n"), Env: []string{asTestClient + "=" + modeGood}})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := rep.Case("CLIENT-1.3")
	if c.Outcome != conformance.Pass || !strings.Contains(c.Exchange[1].JSON, `"username":"2362202"`) {
		t.Errorf("stdin: %s, LOGIN %q", c.Outcome, c.Exchange[1].JSON)
	}

	tp, err = ParseTemplate("./no-such-client --server {host}:{port} --file {file}")
	if err != nil {
		t.Fatal(err)
	}
	rep, err = Run(context.Background(), Options{Template: tp, Dir: dir, Isolation: Host})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Cases {
		if c.Outcome == conformance.Informational && c.ID == "CLIENT-1.5" {
			continue
		}
		if c.Outcome != conformance.Error || !strings.Contains(c.Findings[0].Message, "could not be started") {
			t.Errorf("case %s: %s %v, want an ERROR: could not be started", c.ID, c.Outcome, c.Findings)
		}
	}
	if rep.Conformant {
		t.Error("a client that cannot start is judged conformant")
	}
}
