package conformance_test

import (
	"context"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/onsi/ginkgo/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/refserver"
)

var (
	target      = flag.String("target", "", "STEP server to check, host:port (default $STEP_TARGET, else an in-process refserver)")
	readTimeout = flag.Duration("read-timeout", conformance.DefaultReadTimeout, "per-read timeout")
)

// The in-process server's timeouts: short, so that ROBUST-5 is checked in
// seconds, yet long enough that a case whose connection waits on a loaded
// machine (the race detector, other test binaries) is not cut off by them.
const testIdle = 4 * time.Second

// startTarget returns the server the suite checks: -target, $STEP_TARGET,
// or a fresh refserver.
func startTarget(t *testing.T) conformance.Config {
	cfg := conformance.Config{Target: *target, ReadTimeout: *readTimeout}
	if cfg.Target == "" {
		cfg.Target = os.Getenv("STEP_TARGET")
	}
	if cfg.Target == "" {
		addr, _ := refserver.StartTest(t, refserver.Config{ReadTimeout: testIdle, IdleTimeout: testIdle})
		cfg.Target = addr
		cfg.IdleTimeout = testIdle
	}
	return cfg
}

// TestConformance runs the whole suite: `go test ./conformance` checks the
// built-in server, `go test ./conformance -args -target host:port` (or
// STEP_TARGET) another one. Ginkgo's -ginkgo.label-filter selects cases.
func TestConformance(t *testing.T) {
	cfg := startTarget(t)
	suiteCfg, _ := ginkgo.GinkgoConfiguration()
	var ran []string
	rep, err := conformance.Run(context.Background(), conformance.Options{Config: cfg, LabelFilter: suiteCfg.LabelFilter,
		Progress: func(c *conformance.Case, _ conformance.Outcome, _, _ int) { ran = append(ran, c.ID) }})
	if err != nil {
		t.Fatal(err)
	}
	if suiteCfg.LabelFilter == "" {
		checkLateCase(t, ran, rep)
	}
	if !rep.Conformant || testing.Verbose() {
		if err := rep.WriteText(os.Stdout, false, !rep.Conformant); err != nil {
			t.Fatal(err)
		}
	}
	if !rep.Conformant {
		t.Errorf("%s is not conformant: %d FAIL, %d ERROR", cfg.Target, rep.Counts[conformance.Fail], rep.Counts[conformance.Error])
	}
}

// TestConformanceAccountMode runs the suite against refserver in account
// mode with every extension the run can be told about: real users, expiring
// tokens, a quota and a connection cap. The cases that are informational
// in course mode then pass.
func TestConformanceAccountMode(t *testing.T) {
	hashes := map[string]string{}
	for _, u := range [][2]string{{"alice", "alice-pw"}, {"bob", "bob-pw"}} {
		// The lowest cost: the suite logs in a few hundred times.
		h, err := bcrypt.GenerateFromPassword([]byte(u[1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		hashes[u[0]] = string(h)
	}
	acc, err := refserver.NewAccounts(hashes, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := refserver.StartTest(t, refserver.Config{Accounts: acc, Quota: 1 << 20, MaxConns: 24})
	cfg := conformance.Config{Target: addr, User: "alice", Password: "alice-pw", User2: "bob", Password2: "bob-pw",
		Quota: 1 << 20, MaxConns: 24}
	rep, err := conformance.Run(context.Background(), conformance.Options{Config: cfg, LabelFilter: "!req:TOKEN-7"})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Conformant {
		rep.WriteText(os.Stdout, false, true)
		t.Fatalf("account mode not conformant: %v", rep.Counts)
	}
	for _, id := range []string{"EXT-1", "EXT-3", "EXT-4"} {
		if c, ok := rep.Case(id); !ok || c.Outcome != conformance.Pass {
			t.Errorf("%s: %s %v", id, c.Outcome, c.Findings)
		}
	}

	// Expiry on its own, with a short lifetime: tokens carry whole seconds,
	// so a lifetime this short would expire tokens inside other cases.
	const ttl = time.Second
	addr, _ = refserver.StartTest(t, refserver.Config{Accounts: acc, TokenTTL: ttl})
	cfg = conformance.Config{Target: addr, User: "alice", Password: "alice-pw", TokenTTL: ttl}
	rep, err = conformance.Run(context.Background(), conformance.Options{Config: cfg, Selectors: []string{"TOKEN-7"}})
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := rep.Case("TOKEN-7"); !ok || c.Outcome != conformance.Pass {
		t.Errorf("TOKEN-7: %s %v", c.Outcome, c.Findings)
	}
}

// checkLateCase: TOKEN-11 runs after every other case, so that the run's
// first token is as old as the run, yet the report lists it in its section.
func checkLateCase(t *testing.T, ran []string, rep *conformance.Report) {
	t.Helper()
	if len(ran) == 0 || ran[len(ran)-1] != "TOKEN-11" {
		t.Errorf("TOKEN-11 did not run last")
	}
	var sections []string
	for _, c := range rep.Cases {
		if n := len(sections); n == 0 || sections[n-1] != c.Section {
			sections = append(sections, c.Section)
		}
	}
	seen := map[string]bool{}
	for _, s := range sections {
		if seen[s] {
			t.Errorf("the report lists section %s in two places: %v", s, sections)
		}
		seen[s] = true
	}
}
