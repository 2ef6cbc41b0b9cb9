package grade_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// stepkitBin is the stepkit binary the tests grade with, built once.
var stepkitBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stepkit-grade-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stepkitBin = filepath.Join(dir, "stepkit")
	build := exec.Command("go", "build", "-o", stepkitBin, "github.com/stepkit/stepkit/cmd/stepkit")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build stepkit: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
