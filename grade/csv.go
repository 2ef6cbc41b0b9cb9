package grade

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/stepkit/stepkit/conformance"
)

// CSVHeader is the header of class.csv.
var CSVHeader = []string{"id", "verdict", "score", "earned", "possible",
	"pass", "fail", "non_strict", "informational", "error", "seconds",
	"failed", "non_strict_requirements", "problem", "output", "isolated",
	"better_than_baseline", "worse_than_baseline", "same_bugs_as_baseline", "sandbox"}

// WriteCSV writes one row per student (the baseline, if any, first, with
// the id "baseline").
func (c *Class) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	rows := c.Results
	if c.Baseline != nil {
		rows = append([]*Result{c.Baseline}, rows...)
	}
	for i, r := range rows {
		id := r.ID
		if i == 0 && c.Baseline != nil {
			id = "baseline"
		}
		n := func(o conformance.Outcome) string { return strconv.Itoa(r.Counts[o]) }
		rec := []string{id, string(r.Verdict), num(r.Score.Score), num(r.Score.Earned), num(r.Score.Possible),
			n(conformance.Pass), n(conformance.Fail), n(conformance.NonStrict), n(conformance.Informational), n(conformance.Error),
			fmt.Sprintf("%.1f", r.Duration.Seconds()),
			strings.Join(r.Failed, " "), strings.Join(r.NonStrict, " "), r.Problem, strings.Join(r.Output, "\n"),
			strconv.FormatBool(r.Isolated),
			strings.Join(r.Better, " "), strings.Join(r.Worse, " "), strings.Join(r.SameBugs, " "), r.Sandbox}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
