package interop

import (
	_ "embed"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

//go:embed interop.schema.json
var schemaJSON []byte

// Schema is the JSON schema of interop.json.
func Schema() []byte { return schemaJSON }

// report is interop.json.
type report struct {
	Schema      string         `json:"$schema"`
	Version     int            `json:"version"`
	Started     string         `json:"started"`
	DurationSec float64        `json:"duration_s"`
	ConfSec     float64        `json:"conformance_s"`
	Jobs        int            `json:"jobs"`
	Servers     []Program      `json:"servers"`
	Clients     []Program      `json:"clients"`
	Scenarios   []ScenarioInfo `json:"scenarios"`
	Cells       []*Cell        `json:"cells"`
}

// Cell returns the cell of a server and a client by id, nil if none.
func (m *Matrix) Cell(server, client string) *Cell {
	for _, row := range m.Cells {
		for _, c := range row {
			if c != nil && c.Server == server && c.Client == client {
				return c
			}
		}
	}
	return nil
}

// WriteReports writes interop.html, interop.csv, interop.json and its
// schema, a page per cell and a page per student program into dir.
func (m *Matrix) WriteReports(dir string) error {
	var cells []*Cell
	for _, row := range m.Cells {
		for _, c := range row {
			if c != nil {
				cells = append(cells, c)
			}
		}
	}
	rep := report{Schema: "interop.schema.json", Version: 1, Started: m.Started.UTC().Format("2006-01-02T15:04:05Z"),
		DurationSec: m.Duration.Seconds(), ConfSec: m.Conformance.Seconds(), Jobs: m.Jobs, Servers: m.Servers, Clients: m.Clients, Scenarios: m.Scenarios, Cells: cells}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "interop.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "interop.schema.json"), schemaJSON, 0o644); err != nil {
		return err
	}
	if err := m.writeCSV(filepath.Join(dir, "interop.csv")); err != nil {
		return err
	}
	if err := writeTemplate(filepath.Join(dir, "interop.html"), matrixPage(), m.matrixView()); err != nil {
		return err
	}
	for _, c := range cells {
		if err := writeTemplate(filepath.Join(dir, filepath.FromSlash(c.Page)), cellPage(), m.cellView(c)); err != nil {
			return err
		}
	}
	for _, side := range []string{"servers", "clients"} {
		if err := os.MkdirAll(filepath.Join(dir, side), 0o755); err != nil {
			return err
		}
		progs := m.Servers
		if side == "clients" {
			progs = m.Clients
		}
		for _, p := range progs {
			if err := writeTemplate(filepath.Join(dir, side, p.ID+".html"), programPage(), m.programView(side, p)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *Matrix) writeCSV(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	head := []string{"server", "client", "outcome", "side", "requirement", "blame"}
	for _, s := range m.Scenarios {
		head = append(head, s.ID)
	}
	head = append(head, "page")
	w.Write(head)
	for _, row := range m.Cells {
		for _, c := range row {
			if c == nil {
				continue
			}
			rec := []string{c.Server, c.Client, string(c.Outcome), c.Side, c.Requirement, c.Blame}
			for i := range m.Scenarios {
				o := ""
				if i < len(c.Scenarios) {
					o = string(c.Scenarios[i].Outcome)
				}
				rec = append(rec, o)
			}
			w.Write(append(rec, c.Page))
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeTemplate(path string, t *template.Template, data any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := t.Execute(f, data); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// class is a cell's CSS class: its outcome, and for a failure the side.
func (c *Cell) class() string {
	switch c.Outcome {
	case Pass:
		return "pass"
	case Error:
		return "error"
	case Fail:
		return "fail-" + c.Side
	}
	return "na"
}

// mark is the cell's short label.
func (c *Cell) mark() string {
	switch c.Outcome {
	case Pass:
		return "✓"
	case Error:
		return "!"
	}
	switch c.Side {
	case SideServer:
		return "S"
	case SideClient:
		return "C"
	}
	return "?"
}

func (c *Cell) tooltip() string {
	if c.Outcome == Pass {
		n := 0
		for _, r := range c.Scenarios {
			if r.Outcome == Pass {
				n++
			}
		}
		return fmt.Sprintf("%s × %s: PASS (%d scenarios)", c.Server, c.Client, n)
	}
	t := c.Blame
	for _, e := range c.Evidence {
		t += "\n• " + e
	}
	return t
}

type headView struct {
	ID, Label, Link string
	Passed, Pairs   int
	Reference       bool
}

type cellView struct {
	Class, Mark, Title, Link string
}

type rowView struct {
	Head  headView
	Cells []cellView
}

type matrixView struct {
	Title    string
	Summary  string
	Columns  []headView
	Rows     []rowView
	Counts   map[string]int
	Schema   string
	Scenario []ScenarioInfo
}

func label(p Program) string {
	if p.Reference {
		return "stepkit (reference)"
	}
	return p.ID
}

func (m *Matrix) matrixView() matrixView {
	v := matrixView{Title: "STEP interop matrix", Counts: map[string]int{}, Scenario: m.Scenarios}
	for _, p := range m.Clients {
		v.Columns = append(v.Columns, headView{ID: p.ID, Label: label(p), Link: "clients/" + p.ID + ".html", Passed: p.Passed, Pairs: p.Pairs, Reference: p.Reference})
	}
	for s, p := range m.Servers {
		row := rowView{Head: headView{ID: p.ID, Label: label(p), Link: "servers/" + p.ID + ".html", Passed: p.Passed, Pairs: p.Pairs, Reference: p.Reference}}
		for _, c := range m.Cells[s] {
			if c == nil {
				row.Cells = append(row.Cells, cellView{Class: "na", Mark: "", Title: "not run"})
				continue
			}
			v.Counts[c.class()]++
			row.Cells = append(row.Cells, cellView{Class: c.class(), Mark: c.mark(), Title: c.tooltip(), Link: c.Page})
		}
		v.Rows = append(v.Rows, row)
	}
	v.Summary = fmt.Sprintf("%d servers × %d clients (stepkit's own first on each side), %d scenarios per pair, in %.0f s with %d jobs",
		len(m.Servers), len(m.Clients), len(m.Scenarios), m.Duration.Seconds(), m.Jobs)
	if m.Conformance > 0 {
		v.Summary += fmt.Sprintf(" (each program's own conformance checks ran alongside, for %.0f s)", m.Conformance.Seconds())
	}
	return v
}

type scenarioView struct {
	*ScenarioResult
	Title                                string
	Capture, Diagram, Dump, ClientOutput string
}

type cellPageView struct {
	*Cell
	Class, ServerLink, ClientLink, ServerOut string
	ServerConf, ClientConf                   *Conformance
	ServerConfLink, ClientConfLink           string
	Scenarios                                []scenarioView
}

func (m *Matrix) program(side, id string) Program {
	progs := m.Servers
	if side == "clients" {
		progs = m.Clients
	}
	for _, p := range progs {
		if p.ID == id {
			return p
		}
	}
	return Program{ID: id}
}

func (m *Matrix) cellView(c *Cell) cellPageView {
	up := "../../../"
	v := cellPageView{Cell: c, Class: c.class(), ServerLink: up + "servers/" + c.Server + ".html", ClientLink: up + "clients/" + c.Client + ".html",
		ServerOut: path.Base(c.ServerOutput)}
	sp, cp := m.program("servers", c.Server), m.program("clients", c.Client)
	v.ServerConf, v.ClientConf = sp.Conformance, cp.Conformance
	if sp.Conformance != nil && sp.Conformance.Report != "" {
		v.ServerConfLink = up + filepath.ToSlash(sp.Conformance.Report)
	}
	if cp.Conformance != nil && cp.Conformance.Report != "" {
		v.ClientConfLink = up + filepath.ToSlash(cp.Conformance.Report)
	}
	for i, r := range c.Scenarios {
		sv := scenarioView{ScenarioResult: r}
		if i < len(m.Scenarios) {
			sv.Title = m.Scenarios[i].Title
		}
		if r.Capture != "" && r.Outcome != NotApplicable {
			sv.Capture, sv.Diagram, sv.Dump, sv.ClientOutput = path.Base(r.Capture), path.Base(r.Diagram), path.Base(r.Dump), path.Base(r.ClientOutput)
		}
		v.Scenarios = append(v.Scenarios, sv)
	}
	return v
}

type peerView struct {
	Peer, PeerLink, Class, Mark, Outcome, Blame, Link string
}

type programView struct {
	Program
	Side, Other, Label string
	ConfLink           string
	Peers              []peerView
}

func (m *Matrix) programView(side string, p Program) programView {
	v := programView{Program: p, Side: strings.TrimSuffix(side, "s"), Label: label(p)}
	if p.Conformance != nil && p.Conformance.Report != "" {
		v.ConfLink = "../" + filepath.ToSlash(p.Conformance.Report)
	}
	add := func(c *Cell, peer Program, otherSide string) {
		if c == nil {
			return
		}
		v.Peers = append(v.Peers, peerView{Peer: label(peer), PeerLink: "../" + otherSide + "/" + peer.ID + ".html", Class: c.class(), Mark: c.mark(),
			Outcome: string(c.Outcome), Blame: c.Blame, Link: "../" + c.Page})
	}
	if side == "servers" {
		v.Other = "client"
		for s, sp := range m.Servers {
			if sp.ID == p.ID {
				for ci, cp := range m.Clients {
					add(m.Cells[s][ci], cp, "clients")
				}
			}
		}
	} else {
		v.Other = "server"
		for s, sp := range m.Servers {
			for ci, cp := range m.Clients {
				if cp.ID == p.ID {
					add(m.Cells[s][ci], sp, "servers")
				}
			}
		}
	}
	return v
}

const style = `<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em} .sub{color:#555;margin-bottom:1em}
table{border-collapse:collapse} th,td{border:1px solid #ccc;padding:3px 6px}
th{background:#f4f4f4;font-weight:600}
.m td.c{width:2.2em;text-align:center;font-weight:700;padding:0}
.m td.c a{display:block;padding:4px 0;color:inherit;text-decoration:none}
.m th.col{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;vertical-align:bottom;cursor:pointer}
.m th.row{text-align:left;white-space:nowrap;cursor:pointer}
.m .ref{background:#e6eefc}
.pass{background:#b9e7b0} .fail-server{background:#f3a6a0} .fail-client{background:#f7cf8a}
.fail-unclear{background:#d3c4ec} .error{background:#555;color:#fff} .na{background:#eee;color:#888}
.legend span{display:inline-block;padding:2px 8px;margin-right:6px;border:1px solid #ccc}
.n{color:#666;font-weight:400;font-size:.85em}
.blame{font-size:1.1em;padding:.5em .8em;margin:.6em 0;border-left:5px solid #888}
ul.ev li{margin:.15em 0} code{font-size:.92em}
button{margin:.5em .4em .8em 0}
</style>`

var funcs = template.FuncMap{"join": strings.Join}

var matrixPage = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("m").Funcs(funcs).Parse(`<!doctype html><html><head><meta charset="utf-8"><title>{{.Title}}</title>` + style + `</head><body>
<h1>{{.Title}}</h1>
<div class="sub">{{.Summary}}. Rows are servers, columns clients. Hover a cell for its blame, click it for the captures.</div>
<div class="legend"><span class="pass">✓ pass</span><span class="fail-server">S server at fault</span><span class="fail-client">C client at fault</span><span class="fail-unclear">? unclear</span><span class="error">! grader error</span><span class="na">n/a</span></div>
<div><button id="sort-rows" type="button">sort servers by pairs passed</button><button id="sort-cols" type="button">sort clients by pairs passed</button><button id="sort-reset" type="button">original order</button></div>
<table class="m" id="matrix">
<thead><tr><th>server \ client</th>{{range .Columns}}<th class="col{{if .Reference}} ref{{end}}" data-passed="{{.Passed}}" data-ref="{{.Reference}}"><a href="{{.Link}}">{{.Label}}</a> <span class="n">{{.Passed}}/{{.Pairs}}</span></th>{{end}}</tr></thead>
<tbody>{{range .Rows}}<tr data-passed="{{.Head.Passed}}" data-ref="{{.Head.Reference}}"><th class="row{{if .Head.Reference}} ref{{end}}"><a href="{{.Head.Link}}">{{.Head.Label}}</a> <span class="n">{{.Head.Passed}}/{{.Head.Pairs}}</span></th>{{range .Cells}}<td class="c {{.Class}}" title="{{.Title}}">{{if .Link}}<a href="{{.Link}}">{{.Mark}}</a>{{end}}</td>{{end}}</tr>
{{end}}</tbody></table>
<p>Scenarios per pair: {{range $i, $s := .Scenario}}{{if $i}}; {{end}}<b>{{$s.ID}}</b> ({{$s.Title}}){{end}}.
A pair passes when every scenario that applies delivered the file whole (the server reports its MD5 by FILE GET, and a download wrote it back) and the client claimed no false success.</p>
<p>Also: <a href="interop.csv">interop.csv</a>, <a href="interop.json">interop.json</a> (<a href="interop.schema.json">schema</a>).</p>
<script>
(function(){
  var t=document.getElementById('matrix'), body=t.tBodies[0], head=t.tHead.rows[0];
  var rows0=Array.prototype.slice.call(body.rows), ncol=head.cells.length-1;
  var colOrder0=[]; for(var i=0;i<ncol;i++) colOrder0.push(i);
  var colOrder=colOrder0.slice(), heads0=Array.prototype.slice.call(head.cells,1);
  var cells0=rows0.map(function(r){return Array.prototype.slice.call(r.cells,1);});
  function byPassed(getRef,getN){return function(a,b){var ra=getRef(a),rb=getRef(b); if(ra!==rb) return ra?-1:1; return getN(b)-getN(a);};}
  function applyCols(){
    heads0.forEach(function(){}); colOrder.forEach(function(i){head.appendChild(heads0[i]);});
    rows0.forEach(function(r,ri){colOrder.forEach(function(i){r.appendChild(cells0[ri][i]);});});
  }
  function sortRows(){
    var rs=rows0.slice().sort(byPassed(function(r){return r.dataset.ref==='true';},function(r){return +r.dataset.passed;}));
    rs.forEach(function(r){body.appendChild(r);});
  }
  function sortCols(){
    colOrder=colOrder0.slice().sort(byPassed(function(i){return heads0[i].dataset.ref==='true';},function(i){return +heads0[i].dataset.passed;}));
    applyCols();
  }
  document.getElementById('sort-rows').onclick=sortRows;
  document.getElementById('sort-cols').onclick=sortCols;
  document.getElementById('sort-reset').onclick=function(){rows0.forEach(function(r){body.appendChild(r);}); colOrder=colOrder0.slice(); applyCols();};
  head.cells[0].onclick=null;
  heads0.forEach(function(h){h.addEventListener('click',function(e){if(e.target.tagName!=='A') sortCols();});});
  rows0.forEach(function(r){r.cells[0].addEventListener('click',function(e){if(e.target.tagName!=='A') sortRows();});});
  if(location.hash==='#sorted'){sortRows();sortCols();}
})();
</script>
</body></html>
`))
})

var cellPage = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("c").Funcs(funcs).Parse(`<!doctype html><html><head><meta charset="utf-8"><title>{{.Server}} × {{.Client}}</title>` + style + `</head><body>
<h1>server <a href="{{.ServerLink}}">{{.Server}}</a> × client <a href="{{.ClientLink}}">{{.Client}}</a>: {{.Outcome}}</h1>
<div class="sub"><a href="../../../interop.html">the matrix</a> · the server's output: <a href="{{.ServerOut}}">{{.ServerOut}}</a>{{if .ServerConfLink}} · the server's own conformance: <a href="{{.ServerConfLink}}">{{.ServerConf.Verdict}}</a>{{end}}{{if .ClientConfLink}} · the client's own conformance: <a href="{{.ClientConfLink}}">{{.ClientConf.Verdict}}</a>{{end}}</div>
{{if .Blame}}<div class="blame {{.Class}}">{{.Blame}}</div>{{end}}
{{if .Evidence}}<ul class="ev">{{range .Evidence}}<li>{{.}}</li>{{end}}</ul>{{end}}
<p class="n">The client logged in as {{.User}}.{{if .Rerun}} This cell ran twice: {{.Rerun}}.{{else if .ServedBefore}} The server process had served {{join .ServedBefore ", "}} before this cell.{{else}} The server process was started for this cell.{{end}}</p>
<table><tr><th>scenario</th><th>outcome</th><th>blame</th><th>client</th><th>stored</th><th>files</th></tr>
{{range .Scenarios}}<tr><td><b>{{.Scenario}}</b><br><span class="n">{{.Title}}</span></td><td class="{{if eq .Outcome "PASS"}}pass{{else if eq .Outcome "FAIL"}}fail-{{.Side}}{{else}}na{{end}}">{{.Outcome}}</td>
<td>{{.Blame}}{{range .Diagnoses}}<br><span class="n">capture: {{.}}</span>{{end}}</td>
<td>{{.ClientExit}}{{if .ClientLast}}<br><span class="n">{{.ClientLast}}</span>{{end}}</td>
<td>{{if .StoredErr}}{{.StoredErr}}{{else if .StoredMD5}}{{.StoredSize}} bytes<br><code>{{.StoredMD5}}</code>{{end}}{{if .DownloadErr}}<br>download: {{.DownloadErr}}{{end}}</td>
<td>{{if .Capture}}<a href="{{.Capture}}">capture</a> · <a href="{{.Diagram}}">ladder</a> · <a href="{{.Dump}}">decoded</a> · <a href="{{.ClientOutput}}">client output</a>{{end}}</td></tr>
{{end}}</table>
<p>Each capture is the relay's record of the scenario, as pcapng: open it with <code>stepkit dump FILE</code> or in Wireshark with stepkit's dissector (<code>wireshark -X lua_script:step.lua FILE</code>).</p>
</body></html>
`))
})

var programPage = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("p").Funcs(funcs).Parse(`<!doctype html><html><head><meta charset="utf-8"><title>{{.Side}} {{.Label}}</title>` + style + `</head><body>
<h1>{{.Side}} {{.Label}}: {{.Passed}} of {{.Pairs}} pairs pass</h1>
<div class="sub"><a href="../interop.html">the matrix</a>{{if .ConfLink}} · its own conformance: <a href="{{.ConfLink}}">{{.Conformance.Verdict}}</a>{{end}}</div>
<table><tr><th>{{.Other}}</th><th>outcome</th><th>blame</th></tr>
{{range .Peers}}<tr><td><a href="{{.PeerLink}}">{{.Peer}}</a></td><td class="{{.Class}}"><a href="{{.Link}}">{{.Outcome}}</a></td><td>{{.Blame}}</td></tr>
{{end}}</table>
</body></html>
`))
})
