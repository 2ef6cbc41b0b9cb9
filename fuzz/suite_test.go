package fuzz_test

import (
	"context"
	"testing"
	"time"

	"github.com/stepkit/stepkit/conformance"
)

// The fixtures' bugs are ones the conformance suite does not catch: each
// fixture passes the whole suite (the correct one too, as a control).
func TestFixturesPassTheSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole suite four times")
	}
	dir := buildBuggy(t)
	for _, bug := range []string{"none", "crash", "silence", "md5"} {
		t.Run(bug, func(t *testing.T) {
			addr := startBuggy(t, dir, bug)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			rep, err := conformance.Run(ctx, conformance.Options{Config: conformance.Config{Target: addr}, Parallel: conformance.DefaultParallel})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Counts[conformance.Pass] < 100 {
				t.Errorf("only %d cases passed: %v", rep.Counts[conformance.Pass], rep.Counts)
			}
			t.Logf("%s: %v", bug, rep.Counts)
			if !rep.Conformant {
				t.Errorf("the %s fixture is not conformant: %d FAIL, %d ERROR; the fuzzer's fixtures must have bugs the suite misses", bug, rep.Counts[conformance.Fail], rep.Counts[conformance.Error])
				for _, c := range rep.Cases {
					if c.Outcome == conformance.Fail || c.Outcome == conformance.Error {
						t.Logf("%s %s", c.ID, c.Outcome)
					}
				}
			}
		})
	}
}
