package fuzz

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// ReportJSONSchema is the JSON Schema (draft 2020-12) of the JSON report.
//
//go:embed report.schema.json
var ReportJSONSchema []byte

// Report is a run's JSON report.
type Report struct {
	Tool        string          `json:"tool"`
	Target      string          `json:"target"`
	Managed     bool            `json:"managed"`
	Seed        uint64          `json:"seed"`
	Started     time.Time       `json:"started"`
	DurationS   float64         `json:"duration_s"`
	ExploredS   float64         `json:"explored_s"`
	ReadTimeout float64         `json:"read_timeout_s"`
	Inputs      int             `json:"inputs"`
	Corpus      int             `json:"corpus"`
	Behaviours  int             `json:"behaviours"`
	Restarts    int             `json:"restarts"`
	BlockSize   int64           `json:"block_size"`
	Stopped     string          `json:"stopped,omitempty"`
	Findings    []ReportFinding `json:"findings"`
}

// ReportFinding is one finding in the JSON report.
type ReportFinding struct {
	*Finding
	FoundAfterS float64 `json:"found_after_s"`
	Requests    int     `json:"requests"`
	Connections int     `json:"connections"`
	Steps       []Step  `json:"steps"`
}

// Report returns the run's JSON report.
func (r *Result) Report() *Report {
	rep := &Report{Tool: "stepkit fuzz", Target: r.Target, Managed: r.Managed, Seed: r.Seed, Started: r.Started,
		DurationS: r.Duration.Seconds(), ExploredS: r.Explored.Seconds(), ReadTimeout: r.ReadTimeout.Seconds(),
		Inputs: r.Inputs, Corpus: r.Corpus, Behaviours: r.Behaviours, Restarts: r.Restarts, BlockSize: r.BlockSize,
		Stopped: r.Stopped, Findings: []ReportFinding{}}
	for _, f := range r.Findings {
		if f.Answers == nil {
			f.Answers = []Answer{}
		}
		rep.Findings = append(rep.Findings, ReportFinding{Finding: f, FoundAfterS: f.FoundAfter.Seconds(),
			Requests: f.Repro.Requests(), Connections: f.Repro.Conns(), Steps: f.Repro.Steps})
	}
	return rep
}

// WriteJSON writes the JSON report.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.Report())
}

// WriteText writes the terminal report.
func (r *Result) WriteText(w io.Writer, colour bool) error {
	red, green, bold, reset := "", "", "", ""
	if colour {
		red, green, bold, reset = "\x1b[31m", "\x1b[32m", "\x1b[1m", "\x1b[0m"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%sstepkit fuzz%s %s (seed %d)\n", bold, reset, r.Target, r.Seed)
	fmt.Fprintf(&b, "%d inputs in %v, %d behaviours seen, %d inputs kept, %d restarts\n",
		r.Inputs, r.Explored.Round(time.Second), r.Behaviours, r.Corpus, r.Restarts)
	if r.Stopped != "" {
		fmt.Fprintf(&b, "exploring ended early: %s\n", r.Stopped)
	}
	if len(r.Findings) == 0 {
		fmt.Fprintf(&b, "%sno findings%s\n", green, reset)
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "%s%d finding(s)%s\n", red, len(r.Findings), reset)
	for _, f := range r.Findings {
		st := "no answer"
		if f.Status != 0 {
			st = fmt.Sprintf("status %d", f.Status)
		}
		fmt.Fprintf(&b, "\n%s%s %s %s%s  %s, %s: %s\n", bold, f.ID, strings.ToUpper(f.Oracle), f.Requirement, reset, f.Operation, st, f.Message)
		if f.Expected != "" {
			fmt.Fprintf(&b, "    expected:   %s\n", f.Expected)
		}
		if f.Text != "" {
			fmt.Fprintf(&b, "    requires:   %s (%s): %s\n", f.Requirement, f.Level, f.Text)
		}
		fmt.Fprintf(&b, "    found:      after %v (input %d)\n", f.FoundAfter.Round(time.Millisecond), f.FoundAtInput)
		how := "shrunk"
		if !f.Minimised {
			how = "as found"
		}
		fmt.Fprintf(&b, "    reproducer: %d requests on %d connection(s), %s in %d runs; shown again %d of %d times", f.Repro.Requests(), f.Repro.Conns(), how, f.ShrinkChecks, f.Reproduced, f.Confirmed)
		if f.Files.JSON != "" {
			fmt.Fprintf(&b, "; %s, %s", f.Files.JSON, f.Files.Python)
		}
		b.WriteString("\n")
		if f.ShrinkNote != "" {
			fmt.Fprintf(&b, "    note:       %s\n", f.ShrinkNote)
		}
		for _, a := range f.Answers {
			fmt.Fprintf(&b, "      %d. %s\n", a.Step, clip(a.Sent, 160))
			switch {
			case a.Answer != "":
				bin := ""
				if a.Binary > 0 {
					bin = fmt.Sprintf(" + %d binary bytes", a.Binary)
				}
				fmt.Fprintf(&b, "         -> %s%s\n", clip(a.Answer, 200), bin)
			case a.Outcome != NotJudged:
				fmt.Fprintf(&b, "         -> %s %s\n", a.Outcome, a.Detail)
			}
		}
		if f.Output != "" {
			fmt.Fprintf(&b, "    server printed: %s\n", f.Output)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// Counts returns the findings per oracle, for summaries.
func (r *Result) Counts() map[string]int {
	c := map[string]int{}
	for _, f := range r.Findings {
		c[f.Oracle]++
	}
	return c
}

var htmlTmpl = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("fuzz").Funcs(template.FuncMap{
		"upper": strings.ToUpper,
		"secs":  func(d time.Duration) string { return d.Round(time.Millisecond).String() },
		"oracles": func(m map[string]int) []string {
			var out []string
			for k, v := range m {
				out = append(out, fmt.Sprintf("%s %d", k, v))
			}
			sort.Strings(out)
			return out
		},
	}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>stepkit fuzz: {{.Target}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:75em;color:#222}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:2em;border-top:1px solid #ccc;padding-top:1em}
.fail{color:#b00020} .ok{color:#1b5e20} .meta{color:#555}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
pre,code{font-family:ui-monospace,monospace;font-size:.9em;white-space:pre-wrap;word-break:break-all}
.req{background:#fff3e0;padding:.5em;border-left:4px solid #ef6c00}
</style></head><body>
<h1>stepkit fuzz: {{.Target}}</h1>
<p class="meta">seed {{.Seed}} · started {{.Started.Format "2006-01-02 15:04:05 MST"}} · {{.Inputs}} inputs in {{secs .Explored}} · {{.Behaviours}} behaviours · {{.Corpus}} inputs kept · {{.Restarts}} restarts{{if .Stopped}} · ended early: {{.Stopped}}{{end}}</p>
{{if not .Findings}}<p class="ok"><b>No findings.</b></p>{{else}}
<p class="fail"><b>{{len .Findings}} finding(s)</b>: {{range oracles .Counts}}{{.}} · {{end}}</p>
<table><tr><th>ID</th><th>oracle</th><th>requirement</th><th>operation</th><th>status</th><th>found after</th><th>requests</th><th>reproduced</th></tr>
{{range .Findings}}<tr><td><a href="#{{.ID}}">{{.ID}}</a></td><td>{{.Oracle}}</td><td>{{.Requirement}}</td><td>{{.Operation}}</td><td>{{if .Status}}{{.Status}}{{else}}none{{end}}</td><td>{{secs .FoundAfter}}</td><td>{{.Repro.Requests}}</td><td>{{.Reproduced}}/{{.Confirmed}}</td></tr>
{{end}}</table>{{end}}
{{range .Findings}}
<h2 id="{{.ID}}">{{.ID}} <span class="fail">{{upper .Oracle}}</span> {{.Requirement}}: {{.Operation}}</h2>
<p>{{.Message}}</p>
{{if .Expected}}<p><b>Expected:</b> {{.Expected}}</p>{{end}}
{{if .Text}}<p class="req"><b>{{.Requirement}} ({{.Level}})</b> {{.Text}}</p>{{end}}
<p class="meta">found after {{secs .FoundAfter}} (input {{.FoundAtInput}}); reproducer of {{.Repro.Requests}} requests on {{.Repro.Conns}} connection(s){{if .Minimised}}, shrunk in {{.ShrinkChecks}} runs{{end}}; shown again {{.Reproduced}} of {{.Confirmed}} times{{if .ShrinkNote}}; {{.ShrinkNote}}{{end}}</p>
{{if .Files.JSON}}<p>Reproducers: <a href="{{.Files.JSON}}">{{.Files.JSON}}</a> (<code>stepkit replay {{.Files.JSON}} --target HOST:PORT</code>) and <a href="{{.Files.Python}}">{{.Files.Python}}</a> (<code>python3 {{.Files.Python}} HOST PORT</code>)</p>{{end}}
<table><tr><th>step</th><th>sent</th><th>the server's answer</th></tr>
{{range .Answers}}<tr><td>{{.Step}}</td><td><code>{{.Sent}}</code></td><td>{{if .Answer}}<code>{{.Answer}}</code>{{if .Binary}} + {{.Binary}} binary bytes{{end}}{{else}}<b>{{.Outcome}}</b> {{.Detail}}{{end}}</td></tr>
{{end}}</table>
{{if .Output}}<p><b>The server printed:</b></p><pre>{{.Output}}</pre>{{end}}
{{end}}
</body></html>
`))
})

// WriteHTML writes a self-contained HTML report.
func (r *Result) WriteHTML(w io.Writer) error { return htmlTmpl().Execute(w, r) }
