package main

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/grade"
)

// TestGradeUsageErrors checks that every mistake on grade's command line
// is exit status 2 and one line naming it.
func TestGradeUsageErrors(t *testing.T) {
	class := t.TempDir()
	os.Mkdir(filepath.Join(class, "s1"), 0o755)
	empty := t.TempDir()
	rubric := filepath.Join(t.TempDir(), "rubric.yaml")
	os.WriteFile(rubric, []byte("levels: {MUTS: 1}\n"), 0o644)
	roster := filepath.Join(t.TempDir(), "roster.csv")
	os.WriteFile(roster, []byte("id,path\nnobody,\n"), 0o644)
	out := t.TempDir()
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"grade", "--out", out}, "exactly one of --servers, --clients and --from-reports"},
		{[]string{"grade", "--servers", class, "--clients", class, "--out", out}, "exactly one of"},
		{[]string{"grade", "--servers", class}, "grade needs --out"},
		{[]string{"grade", "--servers", empty, "--out", out}, "holds no submission"},
		{[]string{"grade", "--servers", filepath.Join(class, "nope"), "--out", out}, "class folder"},
		{[]string{"grade", "--servers", class, "--out", out, "--rubric", rubric}, `unknown level "MUTS"`},
		{[]string{"grade", "--servers", class, "--out", out, "--rubric", filepath.Join(out, "none.yaml")}, "rubric:"},
		{[]string{"grade", "--servers", class, "--out", out, "--roster", roster}, "no such folder"},
		{[]string{"grade", "--servers", class, "--out", out, "--jobs", "-1"}, "--jobs -1"},
		{[]string{"grade", "--servers", class, "--out", out, "--memory", "lots"}, `--memory "lots"`},
		{[]string{"grade", "--servers", class, "--out", out, "--start-timeout", "0s"}, "must be positive"},
		{[]string{"grade", "--servers", class, "--out", out, "NO-SUCH-SECTION"}, "names no requirement, case or section"},
		{[]string{"grade", "--servers", class, "--out", out, "--baseline", filepath.Join(class, "nope")}, "--baseline"},
		{[]string{"grade", "--from-reports", empty, "--out", out}, "holds no report"},
		{[]string{"grade", "--clients", class, "--out", out, "--serial"}, "--serial is for --servers"},
	} {
		code, stdout, stderr := runCmd(t, c.args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != exitUsage || len(lines) != 1 || !strings.Contains(stderr, c.msg) {
			t.Errorf("%q: exit %d, stderr %q (stdout %q); want exit %d and one line with %q", c.args, code, stderr, stdout, exitUsage, c.msg)
		}
	}
}

// TestGradeCommand grades a class of two servers through the command,
// a correct one (stepkit serve, from a roster line) and one that dies
// at start, then rebuilds the class reports from the students' reports
// with --from-reports.
func TestGradeCommand(t *testing.T) {
	class := t.TempDir()
	for _, id := range []string{"good", "dies"} {
		os.Mkdir(filepath.Join(class, id), 0o755)
	}
	os.WriteFile(filepath.Join(class, "dies", "server.py"), []byte("import sys\nprint('cannot open logs/server.log', file=sys.stderr)\nsys.exit(2)\n"), 0o644)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, _ := os.ReadFile(exe)
	os.WriteFile(filepath.Join(class, "good", "stepkit"), bin, 0o755)
	roster := filepath.Join(t.TempDir(), "roster.csv")
	os.WriteFile(roster, []byte("id,path,run,stdin\ngood,good,STEPKIT_TEST_RUN_MAIN=1 ./stepkit serve --addr 127.0.0.1:{port} --root store,\ndies,,,\n"), 0o644)
	out := filepath.Join(t.TempDir(), "grades")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := stepkitCmd(t, ctx, t.TempDir(), "grade", "--servers", class, "--roster", roster, "--out", out,
		"--jobs", "2", "--start-timeout", "20s", "--serial", "LOGIN", "DATA-GET")
	p.cmd.Env = append(p.cmd.Env, asStepkit+"=1")
	if err := p.cmd.Run(); err != nil {
		t.Fatalf("stepkit grade: %v\nstdout:\n%s\nstderr:\n%s", err, p.stdout.String(), p.stderr.String())
	}
	if !strings.Contains(p.stdout.String(), "2 servers in") || !strings.Contains(p.stdout.String(), "1 CONFORMANT, 1 DID NOT START") {
		t.Errorf("summary:\n%s", p.stdout.String())
	}
	if !strings.Contains(p.stderr.String(), "dies") || !strings.Contains(p.stderr.String(), "DID NOT START") {
		t.Errorf("no progress line for the server that died:\n%s", p.stderr.String())
	}
	rows := readCSV(t, filepath.Join(out, "class.csv"))
	if len(rows) != 3 || rows[1][0] != "dies" || rows[1][1] != "DID NOT START" || rows[1][13] != "exit status 2" ||
		!strings.Contains(rows[1][14], "cannot open logs/server.log") || rows[2][0] != "good" || rows[2][1] != "CONFORMANT" {
		t.Errorf("class.csv:\n%q", rows)
	}

	// --serial: the suite ran the server's cases one at a time.
	if rep, err := grade.ReadReport(filepath.Join(out, "students", "good", "report.json")); err != nil {
		t.Error(err)
	} else if rep.Execution == nil || rep.Execution.Mode != "serial" || rep.Execution.Workers != 1 {
		t.Errorf("with --serial, the suite ran %+v", rep.Execution)
	}

	// The reports collected as a course's CI would: one folder per student.
	collected := t.TempDir()
	os.MkdirAll(filepath.Join(collected, "good"), 0o755)
	b, err := os.ReadFile(filepath.Join(out, "students", "good", "junit.xml"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(collected, "good", "junit.xml"), b, 0o644)
	out2 := t.TempDir()
	code, stdout, stderr := runCmd(t, "grade", "--from-reports", collected, "--out", out2)
	if code != exitOK || !strings.Contains(stdout, "1 students") {
		t.Fatalf("grade --from-reports: exit %d\n%s%s", code, stdout, stderr)
	}
	rows2 := readCSV(t, filepath.Join(out2, "class.csv"))
	if len(rows2) != 2 || rows2[1][1] != "CONFORMANT" || rows2[1][5] != rows[2][5] {
		t.Errorf("from the JUnit report:\n%q\nfrom the run:\n%q", rows2, rows[2])
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rows
}
