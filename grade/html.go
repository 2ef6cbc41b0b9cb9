package grade

import (
	"fmt"
	"html/template"
	"io"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/spec"
)

// WriteReports writes class.csv and index.html into dir (the students'
// own reports are already there, under students/ID/).
func (c *Class) WriteReports(dir string) error {
	if err := conformance.WriteFile(filepath.Join(dir, "class.csv"), c.WriteCSV); err != nil {
		return err
	}
	return conformance.WriteFile(filepath.Join(dir, "index.html"), c.WriteHTML)
}

// Column is one requirement of the class matrix, with how many students
// broke it.
type Column struct {
	ID, Level, Text, Section string
	Failed, NonStrict        int
}

// Columns lists the requirements judged for any student, those most of
// the class failed first (then those most found NON-STRICT, then in the
// catalogue's order): the top of the list is what to teach again.
func (c *Class) Columns() []Column {
	order := map[string]int{}
	for i, r := range spec.Requirements() {
		order[r.ID] = i
	}
	cols := map[string]*Column{}
	for _, r := range c.Results {
		if r.Report == nil {
			continue
		}
		for _, v := range r.Report.Requirements {
			col := cols[v.ID]
			if col == nil {
				req, _ := spec.Lookup(v.ID)
				col = &Column{ID: v.ID, Level: v.Level, Text: req.Text, Section: req.SectionPrefix()}
				cols[v.ID] = col
			}
			switch v.Verdict {
			case string(conformance.Fail), string(conformance.Error):
				col.Failed++
			case string(conformance.NonStrict):
				col.NonStrict++
			}
		}
	}
	out := make([]Column, 0, len(cols))
	for _, col := range cols {
		out = append(out, *col)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Failed != b.Failed {
			return a.Failed > b.Failed
		}
		if a.NonStrict != b.NonStrict {
			return a.NonStrict > b.NonStrict
		}
		return order[a.ID] < order[b.ID]
	})
	return out
}

type htmlCell struct {
	Verdict, Class, Mark, Link, Title string
	Rank                              int
}

// caseAnchor is the place in a student's report.html that shows why v is
// what it is: the first case that found it broken, else the first case
// citing it, else its section.
func caseAnchor(v conformance.RequirementVerdict, section string) string {
	switch {
	case len(v.Broken) > 0:
		return "case-" + v.Broken[0]
	case len(v.Cases) > 0:
		return "case-" + v.Cases[0]
	}
	return "sec-" + section
}

type htmlRow struct {
	R        *Result
	Baseline bool
	Dir      string // relative folder of the student's reports
	Cells    []htmlCell
	Counts   []int
}

// WriteHTML writes index.html: one self-contained page with the student ×
// requirement matrix.
func (c *Class) WriteHTML(w io.Writer) error {
	cols := c.Columns()
	var rows []htmlRow
	add := func(r *Result, dir string, base bool) {
		row := htmlRow{R: r, Baseline: base, Dir: dir}
		for _, o := range conformance.Outcomes() {
			row.Counts = append(row.Counts, r.Counts[o])
		}
		if r.Report != nil {
			byID := map[string]conformance.RequirementVerdict{}
			for _, v := range r.Report.Requirements {
				byID[v.ID] = v
			}
			for _, col := range cols {
				v, ok := byID[col.ID]
				cell := htmlCell{Verdict: "—", Class: "none", Mark: "", Rank: -1, Title: r.ID + " " + col.ID + ": not judged"}
				if ok {
					cell = htmlCell{Verdict: v.Verdict, Class: cssClass(v.Verdict), Mark: mark(v.Verdict), Rank: verdictRank(v.Verdict),
						Link:  escapePath(dir) + "/report.html#" + caseAnchor(v, col.Section),
						Title: fmt.Sprintf("%s %s: %s", r.ID, col.ID, v.Verdict)}
					if len(v.Broken) > 0 {
						cell.Title += " in " + strings.Join(v.Broken, ", ")
					}
				}
				row.Cells = append(row.Cells, cell)
			}
		}
		rows = append(rows, row)
	}
	if c.Baseline != nil {
		add(c.Baseline, "baseline", true)
	}
	for _, r := range c.Results {
		add(r, "students/"+r.ID, false)
	}
	verdicts := map[Verdict]int{}
	for _, r := range c.Results {
		verdicts[r.Verdict]++
	}
	var tally []string
	for _, v := range []Verdict{Conformant, NotConformant, Crashed, DidNotStart, NeverListened, GraderError} {
		if verdicts[v] > 0 {
			tally = append(tally, fmt.Sprintf("%d %s", verdicts[v], v))
		}
	}
	var teach []Column
	for _, col := range cols {
		if col.Failed+col.NonStrict > 0 {
			teach = append(teach, col)
		}
	}
	data := struct {
		C        *Class
		Cols     []Column
		Teach    []Column
		Rows     []htmlRow
		Outcomes []conformance.Outcome
		Tally    string
		Students int
		Fuzz     bool
		FuzzCols int // the fuzz column, when there is one
	}{c, cols, teach, rows, conformance.Outcomes(), strings.Join(tally, " · "), len(c.Results), c.fuzzed(), 0}
	if data.Fuzz {
		data.FuzzCols = 1
	}
	return classTemplate().Execute(w, data)
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

func cssClass(v string) string { return strings.ToLower(strings.ReplaceAll(v, "-", "")) }

func mark(v string) string {
	switch v {
	case string(conformance.Pass):
		return "✓"
	case string(conformance.Fail):
		return "✗"
	case string(conformance.NonStrict):
		return "~"
	case string(conformance.Informational):
		return "i"
	case string(conformance.Error):
		return "E"
	case conformance.Blocked:
		return "B"
	}
	return "?"
}

func verdictRank(v string) int {
	switch v {
	case string(conformance.Pass):
		return 0
	case string(conformance.Informational):
		return 1
	case string(conformance.NonStrict):
		return 2
	case conformance.Blocked:
		return 3
	case string(conformance.Fail):
		return 4
	}
	return 5
}

var classTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("class").Funcs(template.FuncMap{
		"secs": func(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) },
		"vclass": func(v Verdict) string {
			switch v {
			case Conformant:
				return "pass"
			case NotConformant:
				return "fail"
			}
			return "error"
		},
		"num": num,
		"add": func(a, b int) int { return a + b },
	}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>STEP class report: {{.Students}} {{.C.Kind}}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}
.meta{color:#555;margin-bottom:1em}
.warn{background:#fff4d6;border:1px solid #e8c66b;padding:.4em .8em;border-radius:4px;display:inline-block}
table{border-collapse:collapse;margin:.5em 0 1.5em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f5f5f5}
th.s{cursor:pointer;user-select:none}
th.s:hover{background:#e8eefc}
th.req{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:normal;font-size:.8em;padding:.4em .15em;white-space:nowrap}
td.c{text-align:center;padding:0;width:1.6em;height:1.6em;font-size:.85em}
td.c a{display:block;color:inherit;text-decoration:none;line-height:1.6em}
td.n{text-align:right}
.pass{background:#c9ecc4;color:#1b5e14}.fail{background:#f6b9b5;color:#8a0000}.error{background:#e58a84;color:#4a0000}
.nonstrict{background:#fbe1a6;color:#7a5000}.informational{background:#cfe3f7;color:#084e8a}.blocked{background:#ddd;color:#555}.none{background:#fff}
.v{font-weight:bold;white-space:nowrap}
tr.base td{border-top:2px solid #888;border-bottom:2px solid #888}
.problem{color:#8a0000}
pre{background:#f8f8f8;border:1px solid #eee;padding:.4em;margin:.3em 0;white-space:pre-wrap;font-size:.8em;max-width:60em}
.legend span{display:inline-block;padding:0 .5em;margin-right:.3em;border-radius:3px}
</style>
</head>
<body>
<h1>STEP class report: {{.Students}} {{.C.Kind}}</h1>
<div class="meta">{{.C.Started.Format "2006-01-02 15:04:05 MST"}} · graded in {{secs .C.Duration}}, {{.C.Jobs}} at once · {{.Tally}} · scores out of {{num .C.Rubric.Total}}</div>
{{if not .C.Isolated}}<p class="warn">Submissions ran without isolation, each on its own port: {{.C.Why}}</p>{{end}}
<div class="legend"><span class="pass">✓ PASS</span><span class="fail">✗ FAIL</span><span class="nonstrict">~ NON-STRICT</span><span class="informational">i INFORMATIONAL</span><span class="error">E ERROR</span><span class="blocked">B BLOCKED</span> · click a cell for the student's report at that section, with the wire exchange; click a heading to sort (index.html#sort=2 opens sorted by score, #sort=2-desc best first)</div>
{{if .Teach}}<h2>What the class got wrong, most first</h2>
<table id="teach">
<tr><th>requirement</th><th>level</th><th>students failing</th><th>NON-STRICT</th><th>what it says</th></tr>
{{range .Teach}}<tr><td>{{.ID}}</td><td>{{.Level}}</td><td class="n">{{.Failed}} of {{$.Students}}</td><td class="n">{{.NonStrict}}</td><td>{{.Text}}</td></tr>
{{end}}</table>{{end}}
<h2>Students × requirements</h2>
<table id="matrix">
<thead><tr><th class="s" data-t="s">student</th><th class="s" data-t="s">verdict</th><th class="s" data-t="n">score</th>{{range .Outcomes}}<th class="s" data-t="n">{{.}}</th>{{end}}<th class="s" data-t="n">time</th>{{if .Fuzz}}<th class="s" data-t="n" title="distinct findings of stepkit fuzz">fuzz</th>{{end}}{{range .Cols}}<th class="s req" data-t="n" title="{{.ID}} ({{.Level}}): {{.Text}} — failed by {{.Failed}}">{{.ID}}</th>{{end}}</tr></thead>
<tbody>
{{range .Rows}}<tr{{if .Baseline}} class="base"{{end}}>
<td data-v="{{.R.ID}}">{{if .R.Report}}<a href="{{.Dir}}/report.html">{{.R.ID}}</a>{{else}}{{.R.ID}}{{end}}{{if .Baseline}} (baseline){{end}}</td>
<td class="v {{vclass .R.Verdict}}" data-v="{{.R.Verdict}}">{{.R.Verdict}}</td>
<td class="n" data-v="{{num .R.Score.Score}}">{{num .R.Score.Score}}</td>
{{range .Counts}}<td class="n" data-v="{{.}}">{{.}}</td>{{end}}
<td class="n" data-v="{{.R.Duration.Seconds}}">{{secs .R.Duration}}</td>
{{if $.Fuzz}}{{$dir := .Dir}}<td class="n" data-v="{{with .R.Fuzz}}{{.Findings}}{{end}}">{{with .R.Fuzz}}{{if .Problem}}<span title="{{.Problem}}">?</span>{{else}}<a href="{{$dir}}/{{.Report}}">{{.Findings}}</a>{{end}}{{end}}</td>{{end}}
{{if .R.Report}}{{range .Cells}}<td class="c {{.Class}}" data-v="{{.Rank}}" title="{{.Title}}">{{if .Link}}<a href="{{.Link}}">{{.Mark}}</a>{{end}}</td>{{end}}
{{else}}<td colspan="{{len $.Cols}}" data-v="9"><span class="problem">{{.R.Problem}}</span>{{with .R.Sandbox}} · <span class="problem">sandbox: {{.}}</span>{{end}} · <a href="{{.Dir}}/output.txt">output</a>{{if .R.Output}}<pre>{{range .R.Output}}{{.}}
{{end}}</pre>{{end}}</td>{{end}}
</tr>
{{if and .R.Report (or .R.Problem .R.Sandbox)}}<tr><td></td><td colspan="{{add (add 8 (len $.Cols)) $.FuzzCols}}">{{with .R.Problem}}<span class="problem">{{.}}</span> · {{end}}{{with .R.Sandbox}}<span class="problem">sandbox: {{.}}</span> · {{end}}<a href="{{.Dir}}/output.txt">output</a>{{if .R.Output}}<pre>{{range .R.Output}}{{.}}
{{end}}</pre>{{end}}</td></tr>{{end}}
{{if or .R.Worse .R.SameBugs .R.Better}}<tr><td></td><td colspan="{{add (add 8 (len $.Cols)) $.FuzzCols}}">against the baseline:{{if .R.Better}} better in {{range .R.Better}}{{.}} {{end}};{{end}}{{if .R.Worse}} worse in {{range .R.Worse}}{{.}} {{end}};{{end}}{{if .R.SameBugs}} reproduces the baseline's bug in {{range .R.SameBugs}}{{.}} {{end}}{{end}}</td></tr>{{end}}
{{end}}</tbody>
</table>
<script>
// Sorting: a click on a heading sorts the students by that column; a
// second click reverses. Detail rows (problems, baseline notes) follow
// their student.
(function(){
  var table=document.getElementById('matrix'), body=table.tBodies[0];
  var heads=table.tHead.rows[0].cells;
  function groups(){
    var out=[], rows=body.rows;
    for(var i=0;i<rows.length;i++){
      if(rows[i].cells[0].getAttribute('data-v')!==null){out.push([rows[i]]);}
      else if(out.length){out[out.length-1].push(rows[i]);}
    }
    return out;
  }
  for(var h=0;h<heads.length;h++){(function(col,th){
    th.addEventListener('click',function(){
      var asc=th.getAttribute('data-dir')!=='asc', num=th.getAttribute('data-t')==='n';
      for(var k=0;k<heads.length;k++){heads[k].removeAttribute('data-dir');}
      th.setAttribute('data-dir',asc?'asc':'desc');
      var g=groups();
      g.sort(function(a,b){
        var x=cellValue(a[0],col), y=cellValue(b[0],col), r;
        if(num){r=(parseFloat(x)||0)-(parseFloat(y)||0);}else{r=x<y?-1:x>y?1:0;}
        return asc?r:-r;
      });
      for(var i=0;i<g.length;i++){for(var j=0;j<g[i].length;j++){body.appendChild(g[i][j]);}}
    });
  })(h,heads[h]);}
  // index.html#sort=N sorts by the N-th column (from 0) on opening,
  // #sort=N-desc the other way: a link can carry a view of the class.
  var m=/^#sort=(\d+)(-desc)?$/.exec(location.hash);
  if(m&&heads[+m[1]]){heads[+m[1]].click();if(m[2]){heads[+m[1]].click();}}
  function cellValue(row,col){
    var c=row.cells[col];
    if(!c){c=row.cells[row.cells.length-1];}
    return c.getAttribute('data-v')||'';
  }
})();
</script>
</body>
</html>
`))
})

// fuzzed reports whether any server of the class was fuzzed.
func (c *Class) fuzzed() bool {
	for _, r := range c.Results {
		if r.Fuzz != nil {
			return true
		}
	}
	return false
}
