package grade

import (
	"bytes"
	_ "embed"
	"fmt"
	"math"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/spec"
)

// DefaultRubricYAML is the rubric used without --rubric, as shipped in
// grade/rubric.yaml.
//
//go:embed rubric.yaml
var DefaultRubricYAML []byte

// Rubric gives points per requirement and what each verdict earns of them.
type Rubric struct {
	// Total is the score of a submission that earns every point.
	Total float64 `yaml:"total"`
	// Levels gives the points of a requirement by its level (MUST, SHOULD, MAY).
	Levels map[string]float64 `yaml:"levels"`
	// Sections overrides Levels for a section prefix (FILE-UPLOAD, FILE).
	Sections map[string]float64 `yaml:"sections"`
	// Requirements overrides both for one requirement ID.
	Requirements map[string]float64 `yaml:"requirements"`
	// Credit is the fraction of the points a verdict earns.
	Credit map[string]float64 `yaml:"credit"`
}

// DefaultRubric returns the shipped rubric.
func DefaultRubric() *Rubric {
	r, err := ParseRubric(DefaultRubricYAML)
	if err != nil {
		panic("grade: the shipped rubric does not parse: " + err.Error())
	}
	return r
}

// LoadRubric reads and checks a rubric file.
func LoadRubric(path string) (*Rubric, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rubric: %w", err)
	}
	r, err := ParseRubric(b)
	if err != nil {
		return nil, fmt.Errorf("rubric %s: %w", path, err)
	}
	return r, nil
}

var verdictNames = []string{string(conformance.Pass), string(conformance.Informational), string(conformance.NonStrict),
	string(conformance.Fail), string(conformance.Error), conformance.Blocked}

// ParseRubric parses a rubric and checks every name in it against the
// catalogue, so a typo is an error rather than points silently lost.
// Entries it leaves out keep the shipped rubric's values.
func ParseRubric(b []byte) (*Rubric, error) {
	r := &Rubric{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(r); err != nil {
		return nil, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if r.Total == 0 {
		r.Total = 100
	}
	if r.Total < 0 || math.IsNaN(r.Total) || math.IsInf(r.Total, 0) {
		return nil, fmt.Errorf("total %v must be positive", r.Total)
	}
	for l, p := range r.Levels {
		if l != "MUST" && l != "SHOULD" && l != "MAY" {
			return nil, fmt.Errorf("levels: unknown level %q (MUST, SHOULD, MAY)", l)
		}
		if err := points("levels", l, p); err != nil {
			return nil, err
		}
	}
	prefixes := map[string]bool{}
	for _, p := range spec.SectionPrefixes() {
		prefixes[p] = true
		for i := strings.IndexByte(p, '-'); i > 0; i = nextDash(p, i) {
			prefixes[p[:i]] = true
		}
	}
	for s, p := range r.Sections {
		if !prefixes[s] {
			return nil, fmt.Errorf("sections: %q is no section of STEP.md (sections: %s)", s, strings.Join(spec.SectionPrefixes(), ", "))
		}
		if err := points("sections", s, p); err != nil {
			return nil, err
		}
	}
	for id, p := range r.Requirements {
		if _, ok := spec.Lookup(id); !ok {
			return nil, fmt.Errorf("requirements: %q is no requirement of STEP.md", id)
		}
		if err := points("requirements", id, p); err != nil {
			return nil, err
		}
	}
	if r.Credit == nil {
		r.Credit = map[string]float64{}
	}
	for v, c := range r.Credit {
		if !contains(verdictNames, v) {
			return nil, fmt.Errorf("credit: unknown verdict %q (%s)", v, strings.Join(verdictNames, ", "))
		}
		if c < 0 || c > 1 || math.IsNaN(c) {
			return nil, fmt.Errorf("credit: %s earns %v, want a fraction from 0 to 1", v, c)
		}
	}
	if r.Levels == nil {
		r.Levels = map[string]float64{}
	}
	for l, p := range map[string]float64{"MUST": 3, "SHOULD": 1, "MAY": 0} {
		if _, ok := r.Levels[l]; !ok {
			r.Levels[l] = p
		}
	}
	for v, c := range map[string]float64{"PASS": 1, "INFORMATIONAL": 1} {
		if _, ok := r.Credit[v]; !ok {
			r.Credit[v] = c
		}
	}
	return r, nil
}

func nextDash(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '-')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

func points(where, name string, p float64) error {
	if p < 0 || math.IsNaN(p) || math.IsInf(p, 0) {
		return fmt.Errorf("%s: %s has %v points, want 0 or more", where, name, p)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Points returns what requirement id is worth.
func (r *Rubric) Points(id string) float64 {
	if p, ok := r.Requirements[id]; ok {
		return p
	}
	req, ok := spec.Lookup(id)
	if !ok {
		return 0
	}
	best, bestLen := 0.0, -1
	sec := req.SectionPrefix()
	for s, p := range r.Sections {
		if (sec == s || strings.HasPrefix(sec, s+"-")) && len(s) > bestLen {
			best, bestLen = p, len(s)
		}
	}
	if bestLen >= 0 {
		return best
	}
	return r.Levels[string(req.Level)]
}

// Score is a submission's marks.
type Score struct {
	Earned, Possible float64
	Score            float64 // Earned / Possible × Total
}

// Score marks a run's requirement verdicts. A run without verdicts (a
// server that never started) scores 0.
func (r *Rubric) Score(verdicts []conformance.RequirementVerdict) Score {
	var s Score
	for _, v := range verdicts {
		p := r.Points(v.ID)
		s.Possible += p
		s.Earned += p * r.Credit[v.Verdict]
	}
	if s.Possible > 0 {
		s.Score = math.Round(s.Earned/s.Possible*r.Total*100) / 100
	}
	return s
}
