package interop

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/stepkit/stepkit/grade"
)

// ownChecks are the programs' own conformance results, by program id.
type ownChecks struct {
	servers, clients map[string]*Conformance
}

// failed says whether a program's own checks found it at fault; false
// without own checks.
func (own *ownChecks) failed(p Program, server bool) bool {
	if own == nil {
		return false
	}
	by := own.clients
	if server {
		by = own.servers
	}
	c := by[p.ID]
	return c != nil && c.Verdict != string(grade.Conformant)
}

// runConformance runs each student program's own conformance checks once
// (the server suite, the client judge), restricted to the requirements
// blame cites, with grade: its class reports land in OUT/conformance/.
// The two sides run side by side within one bound of o.Jobs programs at
// once: when one side is done, the other has every slot.
func runConformance(ctx context.Context, o *Options) (*ownChecks, error) {
	slots := make(chan struct{}, o.Jobs)
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
				Jobs: o.Jobs, Slots: slots, Out: filepath.Join(o.Out, "conformance", string(side.kind)), Stepkit: o.Stepkit,
				Selectors: side.sel, StartTimeout: o.StartTimeout, RunTimeout: o.ConformanceTimeout,
				Memory: o.Memory, CPU: o.CPU, RequireIsolation: true})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("conformance of the %s: %w", []string{"servers", "clients"}[i], err)
		}
	}
	results := func(class *grade.Class, kind grade.Kind) map[string]*Conformance {
		by := map[string]*Conformance{}
		if class == nil {
			return by
		}
		for _, r := range class.Results {
			c := &Conformance{Verdict: string(r.Verdict), Problem: r.Problem, Requirements: map[string]string{}}
			if r.Report != nil {
				for _, v := range r.Report.Requirements {
					c.Requirements[v.ID] = v.Verdict
				}
				c.Report = filepath.Join("conformance", string(kind), "students", r.ID, "report.html")
			}
			by[r.ID] = c
		}
		return by
	}
	return &ownChecks{servers: results(classes[0], grade.Servers), clients: results(classes[1], grade.Clients)}, nil
}

// attach gives each program its own checks' results.
func (m *Matrix) attach(own *ownChecks) {
	for i := range m.Servers {
		m.Servers[i].Conformance = own.servers[m.Servers[i].ID]
	}
	for i := range m.Clients {
		m.Clients[i].Conformance = own.clients[m.Clients[i].ID]
	}
}
