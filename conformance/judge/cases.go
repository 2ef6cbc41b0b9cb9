package judge

import (
	"errors"
	"fmt"
	"strings"

	"github.com/onsi/ginkgo/v2/types"

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
func (c *Case) Labels() []string {
	var out []string
	seen := map[string]bool{}
	add := func(l string) {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	for _, id := range c.Reqs {
		add("req:" + id)
	}
	for _, id := range c.Reqs {
		r, _ := spec.Lookup(id)
		add("sec:" + r.SectionPrefix())
	}
	for _, id := range c.Reqs {
		r, _ := spec.Lookup(id)
		add("level:" + string(r.Level))
	}
	return out
}

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
	var lf types.LabelFilter
	if strings.TrimSpace(labelFilter) != "" {
		var err error
		lf, err = types.ParseLabelFilter(labelFilter)
		if err != nil {
			return nil, fmt.Errorf("bad label filter %q: %s", labelFilter, strings.Join(strings.Fields(err.Error()), " "))
		}
	}
	all := Cases()
	var match []func(*Case) bool
	for _, sel := range selectors {
		m, err := selector(sel, all)
		if err != nil {
			return nil, err
		}
		match = append(match, m)
	}
	var out []*Case
	for _, c := range all {
		if lf != nil && !lf(c.Labels()) {
			continue
		}
		ok := len(match) == 0
		for _, m := range match {
			ok = ok || m(c)
		}
		if ok {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, conformance.ErrNoCases
	}
	return out, nil
}

func selector(sel string, all []*Case) (func(*Case) bool, error) {
	s := strings.ToUpper(strings.TrimSpace(sel))
	if s == "" {
		return nil, errors.New("empty selector")
	}
	if _, ok := spec.Lookup(s); ok {
		return func(c *Case) bool {
			for _, r := range c.Reqs {
				if r == s {
					return true
				}
			}
			return false
		}, nil
	}
	for _, c := range all {
		if c.ID == s {
			return func(c *Case) bool { return c.ID == s }, nil
		}
	}
	known := false
	for _, p := range spec.SectionPrefixes() {
		if p == s || strings.HasPrefix(p, s+"-") {
			known = true
		}
	}
	if !known {
		return nil, fmt.Errorf("selector %q names no requirement, case or section (sections: %s)", sel, strings.Join(spec.SectionPrefixes(), ", "))
	}
	return func(c *Case) bool {
		for _, id := range c.Reqs {
			r, _ := spec.Lookup(id)
			if p := r.SectionPrefix(); p == s || strings.HasPrefix(p, s+"-") {
				return true
			}
		}
		return false
	}, nil
}
