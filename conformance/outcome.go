package conformance

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// Outcome is a case's verdict.
type Outcome string

// Outcomes, from best to worst. A case's outcome is the worst of its
// findings; a case without findings passes.
const (
	Pass          Outcome = "PASS"
	Informational Outcome = "INFORMATIONAL" // behaviour the spec leaves open (a MAY)
	NonStrict     Outcome = "NON-STRICT"    // a SHOULD is broken; the server is still conformant
	Fail          Outcome = "FAIL"          // a MUST is broken
	Error         Outcome = "ERROR"         // the harness could not run the case
)

// Outcomes lists the outcomes in report order.
func Outcomes() []Outcome { return []Outcome{Pass, Fail, NonStrict, Informational, Error} }

func (o Outcome) rank() int {
	switch o {
	case Informational:
		return 1
	case NonStrict:
		return 2
	case Fail:
		return 3
	case Error:
		return 4
	}
	return 0
}

// outcomeFor maps a broken requirement's level to the outcome it earns.
func outcomeFor(l spec.Level) Outcome {
	switch l {
	case spec.MUST:
		return Fail
	case spec.SHOULD:
		return NonStrict
	}
	return Informational
}

// Finding is one observation that keeps a case from a plain PASS: which
// requirement, what was sent, what came back, what was expected.
type Finding struct {
	Outcome     Outcome `json:"outcome"`
	Requirement string  `json:"requirement,omitempty"`
	Level       string  `json:"level,omitempty"`
	Text        string  `json:"text,omitempty"` // the requirement's sentence
	Message     string  `json:"message"`        // what went wrong, in one sentence
	Expected    string  `json:"expected,omitempty"`
	Sent        string  `json:"sent,omitempty"`
	Received    string  `json:"received,omitempty"`
	ReceivedHex string  `json:"received_hex,omitempty"`
}

// String renders the finding as the multi-line reason a report prints.
func (f Finding) String() string {
	var b strings.Builder
	if f.Requirement != "" {
		fmt.Fprintf(&b, "%s %s (%s): %s\n", f.Outcome, f.Requirement, f.Level, f.Message)
	} else {
		fmt.Fprintf(&b, "%s: %s\n", f.Outcome, f.Message)
	}
	line := func(label, v string) {
		if v == "" {
			return
		}
		v = strings.TrimRight(v, "\n")
		if strings.Contains(v, "\n") {
			fmt.Fprintf(&b, "  %s\n    %s\n", label, strings.ReplaceAll(v, "\n", "\n    "))
			return
		}
		fmt.Fprintf(&b, "  %-10s %s\n", label, v)
	}
	line("sent:", f.Sent)
	line("received:", f.Received)
	line("bytes:", f.ReceivedHex)
	line("expected:", f.Expected)
	if f.Text != "" {
		line("requires:", f.Requirement+": "+f.Text)
	}
	return b.String()
}

// result is the mutable record of one running case. The case body and the
// reporter may touch it from different goroutines (a timed-out body keeps
// running after Ginkgo moved on), so access goes through the mutex.
type result struct {
	mu       sync.Mutex
	outcome  Outcome
	findings []Finding
	notes    []string
	log      *wireLog
	took     time.Duration
	// unconfirmed is set when a silence could not be confirmed during
	// the case: the server answered nothing at all for a while.
	unconfirmed bool
	// firm is set when a read ended in a firm silence: on a connection
	// that had answered before, while a LOGIN on a new connection was
	// answered promptly.
	firm bool
	// ready is closed when the case has run and its result is final.
	ready chan struct{}
}

func (r *result) markUnconfirmed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unconfirmed = true
}

func (r *result) markFirm() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.firm = true
}

func (r *result) wasFirm() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.firm
}

func (r *result) wasUnconfirmed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unconfirmed
}

// reset clears the result for the case to run again, notes included:
// the run alone makes its own.
func (r *result) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcome, r.findings, r.notes, r.unconfirmed, r.firm = "", nil, nil, false, false
	r.log = &wireLog{start: time.Now()}
}

func (r *result) setDuration(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.took = d
}

func (r *result) duration() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.took
}

func (r *result) add(f Finding) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.findings = append(r.findings, f)
	if f.Outcome.rank() > r.outcome.rank() {
		r.outcome = f.Outcome
	}
}

func (r *result) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, s)
}

func (r *result) snapshot() (Outcome, []Finding, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.outcome
	if o == "" {
		o = Pass
	}
	return o, append([]Finding(nil), r.findings...), append([]string(nil), r.notes...)
}

// CaseReport is one case's entry in a Report.
type CaseReport struct {
	ID           string           `json:"id"`
	Section      string           `json:"section"`
	Title        string           `json:"title"`
	Requirements []RequirementRef `json:"requirements"`
	Outcome      Outcome          `json:"outcome"`
	Broken       []string         `json:"broken,omitempty"` // IDs of the requirements found broken
	DurationMS   float64          `json:"duration_ms"`
	Sent         int              `json:"sent"` // requests (frames or raw writes) the case sent
	Findings     []Finding        `json:"findings,omitempty"`
	Notes        []string         `json:"notes,omitempty"`
	Exchange     []Event          `json:"exchange,omitempty"`
	// Client is what the client program did, in a client run.
	Client *ClientRun `json:"client,omitempty"`
}

// RequirementRef names a requirement a case cites.
type RequirementRef struct {
	ID    string `json:"id"`
	Level string `json:"level"`
	Text  string `json:"text"`
}

// Duration is the case's run time.
func (c CaseReport) Duration() time.Duration {
	return time.Duration(c.DurationMS * float64(time.Millisecond))
}
