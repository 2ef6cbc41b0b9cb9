package grade_test

import (
	"context"
	"encoding/csv"
	"html"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/grade"
)

// fixtureSelectors keep the fixture class quick: the sections the fixture
// servers' flaws show in, and CONN-3 (two connections at once).
var fixtureSelectors = []string{"LOGIN", "DATA-GET", "CONN-1", "CONN-3"}

// student is one submission of the fixture class and what its row must say.
type student struct {
	id, run string
	verdict grade.Verdict // "" when it depends on isolation (see check)
	failed  string        // a requirement its row must list as failed
	output  string        // text its output tail must hold
	check   func(t *testing.T, r []string, isolated bool)
}

// fixtureClass writes a class folder and roster: stepkit serve and the
// Python fixture server, correct and in each of its flawed modes.
func fixtureClass(t *testing.T, withAlloc bool) (string, []grade.Submission, []student) {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("testdata", "stepserver.py"))
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(stepkitBin)
	if err != nil {
		t.Fatal(err)
	}
	students := []student{
		{id: "s01-stepkit", run: "./stepkit serve --addr 127.0.0.1:{port} --root {dir}/store", verdict: grade.Conformant},
		{id: "s02-python", run: "python3 server.py --port {port}", verdict: grade.Conformant},
		{id: "s03-defect", run: "python3 server.py --port {port} --defect", verdict: grade.NotConformant, failed: "DATA-GET-2"},
		{id: "s04-single", run: "python3 server.py --port {port} --single", verdict: grade.NotConformant, failed: "CONN-3"},
		{id: "s05-dies", run: "python3 server.py --port {port} --die", verdict: grade.DidNotStart, output: "FileNotFoundError"},
		{id: "s06-hangs", run: "python3 server.py --port {port} --hang", verdict: grade.NeverListened, output: "STEP server starting"},
		{id: "s07-only1379", run: "python3 server.py --port {port} --only-1379", check: func(t *testing.T, r []string, isolated bool) {
			// In a namespace of its own port 1379 is free and it passes; on
			// the host it is looked for on {port} and never found there.
			if isolated {
				if r[1] != string(grade.Conformant) {
					t.Errorf("s07-only1379 isolated: verdict %q, want CONFORMANT (%v)", r[1], r)
				}
				return
			}
			if r[1] != string(grade.NeverListened) && r[1] != string(grade.DidNotStart) {
				t.Errorf("s07-only1379 on the host: verdict %q, want NEVER LISTENED or DID NOT START", r[1])
			}
		}},
	}
	if withAlloc {
		// Only where memory is bounded: on the host it would take the
		// machine's memory.
		students = append(students, student{id: "s08-alloc", run: "python3 server.py --port {port} --alloc", check: func(t *testing.T, r []string, _ bool) {
			if r[1] != string(grade.Crashed) || !strings.Contains(r[13], "memory limit") || !strings.Contains(r[14], "listening on") {
				t.Errorf("s08-alloc: verdict %q, problem %q, output %q; want CRASHED, killed at the memory limit, after it listened", r[1], r[13], r[14])
			}
			if r[19] != "killed: memory limit 256 MiB" {
				t.Errorf("s08-alloc: sandbox %q, want killed: memory limit 256 MiB", r[19])
			}
		}})
		// Only in a sandbox: on the host, as root, the write would work.
		students = append(students, student{id: "s09-outside", run: "python3 server.py --port {port} --persist /var/lib",
			verdict: grade.NotConformant, output: "Read-only file system: '/var/lib/", check: func(t *testing.T, r []string, _ bool) {
				if !strings.HasPrefix(r[19], "denied writing /var/lib/") || !strings.Contains(r[19], ": outside the submission's folder") {
					t.Errorf("s09-outside: sandbox %q, want it to say the write outside its folder was denied", r[19])
				}
			}})
	}
	var roster strings.Builder
	roster.WriteString("id,path,run,stdin\n")
	for _, s := range students {
		d := filepath.Join(dir, s.id)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "server.py"), src, 0o644); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(s.run, "./stepkit") {
			if err := os.WriteFile(filepath.Join(d, "stepkit"), bin, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		roster.WriteString(s.id + "," + s.id + ",\"" + s.run + "\",\n")
	}
	subs, err := grade.ReadRoster(strings.NewReader(roster.String()), dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, subs, students
}

func gradeFixture(t *testing.T, subs []grade.Submission, jobs int) (*grade.Class, [][]string, string) {
	t.Helper()
	return gradeFixtureWith(t, subs, jobs, nil)
}

// fixtureOptions grade the fixture class quickly: its selectors, short
// timeouts and small bounds.
func fixtureOptions(subs []grade.Submission, jobs int, out string, newBox func(context.Context, grade.BoxConfig) (grade.Box, error)) grade.Options {
	return grade.Options{
		Submissions:  subs,
		Jobs:         jobs,
		Out:          out,
		Stepkit:      stepkitBin,
		Selectors:    fixtureSelectors,
		ReadTimeout:  1500 * time.Millisecond,
		StartTimeout: 5 * time.Second,
		Memory:       256 << 20,
		CPU:          time.Minute,
		NewBox:       newBox,
	}
}

func gradeFixtureWith(t *testing.T, subs []grade.Submission, jobs int, newBox func(context.Context, grade.BoxConfig) (grade.Box, error)) (*grade.Class, [][]string, string) {
	t.Helper()
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var notices []string
	o := fixtureOptions(subs, jobs, out, newBox)
	o.Notice = func(s string) { notices = append(notices, s) }
	class, err := grade.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if !class.Isolated && len(notices) != 1 {
		t.Errorf("not isolated, and %d notices, want one: %q", len(notices), notices)
	}
	f, err := os.Open(filepath.Join(out, "class.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("class.csv: %v", err)
	}
	if !reflect.DeepEqual(rows[0], grade.CSVHeader) {
		t.Fatalf("class.csv header %q", rows[0])
	}
	return class, rows[1:], out
}

// TestGradeFixtureClassOnHost grades the fixture class (without the
// server that allocates without bound) the way grading goes where
// namespaces are not available: each server on a port of its own.
func TestGradeFixtureClassOnHost(t *testing.T) {
	_, subs, students := fixtureClass(t, false)
	class, rows, out := gradeFixtureWith(t, subs, 4, grade.NewHostBox)
	if class.Isolated || !strings.Contains(class.Why, "turned off by the test") {
		t.Errorf("class isolated %v (%q), want not, with the box's reason", class.Isolated, class.Why)
	}
	checkRows(t, class, rows, out, students)
}

// TestGradeFixtureClass grades the fixture class and checks that each row
// of class.csv says the right thing, that every graded student has the
// three reports and its output, and that the JSON reports are the suite's.
func TestGradeFixtureClass(t *testing.T) {
	ok, why := isolationAvailable()
	if !ok && os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, but submissions cannot run isolated: %s", why)
	}
	_, subs, students := fixtureClass(t, ok)
	class, rows, out := gradeFixture(t, subs, 4)
	if class.Isolated != ok {
		t.Errorf("class isolated %v, but isolation available %v (%s)", class.Isolated, ok, why)
	}
	checkRows(t, class, rows, out, students)
	if !ok {
		return
	}
	// The class page and the student's own report say it beside the
	// output, not only the CSV.
	for _, page := range []string{filepath.Join(out, "index.html"), filepath.Join(out, "students", "s09-outside", "report.html")} {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(html.UnescapeString(string(b)), "sandbox: denied writing /var/lib/") {
			t.Errorf("%s lacks the sandbox line", page)
		}
	}
	rep, err := grade.ReadReport(filepath.Join(out, "students", "s09-outside", "report.json"))
	if err != nil || !strings.HasPrefix(rep.Sandbox, "denied writing /var/lib/") {
		t.Errorf("s09-outside's report.json: sandbox %q, %v", rep.Sandbox, err)
	}
}

func checkRows(t *testing.T, class *grade.Class, rows [][]string, out string, students []student) {
	t.Helper()
	if len(rows) != len(students) {
		t.Fatalf("%d rows, want %d", len(rows), len(students))
	}
	for i, s := range students {
		r := rows[i]
		if r[0] != s.id {
			t.Fatalf("row %d is %q, want %s", i, r[0], s.id)
		}
		if s.check != nil {
			s.check(t, r, class.Isolated)
		}
		if s.verdict != "" && r[1] != string(s.verdict) {
			t.Errorf("%s: verdict %q, want %q (problem %q, output %q)", s.id, r[1], s.verdict, r[13], r[14])
		}
		if s.failed != "" && !strings.Contains(" "+r[11]+" ", " "+s.failed+" ") {
			t.Errorf("%s: failed %q, want it to list %s", s.id, r[11], s.failed)
		}
		if s.output != "" && !strings.Contains(r[14], s.output) {
			t.Errorf("%s: output tail %q lacks %q", s.id, r[14], s.output)
		}
		switch grade.Verdict(r[1]) {
		case grade.Conformant:
			if r[2] != "100" || r[6] != "0" || r[11] != "" {
				t.Errorf("%s: conformant, but score %s, %s FAIL, failed %q", s.id, r[2], r[6], r[11])
			}
		case grade.NotConformant:
			if r[2] == "100" || (r[6] == "0" && r[9] == "0") {
				t.Errorf("%s: not conformant, but score %s with %s FAIL and %s ERROR", s.id, r[2], r[6], r[9])
			}
		case grade.DidNotStart, grade.NeverListened:
			if r[13] == "" || r[2] != "0" {
				t.Errorf("%s: %s without a problem, or with a score: %v", s.id, r[1], r)
			}
		}
		if r[15] != "true" && class.Isolated {
			t.Errorf("%s: isolated %q in an isolated run", s.id, r[15])
		}
		sdir := filepath.Join(out, "students", s.id)
		if _, err := os.Stat(filepath.Join(sdir, "output.txt")); err != nil {
			t.Errorf("%s: no output.txt: %v", s.id, err)
		}
		if grade.Verdict(r[1]) == grade.Conformant || grade.Verdict(r[1]) == grade.NotConformant {
			for _, name := range []string{"report.html", "report.json", "junit.xml"} {
				if _, err := os.Stat(filepath.Join(sdir, name)); err != nil {
					t.Errorf("%s: no %s: %v", s.id, name, err)
				}
			}
			b, err := os.ReadFile(filepath.Join(sdir, "report.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := conformance.ValidateReport(b); err != nil {
				t.Errorf("%s: report.json does not validate against the report's schema: %v", s.id, err)
			}
			rep, err := grade.ReadReport(filepath.Join(sdir, "report.json"))
			if err != nil {
				t.Errorf("%s: %v", s.id, err)
			} else if rep.Schema != conformance.ReportSchema {
				t.Errorf("%s: report schema %q", s.id, rep.Schema)
			}
		}
	}
	checkIndex(t, out, class)
}

// TestGradeJobsDeterministic grades the same class one at a time and
// eight at once: every verdict, count and requirement list is the same.
func TestGradeJobsDeterministic(t *testing.T) {
	if testing.Short() {
		t.Skip("grades the fixture class twice")
	}
	_, subs, _ := fixtureClass(t, false)
	_, one, _ := gradeFixture(t, subs, 1)
	_, eight, _ := gradeFixture(t, subs, 8)
	// id, verdict, score, earned, possible, the five counts; failed and
	// non-strict requirements. Not the time, nor the problem text (which
	// names a port on the host).
	cols := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12}
	for i := range one {
		for _, c := range cols {
			if one[i][c] != eight[i][c] {
				t.Errorf("%s: %s is %q with --jobs 1, %q with --jobs 8", one[i][0], grade.CSVHeader[c], one[i][c], eight[i][c])
			}
		}
	}
}
