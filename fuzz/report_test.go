package fuzz_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/fuzz"
)

// Against a server stepkit did not start (--target), a finding is shrunk
// against the same server, and the three reports say what was found, with
// the reproducer and the requirement; the JSON report follows its schema.
func TestReportsOfATargetRun(t *testing.T) {
	dir := buildBuggy(t)
	addr := startBuggy(t, dir, "silence")
	target, err := fuzz.NewRemote(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := fuzz.Run(ctx, fuzz.Options{Target: target, Duration: 60 * time.Second, Seed: 3, StopAtFirst: true, ReadTimeout: time.Second, ShrinkTime: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Findings) != 1 || res.Findings[0].Oracle != fuzz.OracleSilence {
		t.Fatalf("want the one silence, got %s", summary(res))
	}
	f := res.Findings[0]
	if !f.Minimised || f.Repro.Requests() > 5 || f.Reproduced != f.Confirmed {
		t.Errorf("minimised %v, %d requests, reproduced %d of %d", f.Minimised, f.Repro.Requests(), f.Reproduced, f.Confirmed)
	}
	out := t.TempDir()
	if err := fuzz.WriteRepro(out, "F1", f, res.ReadTimeout); err != nil {
		t.Fatal(err)
	}
	var js, html, text bytes.Buffer
	if err := res.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := conformance.ValidateJSON(fuzz.ReportJSONSchema, js.Bytes()); err != nil {
		t.Errorf("the JSON report: %v\n%s", err, js.String())
	}
	if err := res.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	if err := res.WriteText(&text, false); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]string{"JSON": js.String(), "HTML": html.String(), "text": text.String()} {
		for _, want := range []string{"REQ-6", "F1.json", "F1.py", `DELETE`} {
			if !strings.Contains(b, want) {
				t.Errorf("the %s report does not mention %q", name, want)
			}
		}
	}
	for _, name := range []string{"F1.json", "F1.py"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Error(err)
		}
	}
	// A non-loopback target is refused before anything is sent.
	if _, err := fuzz.NewRemote("192.0.2.1:1379"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("a non-loopback target: %v", err)
	}
}

// A run with the same seed against the same server sends the same first
// inputs: the same answers come back, so the corpus grows the same way.
func TestSameSeedSameInputs(t *testing.T) {
	dir := buildBuggy(t)
	addr := startBuggy(t, dir, "none")
	target, err := fuzz.NewRemote(addr)
	if err != nil {
		t.Fatal(err)
	}
	var runs [2][]string
	for i := range runs {
		seen := &runs[i]
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := fuzz.Run(ctx, fuzz.Options{Target: target, Duration: time.Minute, Seed: 11, MaxInputs: 30,
			OnInput: func(in *fuzz.Input) { *seen = append(*seen, in.Key()) }})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(runs[0]) < 30 {
		t.Fatalf("only %d inputs", len(runs[0]))
	}
	for i := range runs[0] {
		if runs[0][i] != runs[1][i] {
			t.Fatalf("input %d differs between two runs with the same seed:\n%s\n%s", i, runs[0][i], runs[1][i])
		}
	}
}
