package grade

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/conformance/judge"
	"github.com/stepkit/stepkit/spec"
)

// FromReports builds a class from reports collected elsewhere, for
// example by each student's CI: dir/ID/ holding report.json (or another
// JSON report, or a JUnit XML report), or dir/ID.json and dir/ID.xml.
// A student whose report cannot be read gets a row saying why.
func FromReports(dir string, rubric *Rubric) (*Class, error) {
	if rubric == nil {
		rubric = DefaultRubric()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reports folder: %w", err)
	}
	class := &Class{Kind: Servers, Rubric: rubric, Started: time.Now(), Jobs: 1, Isolated: true}
	seen := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		id := name
		if !e.IsDir() {
			ext := filepath.Ext(name)
			if ext != ".json" && ext != ".xml" {
				continue
			}
			id = strings.TrimSuffix(name, ext)
		} else if path, err = pickReport(path); err != nil {
			class.Results = append(class.Results, &Result{ID: id, Verdict: GraderError, Problem: err.Error(), Counts: map[conformance.Outcome]int{}})
			seen[id] = true
			continue
		}
		if !validID().MatchString(id) {
			return nil, fmt.Errorf("reports folder: %q is not a usable student id (letters, digits, . _ @ + -)", id)
		}
		if seen[id] {
			return nil, fmt.Errorf("reports folder: two reports for %s", id)
		}
		seen[id] = true
		r := &Result{ID: id, Isolated: true}
		rep, err := ReadReport(path)
		if err != nil {
			r.Verdict, r.Problem, r.Counts = GraderError, err.Error(), map[conformance.Outcome]int{}
		} else {
			r.fill(rep, rubric)
			r.Duration = time.Duration(rep.DurationMS * float64(time.Millisecond))
		}
		class.Results = append(class.Results, r)
	}
	if len(class.Results) == 0 {
		return nil, fmt.Errorf("reports folder %s holds no report (ID/report.json, ID/*.xml, ID.json or ID.xml)", dir)
	}
	sort.Slice(class.Results, func(i, j int) bool { return class.Results[i].ID < class.Results[j].ID })
	for _, r := range class.Results {
		if r.Report != nil && len(r.Report.Cases) > 0 && r.Report.Cases[0].Section == "CLIENT" {
			class.Kind = Clients // reports of the client judge
		}
	}
	for _, r := range class.Results {
		class.Duration += r.Duration
	}
	return class, nil
}

// pickReport finds the report in a student's folder: report.json, else
// the one JSON file, else the one XML file.
func pickReport(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "report.json")); err == nil {
		return filepath.Join(dir, "report.json"), nil
	}
	for _, pat := range []string{"*.json", "*.xml"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		switch len(m) {
		case 0:
			continue
		case 1:
			return m[0], nil
		default:
			return "", fmt.Errorf("%d %s files in %s, and no report.json: which is the report?", len(m), pat, dir)
		}
	}
	return "", fmt.Errorf("no report in %s (report.json or a JUnit .xml)", dir)
}

// ReadReport reads a JSON report of stepkit conformance, or rebuilds one
// from its JUnit report.
func ReadReport(path string) (*conformance.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	trim := bytes.TrimSpace(b)
	if len(trim) > 0 && trim[0] == '{' {
		rep := &conformance.Report{}
		if err := json.Unmarshal(b, rep); err != nil {
			return nil, fmt.Errorf("%s: not a JSON report: %v", filepath.Base(path), err)
		}
		if !strings.HasPrefix(rep.Schema, "stepkit-conformance/") {
			return nil, fmt.Errorf("%s: schema %q is not a stepkit conformance report", filepath.Base(path), rep.Schema)
		}
		if err := conformance.ValidateReport(b); err != nil {
			return nil, fmt.Errorf("%s: %v", filepath.Base(path), err)
		}
		if len(rep.Cases) == 0 {
			return nil, fmt.Errorf("%s: the report holds no case", filepath.Base(path))
		}
		return rep, nil
	}
	rep, err := fromJUnit(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", filepath.Base(path), err)
	}
	return rep, nil
}

type xmlSuites struct {
	XMLName xml.Name   `xml:"testsuites"`
	Name    string     `xml:"name,attr"`
	Time    float64    `xml:"time,attr"`
	Suites  []xmlSuite `xml:"testsuite"`
}

type xmlSuite struct {
	Name  string    `xml:"name,attr"`
	Cases []xmlCase `xml:"testcase"`
}

type xmlCase struct {
	Name       string        `xml:"name,attr"`
	Properties []xmlProperty `xml:"properties>property"`
	Time       float64       `xml:"time,attr"`
	Failure    *xmlProblem   `xml:"failure"`
	Error      *xmlProblem   `xml:"error"`
	Skipped    *xmlProblem   `xml:"skipped"`
	SystemOut  string        `xml:"system-out"`
}

type xmlProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type xmlProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",chardata"`
}

var (
	caseIDInName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\[([A-Z][A-Z0-9-]*-[0-9]+(?:\.[0-9]+)?)\]`) })
	findingLine  = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(FAIL|NON-STRICT|INFORMATIONAL|ERROR)(?: ([A-Z][A-Z0-9-]*-[0-9]+) \((MUST|SHOULD|MAY)\))?: (.*)$`)
	})
)

// fromJUnit rebuilds a report from stepkit's JUnit XML: the case from the
// [ID] in each test's name, its outcome from the failure or error element
// and the findings written in the test's text.
func fromJUnit(b []byte) (*conformance.Report, error) {
	var doc xmlSuites
	if err := xml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("not a JUnit report: %v", err)
	}
	// Server cases and client cases: a report is one or the other.
	type caseInfo struct {
		section, title string
		reqs           []string
	}
	cases := map[string]caseInfo{}
	for _, c := range conformance.Cases() {
		cases[c.ID] = caseInfo{c.Section, c.Title, c.Reqs}
	}
	for _, c := range judge.Cases() {
		cases[c.ID] = caseInfo{c.Section, c.Title, c.Reqs}
	}
	rep := &conformance.Report{Schema: conformance.ReportSchema, Target: strings.TrimPrefix(doc.Name, "STEP conformance of "),
		DurationMS: doc.Time * 1000}
	for _, s := range doc.Suites {
		for _, tc := range s.Cases {
			m := caseIDInName().FindStringSubmatch(tc.Name)
			if m == nil {
				return nil, fmt.Errorf("test %q names no conformance case ([ID])", tc.Name)
			}
			c, ok := cases[m[1]]
			if !ok {
				// A case this stepkit does not know: newer reports name the
				// requirements it cites.
				for _, p := range tc.Properties {
					if p.Name == "requirements" {
						c = caseInfo{s.Name, strings.TrimSpace(tc.Name[strings.Index(tc.Name, "]")+1:]), strings.Fields(strings.ReplaceAll(p.Value, ",", " "))}
						ok = len(c.reqs) > 0
					}
				}
			}
			if !ok {
				return nil, fmt.Errorf("test %q: no case %s in this stepkit's suites", tc.Name, m[1])
			}
			cr := conformance.CaseReport{ID: m[1], Section: c.section, Title: c.title, DurationMS: tc.Time * 1000, Outcome: conformance.Pass}
			for _, id := range c.reqs {
				req, _ := spec.Lookup(id)
				cr.Requirements = append(cr.Requirements, conformance.RequirementRef{ID: id, Level: string(req.Level), Text: req.Text})
			}
			body := tc.SystemOut
			switch {
			case tc.Failure != nil:
				body = tc.Failure.Body
				cr.Outcome = conformance.Fail
				if tc.Failure.Type == string(conformance.NonStrict) {
					cr.Outcome = conformance.NonStrict
					rep.Strict = true
				}
			case tc.Error != nil:
				body = tc.Error.Body
				cr.Outcome = conformance.Error
			}
			for _, line := range strings.Split(body, "\n") {
				if line == "exchange:" {
					break
				}
				f := findingLine().FindStringSubmatch(line)
				if f == nil {
					continue
				}
				fd := conformance.Finding{Outcome: conformance.Outcome(f[1]), Requirement: f[2], Level: f[3], Message: f[4]}
				cr.Findings = append(cr.Findings, fd)
				if fd.Requirement != "" && !contains(cr.Broken, fd.Requirement) {
					cr.Broken = append(cr.Broken, fd.Requirement)
				}
				if tc.Failure == nil && tc.Error == nil {
					cr.Outcome = worse(cr.Outcome, fd.Outcome) // a passing test: its findings say how well
				}
			}
			for _, p := range tc.Properties {
				// Newer reports name each test's outcome: it wins over what
				// the failure element and the findings suggest.
				if p.Name == "outcome" && isOutcome(p.Value) {
					cr.Outcome = conformance.Outcome(p.Value)
				}
			}
			rep.Cases = append(rep.Cases, cr)
		}
	}
	if len(rep.Cases) == 0 {
		return nil, errors.New("the JUnit report holds no test")
	}
	tally(rep)
	return rep, nil
}

// worse returns the worse of two outcomes, INFORMATIONAL worse than PASS.
func worse(a, b conformance.Outcome) conformance.Outcome {
	order := map[conformance.Outcome]int{conformance.Pass: 0, conformance.Informational: 1, conformance.NonStrict: 2, conformance.Fail: 3, conformance.Error: 4}
	if order[b] > order[a] {
		return b
	}
	return a
}

// tally computes a rebuilt report's counts, requirement verdicts and
// conformance as stepkit conformance does.
func tally(r *conformance.Report) {
	r.Counts = map[conformance.Outcome]int{}
	for _, o := range conformance.Outcomes() {
		r.Counts[o] = 0
	}
	secs := map[string]map[conformance.Outcome]int{}
	var secOrder []string
	type acc struct {
		v     conformance.RequirementVerdict
		worst conformance.Outcome
		found bool
		ran   bool
	}
	byID := map[string]*acc{}
	var order []string
	get := func(id, level string) *acc {
		a := byID[id]
		if a == nil {
			a = &acc{v: conformance.RequirementVerdict{ID: id, Level: level}}
			byID[id] = a
			order = append(order, id)
		}
		return a
	}
	for _, c := range r.Cases {
		r.Counts[c.Outcome]++
		if secs[c.Section] == nil {
			secs[c.Section] = map[conformance.Outcome]int{}
			secOrder = append(secOrder, c.Section)
		}
		secs[c.Section][c.Outcome]++
		for _, ref := range c.Requirements {
			a := get(ref.ID, ref.Level)
			a.v.Cases = append(a.v.Cases, c.ID)
			if c.Outcome != conformance.Fail && c.Outcome != conformance.Error {
				a.ran = true
			}
		}
		for _, f := range c.Findings {
			if f.Requirement == "" {
				continue
			}
			a := get(f.Requirement, f.Level)
			if !a.found || worse(a.worst, f.Outcome) != a.worst {
				a.worst = f.Outcome
			}
			a.found = true
			if n := len(a.v.Broken); n == 0 || a.v.Broken[n-1] != c.ID {
				a.v.Broken = append(a.v.Broken, c.ID)
			}
		}
	}
	for _, s := range secOrder {
		r.Sections = append(r.Sections, conformance.SectionCount{Section: s, Counts: secs[s]})
	}
	for _, id := range order {
		a := byID[id]
		switch {
		case a.found:
			a.v.Verdict = string(a.worst)
		case a.ran:
			a.v.Verdict = string(conformance.Pass)
		default:
			a.v.Verdict = conformance.Blocked
		}
		r.Requirements = append(r.Requirements, a.v)
	}
	r.Conformant = r.Counts[conformance.Fail] == 0 && r.Counts[conformance.Error] == 0 && len(r.Cases) > 0
	if r.Strict && r.Counts[conformance.NonStrict] > 0 {
		r.Conformant = false
	}
}

func isOutcome(s string) bool {
	for _, o := range conformance.Outcomes() {
		if string(o) == s {
			return true
		}
	}
	return false
}
