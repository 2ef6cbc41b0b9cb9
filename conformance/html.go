package conformance

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"sync"
)

// WriteHTML writes a self-contained HTML report (one file, no external
// resources): the verdict and counts, one table per section, and for every
// case an expandable block with its findings and wire exchange.
func (r *Report) WriteHTML(w io.Writer) error {
	type section struct {
		Name   string
		Counts map[Outcome]int
		Cases  []CaseReport
	}
	var secs []section
	index := map[string]int{}
	for _, c := range r.Cases {
		i, ok := index[c.Section]
		if !ok {
			i = len(secs)
			index[c.Section] = i
			counts := map[Outcome]int{}
			for _, s := range r.Sections {
				if s.Section == c.Section {
					counts = s.Counts
				}
			}
			secs = append(secs, section{Name: c.Section, Counts: counts})
		}
		secs[i].Cases = append(secs[i].Cases, c)
	}
	var broken []RequirementVerdict
	for _, v := range r.Requirements {
		if v.Verdict != string(Pass) && v.Verdict != string(Informational) {
			broken = append(broken, v)
		}
	}
	data := struct {
		R        *Report
		Sections []section
		Outcomes []Outcome
		Broken   []RequirementVerdict
	}{r, secs, Outcomes(), broken}
	return htmlTemplate().Execute(w, data)
}

var htmlTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("report").Funcs(template.FuncMap{
		"lower":  func(o Outcome) string { return strings.ToLower(strings.ReplaceAll(string(o), "-", "")) },
		"lowers": func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "-", "")) },
		"join":   func(s []string) string { return strings.Join(s, ", ") },
		"words":  func(s []string) string { return strings.Join(s, " ") },
		"secs":   func(ms float64) string { return fmt.Sprintf("%.2f s", ms/1000) },
		"msec":   func(ms float64) string { return fmt.Sprintf("%.1f ms", ms) },
		"at":     func(e Event) string { return fmt.Sprintf("%.1f", float64(e.At.Microseconds())/1000) },
		"arrow": func(e Event) string {
			switch e.Dir {
			case "send":
				return "→"
			case "recv":
				return "←"
			}
			return "·"
		},
	}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>STEP conformance of {{.R.Target}}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.5em;margin-bottom:.2em}
.meta{color:#666;margin-bottom:1em}
.verdict{font-size:1.2em;font-weight:bold;padding:.4em .8em;display:inline-block;border-radius:4px}
.verdict.ok{background:#e3f5e1;color:#1b6e14}.verdict.bad{background:#fde2e1;color:#a11}
table{border-collapse:collapse;margin:.5em 0 1.5em 0;width:100%}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f5f5f5}
td.n{text-align:right;width:6em}
.o{font-weight:bold;white-space:nowrap}
.blocked{color:#777}.pass{color:#1b6e14}.fail{color:#b00}.error{color:#b00}.nonstrict{color:#a66b00}.informational{color:#06c}
details{margin:.1em 0}
summary{cursor:pointer}
pre{background:#f8f8f8;border:1px solid #eee;padding:.5em;overflow-x:auto;white-space:pre-wrap;word-break:break-all;font-size:.85em}
.req{color:#555;font-size:.9em}
.ex td{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.8em;border:none;border-bottom:1px solid #f0f0f0}
.ex td.dir{width:1.5em;text-align:center}
</style>
</head>
<body>
<h1>STEP conformance of {{.R.Target}}</h1>
<div class="meta">{{.R.Started.Format "2006-01-02 15:04:05 MST"}} · {{len .R.Cases}} cases in {{secs .R.DurationMS}}{{if .R.Strict}} · strict{{end}} · {{with .R.Client}}client folder {{.Dir}} · time limit {{.TimeoutMS}} ms per case{{else}}read timeout {{.R.Settings.ReadTimeoutMS}} ms · {{if .R.Settings.Accounts}}accounts {{.R.Settings.User}}{{if .R.Settings.User2}}, {{.R.Settings.User2}}{{end}}{{else}}random users under the course login rule{{end}}{{end}}{{if .R.Preflight}} · preflight: {{.R.Preflight}}{{end}}</div>
{{with .R.Sandbox}}<div class="meta"><b>sandbox: {{.}}</b></div>{{end}}
{{with .R.Execution}}<div class="meta">execution: {{.Summary}}<br>silence: {{.Silence}}</div>{{end}}
<div class="verdict {{if .R.Conformant}}ok{{else}}bad{{end}}">{{if .R.Conformant}}CONFORMANT{{else}}NOT CONFORMANT{{end}}</div>
<table style="width:auto">
<tr>{{range .Outcomes}}<th class="{{lower .}}">{{.}}</th>{{end}}</tr>
<tr>{{range .Outcomes}}<td class="n">{{index $.R.Counts .}}</td>{{end}}</tr>
</table>
<h2>Sections</h2>
<table>
<tr><th>section</th>{{range .Outcomes}}<th class="{{lower .}}">{{.}}</th>{{end}}</tr>
{{range .Sections}}{{$s := .}}<tr><td><a href="#sec-{{.Name}}">{{.Name}}</a></td>{{range $.Outcomes}}<td class="n">{{index $s.Counts .}}</td>{{end}}</tr>
{{end}}</table>
{{if .Broken}}<h2>Requirements not met</h2>
<table>
<tr><th style="width:10em">requirement</th><th style="width:6em">level</th><th style="width:8em">verdict</th><th>found in</th></tr>
{{range .Broken}}<tr><td>{{.ID}}</td><td>{{.Level}}</td><td class="o {{lowers .Verdict}}">{{.Verdict}}</td><td>{{join .Broken}}{{if not .Broken}}(every case citing it stopped earlier: {{join .Cases}}){{end}}</td></tr>
{{end}}</table>{{end}}
{{range .Sections}}
<h2 id="sec-{{.Name}}">{{.Name}}</h2>
<table>
<tr><th style="width:9em">case</th><th style="width:8em">outcome</th><th>what it checks</th><th style="width:6em">time</th></tr>
{{range .Cases}}<tr id="case-{{.ID}}">
<td><a href="#case-{{.ID}}">{{.ID}}</a></td>
<td class="o {{lower .Outcome}}">{{.Outcome}}</td>
<td><details{{if or (eq .Outcome "FAIL") (eq .Outcome "ERROR")}} open{{end}}><summary>{{.Title}}</summary>
{{range .Requirements}}<div class="req"><b>{{.ID}}</b> ({{.Level}}): {{.Text}}</div>{{end}}
{{range .Findings}}<pre class="{{lower .Outcome}}">{{.String}}</pre>{{end}}
{{range .Notes}}<div class="req">note: {{.}}</div>{{end}}
{{with .Client}}<div class="req">client: <code>{{words .Command}}</code> · {{.Exit}} after {{msec .DurationMS}}</div>{{if .Sandbox}}<div class="req"><b>sandbox: {{.Sandbox}}</b></div>{{end}}{{if .Stdout}}<pre class="out">stdout:
{{.Stdout}}</pre>{{end}}{{if .Stderr}}<pre class="out">stderr:
{{.Stderr}}</pre>{{end}}{{end}}
{{if .Exchange}}<details><summary>wire exchange ({{len .Exchange}} events)</summary>
<table class="ex">{{range .Exchange}}<tr><td>{{at .}} ms</td><td>c{{.Conn}}</td><td class="dir">{{arrow .}}</td><td>{{if .JSON}}{{.JSON}}{{end}}{{if .Binary}} + {{.Binary}} binary bytes{{end}}{{if .Note}} {{.Note}}{{end}}{{if .Hex}}<pre>{{.Hex}}</pre>{{end}}</td></tr>{{end}}</table>
</details>{{end}}
</details></td>
<td class="n">{{msec .DurationMS}}</td>
</tr>{{end}}
</table>
{{end}}
</body>
</html>
`))
})
