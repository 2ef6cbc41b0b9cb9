package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/extensions/globals"
	"github.com/onsi/ginkgo/v2/formatter"
	"github.com/onsi/ginkgo/v2/types"

	"github.com/stepkit/stepkit/spec"
)

// Options are a run's configuration plus the choice of cases.
type Options struct {
	Config
	// LabelFilter is a Ginkgo label filter over the case labels (req:ID,
	// sec:PREFIX, level:LEVEL).
	LabelFilter string
	// Selectors pick cases by requirement ID (FILE-UPLOAD-7), case ID
	// (FILE-UPLOAD-6.2) or section prefix (FILE-UPLOAD, FILE, DATA-GET);
	// a case is picked when one of them matches. None: every case.
	Selectors []string
	// Strict makes NON-STRICT outcomes count against conformance.
	Strict bool
	// GinkgoOutput receives Ginkgo's own progress output; nil discards it.
	GinkgoOutput io.Writer
	// Verbose asks Ginkgo for verbose output (with GinkgoOutput).
	Verbose bool
	// Progress, if set, is called after each case with its outcome and
	// how many of the selected cases are done, one call at a time.
	Progress func(c *Case, o Outcome, done, total int)
	// Parallel is how many cases may run at once: 0 for DefaultParallel,
	// 1 for one at a time. A run is serial whatever it says when the
	// server serves one connection at a time, when every case must share
	// the account given in Config.User, or when the run is told the
	// server's connection limit.
	Parallel int
}

// ErrNoCases is returned when the filters match no case.
var ErrNoCases = errors.New("no case matches the selection")

// Select validates the filters and returns the cases they pick, in order.
// A bad label filter or a selector that names nothing is an error, found
// here rather than inside Ginkgo (which would exit the process).
func Select(labelFilter string, selectors []string) ([]*Case, error) {
	return SelectFrom(Cases(), func(c *Case) (string, []string) { return c.ID, c.Reqs }, labelFilter, selectors)
}

// SelectFrom is Select over any list of cases, server or client: cite
// gives a case's ID and the requirement IDs it cites, from which its
// labels are made (CaseLabels).
func SelectFrom[C any](all []C, cite func(C) (id string, reqs []string), labelFilter string, selectors []string) ([]C, error) {
	var lf types.LabelFilter
	if strings.TrimSpace(labelFilter) != "" {
		var err error
		lf, err = types.ParseLabelFilter(labelFilter)
		if err != nil {
			return nil, fmt.Errorf("bad label filter %q: %s", labelFilter, plainText(err.Error()))
		}
	}
	ids := make([]string, len(all))
	for i, c := range all {
		ids[i], _ = cite(c)
	}
	match := make([]func(id string, reqs []string) bool, 0, len(selectors))
	for _, sel := range selectors {
		m, err := selector(sel, ids)
		if err != nil {
			return nil, err
		}
		match = append(match, m)
	}
	var out []C
	for _, c := range all {
		id, reqs := cite(c)
		if lf != nil && !lf(CaseLabels(reqs)) {
			continue
		}
		ok := len(match) == 0
		for _, m := range match {
			ok = ok || m(id, reqs)
		}
		if ok {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, ErrNoCases
	}
	return out, nil
}

// selector parses one positional selector against the cases ids.
func selector(sel string, ids []string) (func(id string, reqs []string) bool, error) {
	s := strings.ToUpper(strings.TrimSpace(sel))
	if s == "" {
		return nil, errors.New("empty selector")
	}
	// A requirement ID picks every case citing it; a case ID (with its
	// ".N" suffix) picks one case.
	if _, ok := spec.Lookup(s); ok {
		return func(_ string, reqs []string) bool { return slices.Contains(reqs, s) }, nil
	}
	if slices.Contains(ids, s) {
		return func(id string, _ []string) bool { return id == s }, nil
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
	return func(_ string, reqs []string) bool {
		for _, id := range reqs {
			r, _ := spec.Lookup(id)
			if p := r.SectionPrefix(); p == s || strings.HasPrefix(p, s+"-") {
				return true
			}
		}
		return false
	}, nil
}

var ansi = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("\x1b\\[[0-9;]*m") })

func plainText(s string) string {
	s = ansi().ReplaceAllString(s, "")
	return strings.Join(strings.Fields(s), " ")
}

// ginkgoT satisfies ginkgo.GinkgoTestingT outside of go test.
type ginkgoT struct{ failed bool }

func (t *ginkgoT) Fail() { t.failed = true }

// runMu serialises runs: Ginkgo's suite is process-wide.
var runMu sync.Mutex

// Run runs the selected cases against opts.Target in this process, through
// Ginkgo's RunSpecs with a programmatic configuration, and returns the
// report. It resets Ginkgo's global suite first, so a process may call it
// any number of times (one at a time).
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	picked, err := Select(opts.LabelFilter, opts.Selectors)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, c := range picked {
		want[c.ID] = true
	}

	runMu.Lock()
	defer runMu.Unlock()

	globals.Reset()
	s := Register(opts.Config, func(c *Case) bool { return want[c.ID] })
	var rep *Report
	ginkgo.ReportAfterSuite("STEP conformance report", func(r ginkgo.Report) { rep = s.Report(r) })

	suiteCfg := types.NewDefaultSuiteConfig()
	suiteCfg.RandomSeed = time.Now().UnixNano()
	// Cases run in definition order: the report reads like STEP.md.
	suiteCfg.RandomizeAllSpecs = false
	suiteCfg.GracePeriod = 2 * time.Second
	suiteCfg.Timeout = 24 * time.Hour
	if d, ok := ctx.Deadline(); ok {
		suiteCfg.Timeout = time.Until(d)
	}
	repCfg := types.NewDefaultReporterConfig()
	repCfg.NoColor = true
	repCfg.Succinct = !opts.Verbose
	repCfg.Verbose = opts.Verbose

	out := opts.GinkgoOutput
	if out == nil {
		out = io.Discard
	}
	prevOut := formatter.ColorableStdOut
	formatter.ColorableStdOut = out
	defer func() { formatter.ColorableStdOut = prevOut }()

	s.runCtx = ctx
	s.progress = opts.Progress
	s.parallel = opts.Parallel

	gt := &ginkgoT{}
	ginkgo.RunSpecs(gt, "STEP conformance", suiteCfg, repCfg)
	s.wait()
	globals.Reset()
	if rep == nil {
		return nil, errors.New("the suite produced no report")
	}
	rep.SetStrict(opts.Strict)
	return rep, nil
}
