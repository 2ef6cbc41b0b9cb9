package grade

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// FuzzResult is what stepkit fuzz found in a submission's server, for the
// class report's fuzz column.
type FuzzResult struct {
	Findings int    `json:"findings"`
	Report   string `json:"report"`            // the fuzz report, relative to the submission's folder
	Problem  string `json:"problem,omitempty"` // why the fuzzer did not run to its end
}

// fuzzShrinkTime bounds the shrinking of each finding in a graded run, so
// that a server with many findings does not hold up the class.
const fuzzShrinkTime = 10 * time.Second

// fuzz runs stepkit fuzz against the server at addr for the budget, in the
// box's network, into dir/fuzz.
func (g *grader) fuzz(ctx context.Context, command func(context.Context, []string) *exec.Cmd, dir, addr string) *FuzzResult {
	out := filepath.Join(dir, "fuzz")
	res := &FuzzResult{Report: "fuzz/report.html"}
	argv := []string{g.o.Stepkit, "fuzz", "--target", addr, "--duration", g.o.Fuzz.String(),
		"--shrink-time", fuzzShrinkTime.String(), "--read-timeout", g.o.ReadTimeout.String(), "--out", out, "--no-color"}
	log, err := newOutput(filepath.Join(dir, "fuzz.txt"))
	if err != nil {
		res.Problem = err.Error()
		return res
	}
	cmd := command(ctx, argv)
	cmd.Stdout, cmd.Stderr = log, log
	runErr := cmd.Run()
	log.Close()
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		res.Problem = fmt.Sprintf("the fuzzer wrote no report (%v): %s", runErr, lastLine(log))
		return res
	}
	var rep struct {
		Findings []json.RawMessage `json:"findings"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		res.Problem = "the fuzz report: " + err.Error()
		return res
	}
	res.Findings = len(rep.Findings)
	return res
}
