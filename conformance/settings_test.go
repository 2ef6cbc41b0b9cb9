package conformance_test

import (
	"context"
	"testing"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/refserver"
)

// TestBlockSizeSetting: FILE-SAVE-11 expects 20480 unless the run is told
// the server's configured block size, so a server configured otherwise is
// not marked down, and one that differs from what the run was told is.
func TestBlockSizeSetting(t *testing.T) {
	def, _ := refserver.StartTest(t, refserver.Config{})
	small, _ := refserver.StartTest(t, refserver.Config{BlockSize: 12800})
	tests := []struct {
		name   string
		target string
		told   int64
		want   conformance.Outcome
	}{
		{"default server, default expectation", def, 0, conformance.Pass},
		{"server configured for 12800, run told so", small, 12800, conformance.Pass},
		{"server configured for 12800, run not told", small, 0, conformance.NonStrict},
		{"default server, run told 12800", def, 12800, conformance.NonStrict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := conformance.Run(context.Background(), conformance.Options{
				Config:    conformance.Config{Target: tt.target, BlockSize: tt.told},
				Selectors: []string{"FILE-SAVE-11"},
			})
			if err != nil {
				t.Fatal(err)
			}
			c, ok := rep.Case("FILE-SAVE-11")
			if !ok || c.Outcome != tt.want {
				t.Errorf("FILE-SAVE-11: %s, want %s (%v)", c.Outcome, tt.want, c.Findings)
			}
		})
	}
	if err := (conformance.Config{Target: def, BlockSize: 1 << 20}).Validate(); err == nil {
		t.Error("a block size past 65536 was accepted")
	}
}
