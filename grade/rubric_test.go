package grade_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/grade"
)

// TestDefaultRubric checks the shipped rubric parses and is the file in
// the repository.
func TestDefaultRubric(t *testing.T) {
	r := grade.DefaultRubric()
	if r.Total != 100 || r.Points("LOGIN-4") != 3 || r.Points("LOGIN-7") != 1 || r.Points("EARTH-1") != 0 {
		t.Errorf("default rubric: total %v, LOGIN-4 %v, LOGIN-7 %v, EARTH-1 %v", r.Total, r.Points("LOGIN-4"), r.Points("LOGIN-7"), r.Points("EARTH-1"))
	}
	b, err := os.ReadFile("rubric.yaml")
	if err != nil || string(b) != string(grade.DefaultRubricYAML) {
		t.Errorf("the embedded rubric is not grade/rubric.yaml (%v)", err)
	}
}

// TestRubricPoints checks the order of precedence (requirement, longest
// section prefix, level) and the score of a set of verdicts.
func TestRubricPoints(t *testing.T) {
	r, err := grade.ParseRubric([]byte(`
total: 10
levels: {MUST: 2, SHOULD: 1}
sections: {FILE: 5, FILE-UPLOAD: 4}
requirements: {FILE-UPLOAD-2: 9}
credit: {NON-STRICT: 0.5}
`))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]float64{"FILE-UPLOAD-2": 9, "FILE-UPLOAD-1": 4, "FILE-GET-1": 5, "LOGIN-4": 2, "LOGIN-7": 1, "EARTH-1": 0} {
		if got := r.Points(id); got != want {
			t.Errorf("%s: %v points, want %v", id, got, want)
		}
	}
	s := r.Score([]conformance.RequirementVerdict{
		{ID: "LOGIN-4", Verdict: "PASS"},       // 2 of 2
		{ID: "LOGIN-7", Verdict: "NON-STRICT"}, // 0.5 of 1
		{ID: "FILE-GET-1", Verdict: "FAIL"},    // 0 of 5
		{ID: "REQ-1", Verdict: "BLOCKED"},      // 0 of 2
	})
	if s.Earned != 2.5 || s.Possible != 10 || s.Score != 2.5 {
		t.Errorf("score %+v, want 2.5 of 10 scaled to 2.5", s)
	}
}

// TestRubricErrors checks that every mistake in a hand-edited rubric is
// an error naming it.
func TestRubricErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"levels: {MUTS: 2}", `unknown level "MUTS"`},
		{"sections: {FIEL: 2}", `"FIEL" is no section`},
		{"requirements: {LOGIN-99: 2}", `"LOGIN-99" is no requirement`},
		{"requirements: {LOGIN-4: -1}", "want 0 or more"},
		{"credit: {PASS: 2}", "want a fraction from 0 to 1"},
		{"credit: {PASSED: 1}", `unknown verdict "PASSED"`},
		{"total: -5", "must be positive"},
		{"points: 3", "field points not found"},
		{"levels: [1, 2]", "cannot unmarshal"},
		{"total: [", "did not find expected node content"},
	} {
		_, err := grade.ParseRubric([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one with %q", c.yaml, err, c.want)
		}
	}
}
