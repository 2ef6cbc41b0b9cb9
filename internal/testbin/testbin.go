// Package testbin builds the stepkit binary once for a test binary's run,
// for the tests that run it as a separate process, the way an instructor
// or a student does.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Run builds cmd/stepkit into a folder of its own, sets *bin to its path,
// runs the tests and removes the folder. It returns the tests' exit code,
// for TestMain to pass to os.Exit after any cleaning of its own:
//
//	func TestMain(m *testing.M) { os.Exit(testbin.Run(m, &stepkitBin)) }
func Run(m *testing.M, bin *string) int {
	dir, err := os.MkdirTemp("", "stepkit-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "stepkit for the tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	*bin = filepath.Join(dir, "stepkit")
	build := exec.Command("go", "build", "-o", *bin, "github.com/stepkit/stepkit/cmd/stepkit")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build stepkit for the tests: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}
