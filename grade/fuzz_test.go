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

// With a fuzz budget each server is fuzzed after the suite: the correct
// one shows no findings, the flawed one some, and the class report has a
// fuzz column linking each student's fuzz report.
func TestGradeFuzzColumn(t *testing.T) {
	_, subs, _ := fixtureClass(t, false)
	var picked []grade.Submission
	for _, s := range subs {
		if s.ID == "s01-stepkit" || s.ID == "s03-defect" {
			picked = append(picked, s)
		}
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	class, err := grade.Run(ctx, grade.Options{Submissions: picked, Jobs: 2, Out: out, Stepkit: stepkitBin,
		Selectors: []string{"DATA-GET"}, ReadTimeout: 1500 * time.Millisecond, StartTimeout: 5 * time.Second,
		Memory: 256 << 20, CPU: time.Minute, Fuzz: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range class.Results {
		if r.Fuzz == nil || r.Fuzz.Problem != "" {
			t.Fatalf("%s: fuzz %+v", r.ID, r.Fuzz)
		}
		if _, err := os.Stat(filepath.Join(out, "students", r.ID, r.Fuzz.Report)); err != nil {
			t.Errorf("%s: %v", r.ID, err)
		}
		switch r.ID {
		case "s01-stepkit":
			if r.Fuzz.Findings != 0 {
				t.Errorf("stepkit serve: %d fuzz findings, want none", r.Fuzz.Findings)
			}
		case "s03-defect":
			if r.Fuzz.Findings == 0 {
				t.Errorf("the flawed server: no fuzz findings")
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), ">fuzz</th>") || !strings.Contains(string(b), "students/s03-defect/fuzz/report.html") {
		t.Errorf("index.html has no fuzz column with links")
	}
}
