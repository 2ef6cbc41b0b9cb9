package fuzz_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stepkit/stepkit/fuzz"
	"github.com/stepkit/stepkit/refserver"
)

// budget is a test's exploring time: STEPKIT_FUZZ_BUDGET (seconds) or d.
func budget(d time.Duration) time.Duration {
	if s := os.Getenv("STEPKIT_FUZZ_BUDGET"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return d
}

// The reference server is correct: whatever the fuzzer sends it, it finds
// nothing.
func TestRefserverHasNoFindings(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	target, err := fuzz.NewRemote(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := fuzz.Run(ctx, fuzz.Options{Target: target, Duration: budget(12 * time.Second), Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d inputs, %d behaviours, corpus %d", res.Inputs, res.Behaviours, res.Corpus)
	if res.Inputs < 100 {
		t.Errorf("only %d inputs tried", res.Inputs)
	}
	for _, f := range res.Findings {
		t.Errorf("false positive %s: %s %s %s (%s %d): %s; expected %s", f.ID, f.Oracle, f.Requirement, f.Operation, "status", f.Status, f.Message, f.Expected)
		for _, a := range f.Answers {
			t.Logf("  step %d %s -> %s %s %s", a.Step, a.Sent, a.Outcome, a.Answer, a.Detail)
		}
	}
}
