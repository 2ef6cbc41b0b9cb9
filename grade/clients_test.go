package grade_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/grade"
)

// clientClass writes a class of clients: the fixture client (the course
// sheet's command line), the same ignoring the plan's block size, and one
// that dies at start.
func clientClass(t *testing.T) []grade.Submission {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("testdata", "stepclient.py"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"c01-good":  string(src),
		"c02-fixed": string(src),
		"c03-dies":  "import sys\nsys.exit('cannot read config.ini')\n",
	}
	roster := "id,path,run,stdin\nc01-good,,,\nc02-fixed,,python3 client.py --server_ip {host} --id {user} --f {file} --fixed-block,\nc03-dies,,,\n"
	if ok, _ := isolationAvailable(); ok {
		// Only in a sandbox: on the host, as root, the write would work.
		files["c04-outside"] = "log = open('/var/log/stepclient.log', 'a')\n"
		roster += "c04-outside,,,\n"
	}
	for id, body := range files {
		os.MkdirAll(filepath.Join(dir, id), 0o755)
		if err := os.WriteFile(filepath.Join(dir, id, "client.py"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	subs, err := grade.ReadRoster(strings.NewReader(roster), dir)
	if err != nil {
		t.Fatal(err)
	}
	return subs
}

func gradeClients(t *testing.T, subs []grade.Submission, jobs int) *grade.Class {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	class, err := grade.Run(ctx, grade.Options{Kind: grade.Clients, Submissions: subs, Jobs: jobs, Out: t.TempDir(),
		Stepkit: stepkitBin, Selectors: []string{"CLIENT-1", "CLIENT-5"}})
	if err != nil {
		t.Fatal(err)
	}
	return class
}

// TestGradeClients grades the class of clients with the client judge, one
// at a time and three at once: each row says the right thing, and the
// same thing both times.
func TestGradeClients(t *testing.T) {
	subs := clientClass(t)
	one := gradeClients(t, subs, 1)
	three := gradeClients(t, subs, 3)
	good, fixed, dies := one.Results[0], one.Results[1], one.Results[2]
	if good.Verdict != grade.Conformant || len(good.Failed) != 0 {
		t.Errorf("c01-good: %s, failed %v (%s)", good.Verdict, good.Failed, good.Problem)
	}
	if fixed.Verdict != grade.NotConformant || !contains(fixed.Failed, "CLIENT-1") {
		t.Errorf("c02-fixed: %s, failed %v, want CLIENT-1 among them", fixed.Verdict, fixed.Failed)
	}
	if dies.Verdict != grade.NotConformant || dies.Counts["PASS"] != 0 {
		t.Errorf("c03-dies: %s with %d PASS, want NOT CONFORMANT and no PASS", dies.Verdict, dies.Counts["PASS"])
	}
	ok, _ := isolationAvailable()
	if ok {
		// A client failing on the sandbox's restriction: the row says so.
		outside := one.Results[3]
		if want := "denied writing /var/log/stepclient.log: outside the submission's folder"; !strings.HasPrefix(outside.Sandbox, want) {
			t.Errorf("c04-outside: sandbox %q, want %q", outside.Sandbox, want)
		}
	}
	for i, r := range one.Results {
		if r.Isolated != ok {
			t.Errorf("%s: isolated %v, namespaces available %v", r.ID, r.Isolated, ok)
		}
		o := three.Results[i]
		if o.Verdict != r.Verdict || strings.Join(o.Failed, " ") != strings.Join(r.Failed, " ") || o.Score != r.Score {
			t.Errorf("%s: %s %v %v with --jobs 1, %s %v %v with --jobs 3", r.ID, r.Verdict, r.Failed, r.Score, o.Verdict, o.Failed, o.Score)
		}
	}
}

// TestGradeClientsBounded: the class's memory bound reaches the clients,
// which the judge runs in sandboxes of its own: a client that needs more
// is killed there, and its row says by what.
func TestGradeClientsBounded(t *testing.T) {
	if ok, why := isolationAvailable(); !ok {
		if os.Getenv("CI") == "true" {
			t.Fatalf("network namespaces are needed under CI: %s", why)
		}
		t.Skipf("no network namespaces here (%s); CI runs this", why)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "hog"), 0o755)
	hog := "b = bytearray(200 << 20)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\n"
	if err := os.WriteFile(filepath.Join(dir, "hog", "client.py"), []byte(hog), 0o644); err != nil {
		t.Fatal(err)
	}
	subs, err := grade.ReadRoster(strings.NewReader("id,path,run,stdin\nhog,,,\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	class, err := grade.Run(ctx, grade.Options{Kind: grade.Clients, Submissions: subs, Out: t.TempDir(),
		Stepkit: stepkitBin, Selectors: []string{"CLIENT-5"}, Memory: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	r := class.Results[0]
	if want := "killed: memory limit 64 MiB"; !strings.HasPrefix(r.Sandbox, want) {
		t.Errorf("hog: verdict %s, sandbox %q, problem %q: want %q", r.Verdict, r.Sandbox, r.Problem, want)
	}
}
