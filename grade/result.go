package grade

import (
	"time"

	"github.com/stepkit/stepkit/conformance"
)

// Verdict is a submission's line in the class sheet.
type Verdict string

// Verdicts. Only Conformant and NotConformant come from a suite run; the
// others say why there is no (complete) run.
const (
	Conformant    Verdict = "CONFORMANT"
	NotConformant Verdict = "NOT CONFORMANT"
	DidNotStart   Verdict = "DID NOT START"  // the program exited before it listened
	NeverListened Verdict = "NEVER LISTENED" // still running, nothing listening on its port in time
	Crashed       Verdict = "CRASHED"        // the server died while the suite ran; the report is kept
	GraderError   Verdict = "GRADER ERROR"   // the suite itself could not run (the message says why)
)

// Result is the grading of one submission.
type Result struct {
	ID      string
	Verdict Verdict
	// Problem says, in one line, what went wrong starting or running the
	// program ("exit status 1", "killed: memory limit"); "" when nothing did.
	Problem string
	// Output is the last lines of the program's output, kept when there
	// is a Problem or a Sandbox line.
	Output []string
	// Sandbox says in words which of the sandbox's restrictions the
	// program ran into ("denied writing /var/lib/x: outside the
	// submission's folder", "killed: memory limit 256 MiB"), so that the
	// failure is not read as the protocol's; "" when none.
	Sandbox  string
	Counts   map[conformance.Outcome]int
	Score    Score
	Duration time.Duration
	// Failed lists the requirements the run found broken with FAIL or
	// ERROR; NonStrict those broken with NON-STRICT only.
	Failed    []string
	NonStrict []string
	// Isolated tells whether the program ran in a network namespace of
	// its own (else on the host network, on a port of its own).
	Isolated bool
	// Report is the suite's report; nil when the suite did not run.
	Report *conformance.Report
	// Against the baseline, if one was graded: the cases where the
	// student's outcome is better or worse, and the requirements both
	// break (a bug of the handed-out code, reproduced).
	Better, Worse, SameBugs []string
	// Fuzz is what stepkit fuzz found, when the class was fuzzed too.
	Fuzz *FuzzResult
}

// Graded reports whether the suite ran to its end.
func (r *Result) Graded() bool {
	return r.Verdict == Conformant || r.Verdict == NotConformant || r.Verdict == Crashed
}

// fill sets the counts, score and requirement lists from the report.
func (r *Result) fill(rep *conformance.Report, rubric *Rubric) {
	r.Report = rep
	r.Counts = map[conformance.Outcome]int{}
	for _, o := range conformance.Outcomes() {
		r.Counts[o] = rep.Counts[o]
	}
	r.Failed, r.NonStrict = nil, nil
	for _, v := range rep.Requirements {
		switch v.Verdict {
		case string(conformance.Fail), string(conformance.Error):
			r.Failed = append(r.Failed, v.ID)
		case string(conformance.NonStrict):
			r.NonStrict = append(r.NonStrict, v.ID)
		}
	}
	r.Score = rubric.Score(rep.Requirements)
	if r.Verdict == "" {
		r.Verdict = NotConformant
		if rep.Conformant {
			r.Verdict = Conformant
		}
	}
}

// compare marks the cases where r does better or worse than the baseline,
// and the requirements both break.
func (r *Result) compare(base *Result) {
	r.Better, r.Worse, r.SameBugs = nil, nil, nil
	if base == nil || base.Report == nil || r.Report == nil {
		return
	}
	mine := map[string]conformance.Outcome{}
	for _, c := range r.Report.Cases {
		mine[c.ID] = c.Outcome
	}
	for _, c := range base.Report.Cases {
		o, ok := mine[c.ID]
		if !ok {
			continue
		}
		switch d := rank(o) - rank(c.Outcome); {
		case d < 0:
			r.Better = append(r.Better, c.ID)
		case d > 0:
			r.Worse = append(r.Worse, c.ID)
		}
	}
	theirs := map[string]bool{}
	for _, id := range append(append([]string(nil), base.Failed...), base.NonStrict...) {
		theirs[id] = true
	}
	for _, id := range append(append([]string(nil), r.Failed...), r.NonStrict...) {
		if theirs[id] {
			r.SameBugs = append(r.SameBugs, id)
		}
	}
}

// rank orders outcomes from best to worst, INFORMATIONAL as good as PASS:
// a choice the spec leaves open is neither better nor worse.
func rank(o conformance.Outcome) int {
	switch o {
	case conformance.Pass, conformance.Informational:
		return 0
	case conformance.NonStrict:
		return 1
	case conformance.Fail:
		return 2
	}
	return 3
}
