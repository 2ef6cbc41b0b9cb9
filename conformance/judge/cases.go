package judge

import (
	"fmt"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/spec"
)

// Case is one client case: the server the client meets, the file it is
// given, and how what reached the server is judged.
type Case struct {
	ID      string   // the first requirement's ID, with ".N" for the N-th case citing it first
	Reqs    []string // requirement IDs the case cites
	Title   string
	Section string
	needs   []string // placeholders the case needs; without them it is INFORMATIONAL
	setup   func(*caseRun)
	judge   func(*caseRun)
}

// Labels are the case's labels, as for server cases: req:ID, sec:PREFIX,
// level:LEVEL.
func (c *Case) Labels() []string { return conformance.CaseLabels(c.Reqs) }

// Level is the level of the case's first requirement.
func (c *Case) Level() spec.Level {
	r, _ := spec.Lookup(c.Reqs[0])
	return r.Level
}

func (c *Case) requirementRefs() []conformance.RequirementRef {
	out := make([]conformance.RequirementRef, 0, len(c.Reqs))
	for _, id := range c.Reqs {
		r, _ := spec.Lookup(id)
		out = append(out, conformance.RequirementRef{ID: r.ID, Level: string(r.Level), Text: r.Text})
	}
	return out
}

// Cases lists the client cases in order.
func Cases() []*Case {
	var out []*Case
	count := map[string]int{}
	add := func(c *Case) {
		for _, id := range c.Reqs {
			if _, ok := spec.Lookup(id); !ok {
				panic(fmt.Sprintf("judge: case %q cites unknown requirement %s", c.Title, id))
			}
		}
		first, _ := spec.Lookup(c.Reqs[0])
		count[first.ID]++
		c.ID = first.ID
		if n := count[first.ID]; n > 1 {
			c.ID = fmt.Sprintf("%s.%d", first.ID, n)
		}
		c.Section = first.SectionPrefix()
		out = append(out, c)
	}
	for _, c := range caseList() {
		add(c)
	}
	return out
}

// Select validates the filters and returns the cases they pick, in order,
// as conformance.Select does for server cases.
func Select(labelFilter string, selectors []string) ([]*Case, error) {
	return conformance.SelectFrom(Cases(), func(c *Case) (string, []string) { return c.ID, c.Reqs }, labelFilter, selectors)
}
