package spec

import (
	"bufio"
	"regexp"
	"strings"
	"testing"
)

// A requirement statement in STEP.md: the ID in bold, then the level.
var (
	statementRe = regexp.MustCompile(`\*\*([A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*-[0-9]+)\*\*(?: \(([A-Z]+)\))?`)
	headingRe   = regexp.MustCompile(`^#{2,4} (?:([0-9]+(?:\.[0-9]+)*)\.? |Appendix ([A-Z])\. )`)
)

// docStatement is one requirement statement found in STEP.md.
type docStatement struct {
	id, level, section, text string
	line                     int
}

// parseDocument extracts every bold requirement ID from doc, with the
// level after it, the number of the section it sits in, and the text of
// its statement (up to the next list item or blank line).
func parseDocument(doc string) []docStatement {
	var out []docStatement
	section := ""
	sc := bufio.NewScanner(strings.NewReader(doc))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	for i, line := range lines {
		if m := headingRe.FindStringSubmatch(line); m != nil {
			section = m[1] + m[2]
			continue
		}
		for _, loc := range statementRe.FindAllStringSubmatchIndex(line, -1) {
			st := docStatement{id: line[loc[2]:loc[3]], section: section, line: i + 1}
			if loc[4] >= 0 {
				st.level = line[loc[4]:loc[5]]
			}
			text := line[loc[1]:]
			for j := i + 1; j < len(lines); j++ {
				l := strings.TrimSpace(lines[j])
				if l == "" || strings.HasPrefix(l, "- ") || strings.HasPrefix(l, "#") {
					break
				}
				text += " " + l
			}
			st.text = text
			out = append(out, st)
		}
	}
	return out
}

// TestCatalogueMatchesDocument is the guard between STEP.md and
// requirements.go: every catalogue entry is stated exactly once in the
// document, at the same level and in the same section, and the document
// states nothing the catalogue lacks.
func TestCatalogueMatchesDocument(t *testing.T) {
	checkCatalogue(t, Document(), Requirements())
}

func checkCatalogue(t testing.TB, doc string, cat []Requirement) {
	t.Helper()
	byID := map[string]Requirement{}
	for _, r := range cat {
		if _, dup := byID[r.ID]; dup {
			t.Errorf("catalogue: %s is listed twice", r.ID)
		}
		byID[r.ID] = r
	}
	seen := map[string]int{}
	for _, st := range parseDocument(doc) {
		seen[st.id]++
		r, ok := byID[st.id]
		switch {
		case !ok:
			t.Errorf("STEP.md:%d: %s is not in the catalogue", st.line, st.id)
			continue
		case seen[st.id] > 1:
			t.Errorf("STEP.md:%d: %s is stated more than once", st.line, st.id)
		}
		if st.level != string(r.Level) {
			t.Errorf("STEP.md:%d: %s has level %q, the catalogue says %s", st.line, st.id, st.level, r.Level)
		}
		if st.section != r.Section {
			t.Errorf("STEP.md:%d: %s is in section %q, the catalogue says %q", st.line, st.id, st.section, r.Section)
		}
		if !strings.Contains(st.text, string(r.Level)) {
			t.Errorf("STEP.md:%d: the statement of %s does not use the keyword %s", st.line, st.id, r.Level)
		}
	}
	for _, r := range cat {
		if seen[r.ID] == 0 {
			t.Errorf("catalogue: %s (%s) is not stated in STEP.md", r.ID, r.Level)
		}
	}
	// Plain citations must name real requirements too.
	prefixes := map[string]bool{}
	for _, r := range cat {
		prefixes[r.SectionPrefix()] = true
	}
	citeRe := regexp.MustCompile(`\b([A-Z][A-Z0-9]*(?:-[A-Z][A-Z0-9]*)*)-([0-9]+)\b`)
	for _, m := range citeRe.FindAllStringSubmatch(doc, -1) {
		if prefixes[m[1]] && byID[m[0]].ID == "" {
			t.Errorf("STEP.md cites %s, which is not in the catalogue", m[0])
		}
	}
}

// TestCatalogueCheckFails proves the guard can fail: each broken document
// or catalogue must be reported.
func TestCatalogueCheckFails(t *testing.T) {
	cat := []Requirement{
		{"FRAME-1", MUST, Server, "2", "x"},
		{"FRAME-2", SHOULD, Server, "2", "y"},
	}
	good := "## 2. Framing\n\n- **FRAME-1** (MUST) A frame MUST be.\n- **FRAME-2** (SHOULD) It SHOULD be.\n"
	if r := runCheck(good, cat); len(r.errs) != 0 {
		t.Fatalf("good document reported: %v", r.errs)
	}
	cases := map[string]struct {
		doc string
		cat []Requirement
	}{
		"missing from document":  {"## 2. Framing\n\n- **FRAME-1** (MUST) A frame MUST be.\n", cat},
		"missing from catalogue": {good + "- **FRAME-3** (MAY) It MAY be.\n", cat},
		"level differs":          {"## 2. Framing\n\n- **FRAME-1** (SHOULD) A frame SHOULD be.\n- **FRAME-2** (SHOULD) It SHOULD be.\n", cat},
		"stated twice":           {good + "- **FRAME-1** (MUST) Again it MUST be.\n", cat},
		"wrong section":          {"## 3. Messages\n\n- **FRAME-1** (MUST) A frame MUST be.\n- **FRAME-2** (SHOULD) It SHOULD be.\n", cat},
		"no keyword":             {"## 2. Framing\n\n- **FRAME-1** (MUST) A frame is.\n- **FRAME-2** (SHOULD) It SHOULD be.\n", cat},
		"unknown citation":       {good + "\nSee FRAME-9.\n", cat},
		"duplicate in catalogue": {good, append(cat, cat[0])},
	}
	for name, c := range cases {
		if r := runCheck(c.doc, c.cat); len(r.errs) == 0 {
			t.Errorf("%s: not reported", name)
		}
	}
}

type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, format)
}

func runCheck(doc string, cat []Requirement) *recorder {
	r := &recorder{}
	checkCatalogue(r, doc, cat)
	return r
}

func TestDocumentEmbedded(t *testing.T) {
	if !strings.HasPrefix(Document(), "# STEP") || !strings.Contains(Document(), "## Appendix A.") {
		t.Fatalf("Document() does not hold STEP.md: %.40q", Document())
	}
}
