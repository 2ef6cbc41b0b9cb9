package conformance

import (
	"fmt"
	"strings"
	"time"
)

// ClientSettings describe a run that judged a client program rather than a
// server (stepkit conformance --client): the judge played the server.
type ClientSettings struct {
	Template  string   `json:"template"`           // the client's command line, with placeholders
	Dir       string   `json:"dir"`                // the folder copied afresh for each case
	Isolated  bool     `json:"isolated"`           // each case ran in a network namespace of its own
	Why       string   `json:"why,omitempty"`      // why not, when not isolated
	Port      int      `json:"port"`               // the port the judge listened on (0: a free port per case)
	TimeoutMS int64    `json:"timeout_ms"`         // the time limit of the client in each case
	Stdin     string   `json:"stdin,omitempty"`    // the file given as the client's stdin
	Parallel  int      `json:"parallel,omitempty"` // cases run at once
	Features  []string `json:"features,omitempty"` // placeholders the template offers
}

// ClientRun is what the client program did in one case: its command line,
// how it ended and what it printed.
type ClientRun struct {
	Command    []string `json:"command"`
	Exit       string   `json:"exit"`                // "exit status 0", "killed: time limit (20s)", ...
	ExitCode   int      `json:"exit_code"`           // -1 when it did not exit by itself
	TimedOut   bool     `json:"timed_out,omitempty"` // ended by the case's time limit
	DurationMS float64  `json:"duration_ms"`
	Stdout     string   `json:"stdout,omitempty"`
	Stderr     string   `json:"stderr,omitempty"`
	// Sandbox says which of the sandbox's restrictions the client ran
	// into, in words; "" when none.
	Sandbox string `json:"sandbox,omitempty"`
}

// String renders the run for the text and JUnit reports.
func (c *ClientRun) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client: %s\n", strings.Join(c.Command, " "))
	fmt.Fprintf(&b, "  ended: %s after %.0f ms\n", c.Exit, c.DurationMS)
	if c.Sandbox != "" {
		fmt.Fprintf(&b, "  sandbox: %s\n", c.Sandbox)
	}
	for _, s := range []struct{ name, text string }{{"stdout", c.Stdout}, {"stderr", c.Stderr}} {
		if strings.TrimSpace(s.text) == "" {
			continue
		}
		fmt.Fprintf(&b, "  %s:\n%s", s.name, indent(strings.TrimRight(s.text, "\n")+"\n", "    | "))
	}
	return b.String()
}

// NewClientReport assembles the report of a client run from its cases,
// with the same tallies, verdicts and outputs as a server run.
func NewClientReport(target string, started time.Time, duration time.Duration, settings Settings, client ClientSettings, preflight string, cases []CaseReport, strict bool) *Report {
	r := &Report{Schema: ReportSchema, Mode: "client", Target: target, Started: started, DurationMS: ms(duration),
		Preflight: preflight, Settings: settings, Client: &client, Cases: cases, Strict: strict}
	for i := range r.Cases {
		c := &r.Cases[i]
		c.Broken = nil
		seen := map[string]bool{}
		for _, f := range c.Findings {
			if f.Requirement != "" && (f.Outcome == Fail || f.Outcome == NonStrict) && !seen[f.Requirement] {
				seen[f.Requirement] = true
				c.Broken = append(c.Broken, f.Requirement)
			}
		}
		c.Exchange = trimEvents(c.Exchange, 40, 30)
	}
	r.tally()
	return r
}

// WorstOutcome is the worst outcome among findings (PASS when none).
func WorstOutcome(fs []Finding) Outcome {
	o := Pass
	for _, f := range fs {
		if f.Outcome.rank() > o.rank() {
			o = f.Outcome
		}
	}
	return o
}
