package grade_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/grade"
)

// TestBaseline grades a correct and a defective server against the
// defective one as baseline: the correct one does better where the
// baseline fails, the defective one reproduces the baseline's bug.
func TestBaseline(t *testing.T) {
	_, subs, _ := fixtureClass(t, false)
	var pick []grade.Submission
	var base grade.Submission
	for _, s := range subs {
		switch s.ID {
		case "s02-python", "s03-defect":
			pick = append(pick, s)
		}
		if s.ID == "s03-defect" {
			base = s
			base.ID = "baseline"
		}
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	class, err := grade.Run(ctx, grade.Options{Submissions: pick, Baseline: &base, Jobs: 2, Out: out, Stepkit: stepkitBin,
		Selectors: fixtureSelectors, ReadTimeout: 1500 * time.Millisecond, StartTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	good, bad := class.Results[0], class.Results[1]
	if !contains(good.Better, "DATA-GET-2") || len(good.Worse) != 0 || len(good.SameBugs) != 0 {
		t.Errorf("correct server against the baseline: better %v, worse %v, same bugs %v", good.Better, good.Worse, good.SameBugs)
	}
	if !contains(bad.SameBugs, "DATA-GET-2") || len(bad.Better) != 0 || len(bad.Worse) != 0 {
		t.Errorf("defective server against the baseline: better %v, worse %v, same bugs %v", bad.Better, bad.Worse, bad.SameBugs)
	}
	csv, _ := os.ReadFile(filepath.Join(out, "class.csv"))
	if !strings.Contains(string(csv), "\nbaseline,NOT CONFORMANT,") {
		t.Errorf("class.csv has no baseline row:\n%s", csv)
	}
	page, _ := os.ReadFile(filepath.Join(out, "index.html"))
	if !regexp.MustCompile(`reproduces the baseline(&#39;|')s bug in [^<]*DATA-GET-2`).Match(page) {
		t.Errorf("index.html does not tell s03-defect it reproduces the baseline's bug")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestFromReports builds a class from a JSON report and the JUnit report
// of the same run, and from a report that cannot be read: the JUnit row
// says what the JSON row says, the broken one says why.
func TestFromReports(t *testing.T) {
	dir := t.TempDir()
	srv := t.TempDir()
	src, _ := os.ReadFile(filepath.Join("testdata", "stepserver.py"))
	os.WriteFile(filepath.Join(srv, "server.py"), src, 0o644)
	port := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	server := exec.CommandContext(ctx, "python3", "server.py", "--port", port, "--defect")
	server.Dir = srv
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { server.Process.Kill(); server.Wait() }()
	waitPort(t, "127.0.0.1:"+port)
	os.MkdirAll(filepath.Join(dir, "alice"), 0o755)
	run := exec.CommandContext(ctx, stepkitBin, append([]string{"conformance", "--target", "127.0.0.1:" + port,
		"--json-report", filepath.Join(dir, "alice", "report.json"), "--junit-report", filepath.Join(dir, "bob.xml")}, fixtureSelectors...)...)
	if out, err := run.CombinedOutput(); err == nil || !strings.Contains(string(out), "NOT CONFORMANT") {
		t.Fatalf("conformance of the defective server: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(dir, "carol.json"), []byte(`{"schema":"something-else/1"}`), 0o644)
	os.MkdirAll(filepath.Join(dir, "dave"), 0o755)
	class, err := grade.FromReports(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(class.Results) != 4 {
		t.Fatalf("%d rows, want 4", len(class.Results))
	}
	alice, bob, carol, dave := class.Results[0], class.Results[1], class.Results[2], class.Results[3]
	if alice.Verdict != grade.NotConformant || !contains(alice.Failed, "DATA-GET-2") {
		t.Errorf("alice (JSON): %s, failed %v", alice.Verdict, alice.Failed)
	}
	if bob.Verdict != alice.Verdict || !reflect.DeepEqual(bob.Failed, alice.Failed) || !reflect.DeepEqual(bob.NonStrict, alice.NonStrict) ||
		!reflect.DeepEqual(bob.Counts, alice.Counts) || bob.Score != alice.Score {
		t.Errorf("bob (JUnit of the same run) differs from alice (JSON):\n%s %v %v %v %+v\n%s %v %v %v %+v",
			bob.Verdict, bob.Failed, bob.NonStrict, bob.Counts, bob.Score, alice.Verdict, alice.Failed, alice.NonStrict, alice.Counts, alice.Score)
	}
	if carol.Verdict != grade.GraderError || !strings.Contains(carol.Problem, "not a stepkit conformance report") {
		t.Errorf("carol: %s %q", carol.Verdict, carol.Problem)
	}
	if dave.Verdict != grade.GraderError || !strings.Contains(dave.Problem, "no report in") {
		t.Errorf("dave: %s %q", dave.Verdict, dave.Problem)
	}
	out := t.TempDir()
	if err := class.WriteReports(out); err != nil {
		t.Fatal(err)
	}
	checkIndexFromReports(t, out)
}

func checkIndexFromReports(t *testing.T, out string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "class.csv"))
	if err != nil || strings.Count(string(b), "\n") != 5 {
		t.Errorf("class.csv: %v\n%s", err, b)
	}
}
