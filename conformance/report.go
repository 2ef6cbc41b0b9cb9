package conformance

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ReportSchema identifies the JSON report's format. Fields are only ever
// added; a change of meaning gets a new schema name.
const ReportSchema = "stepkit-conformance/1"

// Report is the result of a run, in the form every output is made from.
type Report struct {
	Schema     string    `json:"schema"`
	Target     string    `json:"target"`
	Started    time.Time `json:"started"`
	DurationMS float64   `json:"duration_ms"`
	Strict     bool      `json:"strict"`
	Preflight  string    `json:"preflight,omitempty"`
	// Sandbox says which of the grader sandbox's restrictions the program
	// under test ran into ("denied writing /var/lib/x: outside the
	// submission's folder"), so that its failures are not read as the
	// protocol's; "" when none.
	Sandbox string `json:"sandbox,omitempty"`
	// Execution says how the cases ran: side by side or one at a time
	// (and why), and how a silence was judged.
	Execution *Execution      `json:"execution,omitempty"`
	Settings  Settings        `json:"settings"`
	Counts    map[Outcome]int `json:"counts"`
	Sections  []SectionCount  `json:"sections"`
	// Requirements is the verdict per requirement the run's cases cite.
	Requirements []RequirementVerdict `json:"requirements"`
	Cases        []CaseReport         `json:"cases"`
	// Conformant is false when a MUST failed or a case errored (with
	// Strict: when any case is neither PASS nor INFORMATIONAL).
	Conformant bool `json:"conformant"`

	// Mode is "client" for a run that judged a client program (the judge
	// played the server); empty for a server run.
	Mode string `json:"mode,omitempty"`
	// Client describes a client run: the template, its folder, isolation.
	Client *ClientSettings `json:"client,omitempty"`
}

// RequirementVerdict is the run's verdict on one requirement: the worst
// outcome of the findings against it, PASS when a case citing it ran to
// its end without one, or BLOCKED when every case citing it stopped
// earlier on another requirement.
type RequirementVerdict struct {
	ID      string   `json:"id"`
	Level   string   `json:"level"`
	Verdict string   `json:"verdict"`
	Cases   []string `json:"cases"`            // cases citing it
	Broken  []string `json:"broken,omitempty"` // cases that found it broken
}

// Blocked is the verdict of a requirement no case could decide.
const Blocked = "BLOCKED"

func (r *Report) verdicts() {
	type acc struct {
		v     RequirementVerdict
		worst Outcome
		found bool
		ran   bool
	}
	byID := map[string]*acc{}
	var order []string
	for _, c := range r.Cases {
		for _, ref := range c.Requirements {
			a := byID[ref.ID]
			if a == nil {
				a = &acc{v: RequirementVerdict{ID: ref.ID, Level: ref.Level}}
				byID[ref.ID] = a
				order = append(order, ref.ID)
			}
			a.v.Cases = append(a.v.Cases, c.ID)
			if c.Outcome != Fail && c.Outcome != Error {
				a.ran = true
			}
		}
		for _, f := range c.Findings {
			if f.Requirement == "" {
				continue
			}
			a := byID[f.Requirement]
			if a == nil {
				a = &acc{v: RequirementVerdict{ID: f.Requirement, Level: f.Level}}
				byID[f.Requirement] = a
				order = append(order, f.Requirement)
			}
			if !a.found || f.Outcome.rank() > a.worst.rank() {
				a.worst = f.Outcome
			}
			a.found = true
			if n := len(a.v.Broken); n == 0 || a.v.Broken[n-1] != c.ID {
				a.v.Broken = append(a.v.Broken, c.ID)
			}
		}
	}
	r.Requirements = nil
	for _, id := range order {
		a := byID[id]
		switch {
		case a.found:
			a.v.Verdict = string(a.worst)
		case a.ran:
			a.v.Verdict = string(Pass)
		default:
			a.v.Verdict = Blocked
		}
		if a.v.Cases == nil {
			// Found broken only by cases that do not cite it: the schema
			// wants a list, not null.
			a.v.Cases = []string{}
		}
		r.Requirements = append(r.Requirements, a.v)
	}
}

// Settings records how the run was configured, so a report can be read
// (and a grade defended) without the command line that made it.
type Settings struct {
	ReadTimeoutMS int64  `json:"read_timeout_ms"`
	CaseTimeoutMS int64  `json:"case_timeout_ms"`
	Accounts      bool   `json:"accounts"` // real accounts given (else random users under the course rule)
	User          string `json:"user,omitempty"`
	User2         string `json:"user2,omitempty"`
	TokenTTLMS    int64  `json:"token_ttl_ms,omitempty"`
	IdleTimeoutMS int64  `json:"idle_timeout_ms,omitempty"`
	MaxConns      int    `json:"max_conns,omitempty"`
	Quota         int64  `json:"quota,omitempty"`
	MaxFileSize   int64  `json:"max_file_size,omitempty"`
	BlockSize     int64  `json:"block_size,omitempty"`
}

// SectionCount is the tally of one section.
type SectionCount struct {
	Section string          `json:"section"`
	Counts  map[Outcome]int `json:"counts"`
}

func (r *Report) tally() {
	r.Counts = map[Outcome]int{}
	for _, o := range Outcomes() {
		r.Counts[o] = 0
	}
	by := map[string]map[Outcome]int{}
	for _, c := range r.Cases {
		r.Counts[c.Outcome]++
		if by[c.Section] == nil {
			by[c.Section] = map[Outcome]int{}
		}
		by[c.Section][c.Outcome]++
	}
	r.Sections = nil
	for _, s := range sortedSections(r.Cases) {
		r.Sections = append(r.Sections, SectionCount{Section: s, Counts: by[s]})
	}
	r.verdicts()
	r.setConformant()
}

func (r *Report) setConformant() {
	r.Conformant = r.Counts[Fail] == 0 && r.Counts[Error] == 0 && len(r.Cases) > 0
	if r.Strict && r.Counts[NonStrict] > 0 {
		r.Conformant = false
	}
}

// SetStrict switches the verdict to strict mode (any NON-STRICT fails).
func (r *Report) SetStrict(strict bool) {
	r.Strict = strict
	r.setConformant()
}

// Case returns the report of the case with the given ID.
func (r *Report) Case(id string) (CaseReport, bool) {
	for _, c := range r.Cases {
		if c.ID == id {
			return c, true
		}
	}
	return CaseReport{}, false
}

// Broken lists, for each outcome, the requirements found broken with it.
func (r *Report) Broken(o Outcome) map[string]bool {
	out := map[string]bool{}
	for _, c := range r.Cases {
		for _, f := range c.Findings {
			if f.Outcome == o && f.Requirement != "" {
				out[f.Requirement] = true
			}
		}
	}
	return out
}

// WriteJSON writes the stable JSON report.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}

// colours for the terminal summary.
type palette struct{ pass, fail, warn, info, bold, dim, reset string }

func colours(on bool) palette {
	if !on {
		return palette{}
	}
	return palette{pass: "\x1b[32m", fail: "\x1b[31m", warn: "\x1b[33m", info: "\x1b[36m", bold: "\x1b[1m", dim: "\x1b[2m", reset: "\x1b[0m"}
}

func (p palette) of(o Outcome) string {
	switch o {
	case Pass:
		return p.pass
	case Fail, Error:
		return p.fail
	case NonStrict:
		return p.warn
	}
	return p.info
}

// WriteText writes the terminal summary: counts per outcome and per
// section first, then every case that did not pass with its reasons.
// verbose adds the wire exchange of each of those cases.
func (r *Report) WriteText(w io.Writer, colour, verbose bool) error {
	p := colours(colour)
	var b strings.Builder
	fmt.Fprintf(&b, "%sSTEP conformance of %s%s: %d cases in %.2fs\n", p.bold, r.Target, p.reset, len(r.Cases), r.DurationMS/1000)
	if r.Preflight != "" {
		fmt.Fprintf(&b, "preflight: %s\n", r.Preflight)
	}
	if r.Sandbox != "" {
		fmt.Fprintf(&b, "sandbox: %s\n", r.Sandbox)
	}
	if e := r.Execution; e != nil {
		fmt.Fprintf(&b, "execution: %s\n", e.Summary())
		fmt.Fprintf(&b, "silence: %s\n", e.Silence)
	}
	for _, o := range Outcomes() {
		fmt.Fprintf(&b, "  %s%-13s%s %4d\n", p.of(o), o, p.reset, r.Counts[o])
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "%-15s %5s %5s %10s %13s %5s\n", "section", "PASS", "FAIL", "NON-STRICT", "INFORMATIONAL", "ERROR")
	for _, s := range r.Sections {
		fmt.Fprintf(&b, "%-15s %5d %5d %10d %13d %5d\n", s.Section, s.Counts[Pass], s.Counts[Fail], s.Counts[NonStrict], s.Counts[Informational], s.Counts[Error])
	}
	var broken []string
	for _, v := range r.Requirements {
		switch v.Verdict {
		case string(Fail), string(NonStrict):
			broken = append(broken, fmt.Sprintf("%-10s %s (%s): broken in %s", v.Verdict, v.ID, v.Level, strings.Join(v.Broken, ", ")))
		case Blocked:
			broken = append(broken, fmt.Sprintf("%-10s %s (%s): not decided, every case citing it stopped earlier (%s)", v.Verdict, v.ID, v.Level, strings.Join(v.Cases, ", ")))
		}
	}
	if len(broken) > 0 {
		fmt.Fprintf(&b, "\nrequirements not met (%d of %d cited):\n", len(broken), len(r.Requirements))
		for _, s := range broken {
			fmt.Fprintf(&b, "  %s\n", s)
		}
	}
	grouped := r.writeGroupedErrors(&b, p)
	for _, o := range []Outcome{Error, Fail, NonStrict, Informational} {
		first := true
		for _, c := range r.Cases {
			if c.Outcome != o || grouped[c.ID] {
				continue
			}
			if first {
				fmt.Fprintf(&b, "\n%s%s%s\n", p.of(o)+p.bold, o, p.reset)
				first = false
			}
			broken := ""
			if len(c.Broken) > 0 {
				broken = fmt.Sprintf(" %s(%s)%s", p.dim, strings.Join(c.Broken, ", "), p.reset)
			}
			fmt.Fprintf(&b, "%s[%s]%s %s%s\n", p.of(o), c.ID, p.reset, c.Title, broken)
			for _, f := range c.Findings {
				b.WriteString(indent(f.String(), "    "))
			}
			for _, n := range c.Notes {
				fmt.Fprintf(&b, "    note: %s\n", n)
			}
			if c.Client != nil {
				b.WriteString(indent(c.Client.String(), "    "))
			}
			if verbose && len(c.Exchange) > 0 {
				b.WriteString("    exchange:\n")
				for _, e := range c.Exchange {
					b.WriteString(indent(e.String()+"\n", "      "))
				}
			}
		}
	}
	verdict := "CONFORMANT"
	vc := p.pass
	if !r.Conformant {
		verdict, vc = "NOT CONFORMANT", p.fail
	}
	mode := ""
	if r.Strict {
		mode = " (strict)"
	}
	fmt.Fprintf(&b, "\n%s%s%s%s: %d FAIL, %d ERROR, %d NON-STRICT, %d INFORMATIONAL, %d PASS\n", vc+p.bold, verdict, mode, p.reset,
		r.Counts[Fail], r.Counts[Error], r.Counts[NonStrict], r.Counts[Informational], r.Counts[Pass])
	_, err := io.WriteString(w, b.String())
	return err
}

// writeGroupedErrors prints once the ERROR cases that share one reason
// (a server that cannot be reached errs every case the same way) and
// returns their IDs.
func (r *Report) writeGroupedErrors(b *strings.Builder, p palette) map[string]bool {
	byMsg := map[string][]string{}
	var order []string
	for _, c := range r.Cases {
		if c.Outcome != Error || len(c.Findings) != 1 {
			continue
		}
		m := c.Findings[0].Message
		if _, ok := byMsg[m]; !ok {
			order = append(order, m)
		}
		byMsg[m] = append(byMsg[m], c.ID)
	}
	done := map[string]bool{}
	for _, m := range order {
		ids := byMsg[m]
		if len(ids) < 3 {
			continue
		}
		fmt.Fprintf(b, "\n%sERROR%s in %d cases (%s ... %s):\n    %s\n", p.fail+p.bold, p.reset, len(ids), ids[0], ids[len(ids)-1], m)
		for _, id := range ids {
			done[id] = true
		}
	}
	return done
}

func indent(s, pre string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l == "" {
			continue
		}
		b.WriteString(pre)
		b.WriteString(l)
	}
	return b.String()
}

// ---- JUnit

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string `xml:"name,attr"`
	Tests      int    `xml:"tests,attr"`
	Failures   int    `xml:"failures,attr"`
	Errors     int    `xml:"errors,attr"`
	Skipped    int    `xml:"skipped,attr"`
	Time       string `xml:"time,attr"`
	seconds    float64
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name       string          `xml:"name,attr"`
	Classname  string          `xml:"classname,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Failure    *junitProblem   `xml:"failure,omitempty"`
	Error      *junitProblem   `xml:"error,omitempty"`
	SystemOut  *cdata          `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",cdata"`
}

type cdata struct {
	Text string `xml:",cdata"`
}

func seconds(ms float64) string { return fmt.Sprintf("%.3f", ms/1000) }

// WriteJUnit writes the report as JUnit XML: one testsuite per section,
// one testcase per case, named "[ID] title" whatever its outcome, so that
// a CI view follows a case from run to run. A FAIL is a failure and an
// ERROR an error; NON-STRICT and INFORMATIONAL cases pass, and say so in a
// testcase property "outcome" and in system-out, which begins with the
// outcome and holds the findings (under Strict, NON-STRICT counts as a
// failure). Properties also name the requirements the case cites and
// those it found broken.
func (r *Report) WriteJUnit(w io.Writer) error {
	top := junitSuites{Name: "STEP conformance of " + r.Target, Time: seconds(r.DurationMS)}
	index := map[string]int{}
	for _, c := range r.Cases {
		i, ok := index[c.Section]
		if !ok {
			i = len(top.Suites)
			index[c.Section] = i
			top.Suites = append(top.Suites, junitSuite{Name: c.Section,
				Properties: []junitProperty{{Name: "target", Value: r.Target}}})
		}
		s := &top.Suites[i]
		jc := junitCase{Name: c.Text(), Classname: "STEP." + c.Section, Time: seconds(c.DurationMS),
			Properties: []junitProperty{{Name: "outcome", Value: string(c.Outcome)}, {Name: "requirements", Value: c.reqIDs()}}}
		if len(c.Broken) > 0 {
			jc.Properties = append(jc.Properties, junitProperty{Name: "broken", Value: strings.Join(c.Broken, " ")})
		}
		var body strings.Builder
		if c.Outcome == NonStrict || c.Outcome == Informational {
			fmt.Fprintf(&body, "%s: %s\n\n", c.Outcome, firstMessage(c))
		}
		for _, f := range c.Findings {
			body.WriteString(f.String())
		}
		for _, n := range c.Notes {
			body.WriteString("note: " + n + "\n")
		}
		if c.Client != nil {
			body.WriteString(c.Client.String())
		}
		if c.Outcome != Pass && len(c.Exchange) > 0 {
			body.WriteString("\nexchange:\n")
			for _, e := range c.Exchange {
				body.WriteString(indent(e.String()+"\n", "  "))
			}
		}
		msg := firstMessage(c)
		switch {
		case c.Outcome == Fail || (r.Strict && c.Outcome == NonStrict):
			jc.Failure = &junitProblem{Message: msg, Type: string(c.Outcome), Body: body.String()}
			s.Failures++
			top.Failures++
		case c.Outcome == Error:
			jc.Error = &junitProblem{Message: msg, Type: string(Error), Body: body.String()}
			s.Errors++
			top.Errors++
		default:
			if body.Len() > 0 {
				jc.SystemOut = &cdata{body.String()}
			}
		}
		s.Tests++
		top.Tests++
		s.seconds += c.DurationMS
		s.Time = seconds(s.seconds)
		s.Cases = append(s.Cases, jc)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(top); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// Text is the case's name in reports: its ID in brackets, then its
// title, as the Ginkgo spec is named.
func (c CaseReport) Text() string { return "[" + c.ID + "] " + c.Title }

func (c CaseReport) reqIDs() string {
	ids := make([]string, len(c.Requirements))
	for i, r := range c.Requirements {
		ids[i] = r.ID
	}
	return strings.Join(ids, " ")
}

// Summary is how the cases ran, in one line.
func (e *Execution) Summary() string {
	s := fmt.Sprintf("%d cases at a time", e.Workers)
	if e.Mode == "serial" {
		s = "one case at a time"
		if e.Reason != "" {
			s += ": " + e.Reason
		}
	}
	if len(e.Alone) > 0 {
		s += fmt.Sprintf("; %s ran alone first (their verdicts rest on timing)", strings.Join(e.Alone, ", "))
	}
	if e.Down > 0 {
		s += fmt.Sprintf(", down to %d when the server answered nothing at all for a while", e.Down)
	}
	if len(e.Again) > 0 {
		s += fmt.Sprintf("; %d that did not pass side by side ran again alone, and that result stands", len(e.Again))
	}
	return s
}

func firstMessage(c CaseReport) string {
	for _, f := range c.Findings {
		if f.Outcome == c.Outcome {
			if f.Requirement != "" {
				return f.Requirement + ": " + f.Message
			}
			return f.Message
		}
	}
	return string(c.Outcome)
}

// WriteFile writes one of the report formats to path, creating its folder.
func WriteFile(path string, write func(io.Writer) error) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("report folder: %w", err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create report: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
