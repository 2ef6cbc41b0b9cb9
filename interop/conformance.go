package interop

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/stepkit/stepkit/grade"
)

// runConformance runs each student program's own conformance checks once
// (the server suite, the client judge), restricted to the requirements
// blame cites, with grade: its class reports land in OUT/conformance/.
func (m *Matrix) runConformance(ctx context.Context, o *Options) error {
	jobs := (o.Jobs + 1) / 2
	var wg sync.WaitGroup
	var errs [2]error
	var classes [2]*grade.Class
	for i, side := range []struct {
		kind grade.Kind
		subs []grade.Submission
		run  string
		sel  []string
	}{
		{grade.Servers, o.Servers, o.ServerRun, o.ServerSelectors},
		{grade.Clients, o.Clients, o.ClientRun, o.ClientSelectors},
	} {
		if len(side.subs) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			classes[i], errs[i] = grade.Run(ctx, grade.Options{Kind: side.kind, Submissions: side.subs, Run: side.run,
				Jobs: jobs, Out: filepath.Join(o.Out, "conformance", string(side.kind)), Stepkit: o.Stepkit,
				Selectors: side.sel, StartTimeout: o.StartTimeout, RunTimeout: o.ConformanceTimeout,
				Memory: o.Memory, CPU: o.CPU, RequireIsolation: true})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("conformance of the %s: %w", []string{"servers", "clients"}[i], err)
		}
	}
	attach := func(progs []Program, class *grade.Class, kind grade.Kind) {
		if class == nil {
			return
		}
		byID := map[string]*grade.Result{}
		for _, r := range class.Results {
			byID[r.ID] = r
		}
		for i := range progs {
			r := byID[progs[i].ID]
			if r == nil {
				continue
			}
			c := &Conformance{Verdict: string(r.Verdict), Problem: r.Problem, Requirements: map[string]string{}}
			if r.Report != nil {
				for _, v := range r.Report.Requirements {
					c.Requirements[v.ID] = v.Verdict
				}
				c.Report = filepath.Join("conformance", string(kind), "students", r.ID, "report.html")
			}
			progs[i].Conformance = c
		}
	}
	attach(m.Servers, classes[0], grade.Servers)
	attach(m.Clients, classes[1], grade.Clients)
	return nil
}
