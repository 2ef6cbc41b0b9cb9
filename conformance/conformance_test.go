package conformance_test

import (
	"context"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/onsi/ginkgo/v2"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/refserver"
)

var (
	target      = flag.String("target", "", "STEP server to check, host:port (default $STEP_TARGET, else an in-process refserver)")
	readTimeout = flag.Duration("read-timeout", conformance.DefaultReadTimeout, "per-read timeout")
)

// The in-process server's timeouts, short so that ROBUST-5 can be checked.
const testIdle = 1500 * time.Millisecond

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
	rep, err := conformance.Run(context.Background(), conformance.Options{Config: cfg, LabelFilter: suiteCfg.LabelFilter})
	if err != nil {
		t.Fatal(err)
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
