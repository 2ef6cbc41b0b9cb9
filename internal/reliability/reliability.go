// Package reliability records what stepkit's robustness tests tried and
// what happened, so that docs/reliability.md is written from the tests'
// results rather than by hand.
//
// A test calls Record with one Row per fault or hostile input it tried.
// When the environment variable named by EnvVar holds a file name, each
// row is appended to that file as one JSON line; otherwise Record does
// nothing. docs/gen turns the file into the Markdown document.
package reliability

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
)

// EnvVar names the file that rows are appended to.
const EnvVar = "STEPKIT_RELIABILITY"

// Row is one fault or hostile input, as a test tried it. Only values that
// are the same on every run may appear in it: counts the test fixes, not
// counts a timer decides.
type Row struct {
	Area    string `json:"area"`    // "server", "decoder" or "client"
	Input   string `json:"input"`   // the fault or hostile input
	Times   int    `json:"times"`   // how many times it was tried
	Outcome string `json:"outcome"` // what stepkit did
	Lost    string `json:"lost"`    // what was lost ("nothing")
	Test    string `json:"test"`    // the test that tried it
}

// Record appends r, with the test's name, to the file named by EnvVar.
func Record(tb testing.TB, r Row) {
	tb.Helper()
	name := os.Getenv(EnvVar)
	if name == "" {
		return
	}
	if r.Test == "" {
		r.Test = tb.Name()
	}
	b, err := json.Marshal(r)
	if err != nil {
		tb.Fatalf("reliability: %v", err)
	}
	// One write of one line with O_APPEND: test binaries of several
	// packages may append at once.
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		tb.Fatalf("reliability: %v", err)
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		tb.Fatalf("reliability: write %s: %v", name, err)
	}
}

// Validate reports what is wrong with a row read back.
func (r Row) Validate() error {
	switch {
	case r.Area == "" || r.Input == "" || r.Outcome == "" || r.Lost == "" || r.Test == "":
		return fmt.Errorf("row of %q lacks a field", r.Test)
	case r.Times <= 0:
		return fmt.Errorf("row %q of %s: tried %d times", r.Input, r.Test, r.Times)
	}
	return nil
}
