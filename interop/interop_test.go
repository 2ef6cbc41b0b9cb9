package interop_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stepkit/stepkit/interop"
)

func TestFixtureClassExplore(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	srv, cli := class(t, dir, fixtureServers, fixtureClients)
	out := filepath.Join(dir, "out")
	if o := os.Getenv("INTEROP_OUT"); o != "" {
		out = o
	}
	start := time.Now()
	m, err := interop.Run(context.Background(), interop.Options{Servers: srv, Clients: cli, Out: out,
		Conformance: os.Getenv("NOCONF") == "", Stepkit: stepkitBin, ClientTimeout: 10 * time.Second,
		Phase: func(p string) { t.Logf("%s: %s", time.Since(start), p) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("took %s", time.Since(start))
	for _, row := range m.Cells {
		for _, c := range row {
			t.Logf("%-10s × %-10s %-5s %s", c.Server, c.Client, c.Outcome, c.Blame)
			for _, r := range c.Scenarios {
				if r.Outcome != interop.Pass {
					t.Logf("     %s %s %s | %v", r.Scenario, r.Outcome, r.Blame, r.Evidence)
				}
			}
		}
	}
	t.Log(out)
}
