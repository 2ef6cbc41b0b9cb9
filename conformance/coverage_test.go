package conformance_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"slices"
	"strings"
	"testing"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/spec"
)

// clientRequirements are the catalogue's client-subject requirements. The
// conformance suite checks servers; refclient's tests and the client
// judge (package judge) check these.
var clientRequirements = []string{"MSG-3", "TOKEN-5", "BYE-1", "CLIENT-1", "CLIENT-2", "CLIENT-3", "CLIENT-4", "CLIENT-5", "CLIENT-6", "CLIENT-7", "CLIENT-8"}

func TestEveryServerRequirementHasACase(t *testing.T) {
	cited := map[string]bool{}
	ids := map[string]bool{}
	for _, c := range conformance.Cases() {
		if ids[c.ID] {
			t.Errorf("case ID %s used twice", c.ID)
		}
		ids[c.ID] = true
		for _, r := range c.Reqs {
			cited[r] = true
		}
		if c.Title == "" {
			t.Errorf("case %s has no title", c.ID)
		}
	}
	client := map[string]bool{}
	for _, id := range clientRequirements {
		client[id] = true
	}
	for _, r := range spec.Requirements() {
		switch r.Subject {
		case spec.Server:
			if !cited[r.ID] {
				t.Errorf("server requirement %s (%s) has no case", r.ID, r.Level)
			}
		case spec.Client:
			if !client[r.ID] {
				t.Errorf("client requirement %s is not in the list of requirements left to refclient's tests", r.ID)
			}
			if cited[r.ID] {
				t.Errorf("client requirement %s is cited by a server case", r.ID)
			}
		}
	}
	for id := range client {
		if r, ok := spec.Lookup(id); !ok || r.Subject != spec.Client {
			t.Errorf("%s is listed as a client requirement but is not one in the catalogue", id)
		}
	}
}

func TestCaseLabels(t *testing.T) {
	c := conformance.Cases()
	var upload *conformance.Case
	for _, x := range c {
		if x.ID == "FILE-UPLOAD-6" {
			upload = x
		}
	}
	if upload == nil {
		t.Fatal("no case FILE-UPLOAD-6")
	}
	got := strings.Join(upload.Labels(), " ")
	for _, want := range []string{"req:FILE-UPLOAD-6", "req:FILE-UPLOAD-7", "sec:FILE-UPLOAD", "level:MUST", "level:SHOULD"} {
		if !strings.Contains(got, want) {
			t.Errorf("labels %q lack %q", got, want)
		}
	}
}

func TestSelect(t *testing.T) {
	tests := []struct {
		filter string
		sel    []string
		min    int
		check  func(*conformance.Case) bool
		err    string
	}{
		{sel: []string{"FILE-UPLOAD-7"}, min: 2, check: func(c *conformance.Case) bool { return strings.Contains(strings.Join(c.Reqs, ","), "FILE-UPLOAD-7") }},
		{sel: []string{"FILE"}, min: 20, check: func(c *conformance.Case) bool { return strings.HasPrefix(c.Section, "FILE-") }},
		{sel: []string{"data-get"}, min: 3, check: func(c *conformance.Case) bool {
			return c.Section == "DATA-GET" || strings.Contains(strings.Join(c.Reqs, ","), "DATA-GET")
		}},
		{sel: []string{"REQ-3.2"}, min: 1, check: func(c *conformance.Case) bool { return c.ID == "REQ-3.2" }},
		{sel: []string{"REQ-1"}, min: 4, check: func(c *conformance.Case) bool { return slices.Contains(c.Reqs, "REQ-1") }},
		{filter: "level:MAY", min: 3, check: func(c *conformance.Case) bool { return strings.Contains(strings.Join(c.Labels(), " "), "level:MAY") }},
		{filter: "sec:LOGIN && !req:LOGIN-8", min: 5, check: func(c *conformance.Case) bool { return c.Section == "LOGIN" && c.Reqs[0] != "LOGIN-8" }},
		{filter: "level:MUST &&", err: "bad label filter"},
		{sel: []string{"NOSUCH"}, err: "names no requirement"},
		{sel: []string{"CLIENT"}, err: "no case matches"},
		{filter: "sec:EARTH", sel: []string{"DATA"}, err: "no case matches"},
	}
	for _, tt := range tests {
		cs, err := conformance.Select(tt.filter, tt.sel)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Select(%q, %v): error %v, want %q", tt.filter, tt.sel, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Select(%q, %v): %v", tt.filter, tt.sel, err)
			continue
		}
		if len(cs) < tt.min {
			t.Errorf("Select(%q, %v): %d cases, want at least %d", tt.filter, tt.sel, len(cs), tt.min)
		}
		for _, c := range cs {
			if !tt.check(c) {
				t.Errorf("Select(%q, %v) picked %s (%v)", tt.filter, tt.sel, c.ID, c.Reqs)
			}
		}
	}
}

// The four report formats, produced from a real (filtered) run that has a
// FAIL, a NON-STRICT and an INFORMATIONAL case.
func TestReportFormats(t *testing.T) {
	upstream := selfCheckServer(t)
	m := &mutation{name: "410 past the end, no md5", response: func(_ *proxyConn, req, resp *spec.Message) []*spec.Message {
		if is(req, spec.OpUpload, spec.TypeFile) {
			if status(resp) == 405 {
				resp.Set(spec.FieldStatus, 410)
			}
			resp.Delete(spec.FieldMD5)
		}
		return one(resp)
	}}
	addr := startProxy(t, upstream, m)
	rep := runAgainst(t, addr, "FILE-UPLOAD-6", "FILE-UPLOAD-2", "EXT-3")
	if rep.Counts[conformance.Fail] == 0 || rep.Counts[conformance.Informational] == 0 {
		t.Fatalf("counts %v", rep.Counts)
	}
	if rep.Conformant {
		t.Fatal("conformant despite a FAIL")
	}

	verdict := map[string]string{}
	for _, v := range rep.Requirements {
		verdict[v.ID] = v.Verdict
	}
	if verdict["FILE-UPLOAD-2"] != "FAIL" || verdict["EXT-3"] != "INFORMATIONAL" {
		t.Errorf("requirement verdicts %v", verdict)
	}

	var text bytes.Buffer
	if err := rep.WriteText(&text, false, true); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	for _, want := range []string{"FAIL", "NON-STRICT", "INFORMATIONAL", "FILE-UPLOAD-2 (MUST)", "requires:", "sent:", "received:", "expected:", "NOT CONFORMANT", "exchange:", "requirements not met", "FILE-UPLOAD-2 (MUST): broken in", "execution: ", "silence: a read with no answer"} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q", want)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Error("colour codes in a report written without colour")
	}
	if strings.Index(out, "section") > strings.Index(out, "[FILE-UPLOAD-2") {
		t.Error("the counts do not come before the failures")
	}

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back conformance.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Settings.ReadTimeoutMS != 750 || back.Settings.Accounts {
		t.Errorf("settings %+v", back.Settings)
	}
	if back.Schema != conformance.ReportSchema || len(back.Cases) != len(rep.Cases) || back.Counts[conformance.Fail] != rep.Counts[conformance.Fail] {
		t.Errorf("JSON report does not round-trip: %+v", back.Counts)
	}
	if back.Execution == nil || back.Execution.Mode != "parallel" || back.Execution.Silence == "" {
		t.Errorf("execution %+v", back.Execution)
	}
	if err := conformance.ValidateReportClosed(js.Bytes()); err != nil {
		t.Errorf("the JSON report does not follow its schema: %v", err)
	}

	var junit bytes.Buffer
	if err := rep.WriteJUnit(&junit); err != nil {
		t.Fatal(err)
	}
	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name       string    `xml:"name,attr"`
				Failure    *struct{} `xml:"failure"`
				SystemOut  string    `xml:"system-out"`
				Properties []struct {
					Name  string `xml:"name,attr"`
					Value string `xml:"value,attr"`
				} `xml:"properties>property"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(junit.Bytes(), &suites); err != nil {
		t.Fatalf("JUnit XML does not parse: %v", err)
	}
	if suites.Tests != len(rep.Cases) || suites.Failures != rep.Counts[conformance.Fail] {
		t.Errorf("JUnit counts tests=%d failures=%d, report %v", suites.Tests, suites.Failures, rep.Counts)
	}
	// A testcase is named after its case alone, whatever the outcome,
	// which it gives as a property (and, unless it passed or failed, at
	// the head of system-out).
	byName := map[string]conformance.CaseReport{}
	for _, c := range rep.Cases {
		byName["["+c.ID+"] "+c.Title] = c
	}
	seen := 0
	for _, s := range suites.Suites {
		for _, jc := range s.Cases {
			c, ok := byName[jc.Name]
			if !ok {
				t.Errorf("JUnit testcase %q is not named after a case", jc.Name)
				continue
			}
			seen++
			props := map[string]string{}
			for _, p := range jc.Properties {
				props[p.Name] = p.Value
			}
			if props["outcome"] != string(c.Outcome) || props["requirements"] == "" {
				t.Errorf("%s: properties %v, outcome %s", c.ID, props, c.Outcome)
			}
			if (c.Outcome == conformance.NonStrict || c.Outcome == conformance.Informational) && !strings.HasPrefix(jc.SystemOut, string(c.Outcome)+": ") {
				t.Errorf("%s: system-out does not begin with its outcome: %q", c.ID, jc.SystemOut)
			}
		}
	}
	if seen != len(rep.Cases) {
		t.Errorf("JUnit has %d of %d cases", seen, len(rep.Cases))
	}

	var html bytes.Buffer
	if err := rep.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	h := html.String()
	for _, want := range []string{"<!DOCTYPE html>", "NOT CONFORMANT", "execution: ", "silence: ", `id="sec-FILE-UPLOAD"`, "<details", "wire exchange", "FILE-UPLOAD-2", "Requirements not met"} {
		if !strings.Contains(h, want) {
			t.Errorf("HTML report lacks %q", want)
		}
	}
	for _, bad := range []string{"<script src", "<link ", "http://", "https://"} {
		if strings.Contains(h, bad) {
			t.Errorf("HTML report is not self-contained: contains %q", bad)
		}
	}

	rep.SetStrict(true)
	if rep.Conformant {
		t.Error("strict and still conformant")
	}
}

// Strict mode turns a NON-STRICT-only run into a failure.
func TestStrict(t *testing.T) {
	upstream := selfCheckServer(t)
	addr := startProxy(t, upstream, &mutation{name: "410", response: setStatus(opType(spec.OpUpload, spec.TypeFile), 405, 410)})
	rep := runAgainst(t, addr, "FILE-UPLOAD-6")
	if !rep.Conformant || rep.Counts[conformance.NonStrict] == 0 {
		t.Fatalf("want conformant with NON-STRICT, got %v", rep.Counts)
	}
	rep.SetStrict(true)
	if rep.Conformant {
		t.Fatal("strict run conformant despite NON-STRICT")
	}
}

// Run may be called again and again in one process.
func TestRunTwice(t *testing.T) {
	addr := selfCheckServer(t)
	want, err := conformance.Select("", []string{"DATA-GET"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		rep := runAgainst(t, addr, "DATA-GET")
		if !rep.Conformant || len(rep.Cases) != len(want) {
			t.Fatalf("run %d: %v, %d cases", i, rep.Counts, len(rep.Cases))
		}
	}
	calls, last := 0, 0
	rep, err := conformance.Run(t.Context(), conformance.Options{Config: conformance.Config{Target: addr}, Selectors: []string{"DATA-DELETE"},
		Progress: func(c *conformance.Case, o conformance.Outcome, done, total int) {
			calls++
			if o != conformance.Pass || total != 3 || done != calls {
				t.Errorf("progress %s %s %d/%d", c.ID, o, done, total)
			}
			last = done
		}})
	if err != nil || calls != 3 || last != 3 || len(rep.Cases) != 3 {
		t.Fatalf("progress: %d calls, last %d, err %v", calls, last, err)
	}
	if _, err := conformance.Run(t.Context(), conformance.Options{Config: conformance.Config{Target: addr}, LabelFilter: "level:MUST &&"}); err == nil {
		t.Fatal("a bad label filter was accepted")
	}
}

// The schema refuses reports that break it: a missing field, a wrong type,
// an outcome that does not exist, text that is not JSON.
func TestReportSchemaRefuses(t *testing.T) {
	rep := runAgainst(t, selfCheckServer(t), "DATA-GET-1")
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := conformance.ValidateReport(js.Bytes()); err != nil {
		t.Fatalf("a real report: %v", err)
	}
	for _, bad := range []struct{ what, from, to string }{
		{"no conformant field", `"conformant"`, `"conformant_"`},
		{"a string duration", `"duration_ms": `, `"duration_ms": "1", "x": `},
		{"an unknown outcome", `"outcome": "PASS"`, `"outcome": "OK"`},
		{"another schema", `"stepkit-conformance/1"`, `"stepkit-conformance/2"`},
	} {
		b := strings.Replace(js.String(), bad.from, bad.to, 1)
		if b == js.String() {
			t.Fatalf("%s: the report has no %s", bad.what, bad.from)
		}
		if err := conformance.ValidateReport([]byte(b)); err == nil {
			t.Errorf("%s: accepted", bad.what)
		}
	}
	if err := conformance.ValidateReport([]byte("{")); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("broken JSON: %v", err)
	}
}
