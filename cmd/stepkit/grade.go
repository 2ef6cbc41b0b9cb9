package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/grade"
)

// gradeOptions are the flags of stepkit grade.
type gradeOptions struct {
	servers, clients, fromReports string
	out, run, roster, rubric      string
	baseline                      string
	jobs                          int
	readTimeout, caseTimeout      time.Duration
	startTimeout, runTimeout      time.Duration
	strict                        bool
	memory                        string
	cpu                           time.Duration
	requireIsolation              bool
	noProgress                    bool
	serial                        bool
	fuzz                          time.Duration
}

func newGradeCmd() *cobra.Command {
	var o gradeOptions
	cmd := &cobra.Command{
		Use:   "grade (--servers DIR | --clients DIR | --from-reports DIR) --out OUT [SELECTOR...]",
		Short: "Grade a class: every submission of a folder, isolated, into class reports",
		Long: `grade checks every submission of a class with the conformance suite and
writes the class reports: OUT/class.csv (one row per student) and
OUT/index.html (a student × requirement matrix), with each student's HTML,
JSON and JUnit reports and the program's own output in OUT/students/ID/.

With --servers DIR every sub-folder of DIR is one student's server, named by
the student's id. Each is copied into a throw-away folder and started with
the --run template inside a network namespace of its own, where it binds
port 1379 as on a student's laptop, cannot reach the network or another
submission, cannot write outside its copy, and has bounded memory and CPU
time; the suite runs in the same namespace. Where namespaces cannot be made,
grade says so once and gives each server a port of its own through {port}.
A server that does not start, crashes or never listens gets a row that says
so with the last lines of its output.

With --clients DIR each sub-folder is a client, judged with
stepkit conformance --client and the --run template.

With --from-reports DIR the class reports are built from JSON or JUnit
reports collected elsewhere (for example by the students' own CI): DIR/ID/
holding report.json or a JUnit XML file, or DIR/ID.json, DIR/ID.xml.

Placeholders of --run: {port} (1379 in a namespace), {dir} (the copy of
the submission), {id} (the student's id); a template runs with /bin/sh -c
in the copy, so it may also cd or set variables. A roster CSV
(--roster FILE, header id,path,run,stdin) names the students, their folders
(relative to DIR), and a template and standard input of their own.

SELECTORs restrict the suite to sections, requirements or cases, as for
stepkit conformance. The exit status is 0 when every submission was graded,
whatever its verdict; 1 when grading itself failed; 2 for a usage error.`,
		Example: `  stepkit grade --servers submissions/ --out grades/
  stepkit grade --servers submissions/ --out grades/ --run 'python3 src/server.py --port {port}' --jobs 8
  stepkit grade --servers submissions/ --roster roster.csv --rubric rubric.yaml --baseline course-server/ --out grades/
  stepkit grade --clients clients/ --out client-grades/
  stepkit grade --from-reports collected/ --out grades/`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGrade(cmd.Context(), cmd, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.servers, "servers", "", "grade the servers in the sub-folders of `DIR`")
	f.StringVar(&o.clients, "clients", "", "grade the clients in the sub-folders of `DIR`")
	f.StringVar(&o.fromReports, "from-reports", "", "build the class reports from the JSON or JUnit reports in `DIR`")
	f.StringVar(&o.out, "out", "", "folder of the class reports (required)")
	f.StringVar(&o.run, "run", "", fmt.Sprintf("command template of a submission (default %q for servers, %q for clients)", grade.DefaultServerRun, grade.DefaultClientRun))
	f.StringVar(&o.roster, "roster", "", "roster CSV with the columns id,path,run,stdin")
	f.StringVar(&o.rubric, "rubric", "", "rubric YAML file: points per requirement, section or level (default: the shipped grade/rubric.yaml)")
	f.StringVar(&o.baseline, "baseline", "", "grade the submission in `PATH` first and compare every student with it")
	f.IntVar(&o.jobs, "jobs", 0, fmt.Sprintf("submissions graded at once (default %d on this machine)", grade.DefaultJobs()))
	f.DurationVar(&o.readTimeout, "read-timeout", conformance.DefaultReadTimeout, "the suite's wait for each response")
	f.DurationVar(&o.caseTimeout, "case-timeout", conformance.DefaultCaseTimeout, "the suite's bound on a whole case")
	f.BoolVar(&o.strict, "strict", false, "NON-STRICT outcomes make a submission not conformant")
	f.DurationVar(&o.startTimeout, "start-timeout", grade.DefaultStartTimeout, "how long a server may take to listen")
	f.DurationVar(&o.runTimeout, "run-timeout", grade.DefaultRunTimeout, "bound on the whole grading of one submission")
	f.StringVar(&o.memory, "memory", "1GiB", "memory bound of each submission")
	f.DurationVar(&o.cpu, "cpu", 2*time.Minute, "CPU-time bound of each submission")
	f.BoolVar(&o.requireIsolation, "require-isolation", false, "fail rather than run submissions on the host network when namespaces are not available")
	f.BoolVar(&o.noProgress, "no-progress", false, "no progress bar, even on a terminal")
	f.BoolVar(&o.serial, "serial", false, "run each server's cases one at a time, as stepkit conformance --serial does by hand: slower, but a server that forks or spawns a process per connection is never asked for more connections at once than one case needs")
	f.DurationVar(&o.fuzz, "fuzz", 0, "also fuzz each server for this long after the suite (stepkit fuzz), for a fuzz column in the class report")
	return cmd
}

func runGrade(ctx context.Context, cmd *cobra.Command, o gradeOptions, selectors []string) error {
	modes := 0
	for _, m := range []string{o.servers, o.clients, o.fromReports} {
		if m != "" {
			modes++
		}
	}
	if modes != 1 {
		return usageErrorf("grade needs exactly one of --servers, --clients and --from-reports %s", seeHelp(cmd))
	}
	if o.out == "" {
		return usageErrorf("grade needs --out, the folder of the class reports %s", seeHelp(cmd))
	}
	rubric := grade.DefaultRubric()
	if o.rubric != "" {
		r, err := grade.LoadRubric(o.rubric)
		if err != nil {
			return usageErrorf("%v", err)
		}
		rubric = r
	}
	errOut := cmd.ErrOrStderr()
	if o.fromReports != "" {
		class, err := grade.FromReports(o.fromReports, rubric)
		if err != nil {
			return usageErrorf("%v", err)
		}
		if err := class.WriteReports(o.out); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%d students: %s, %s\n", len(class.Results),
			filepath.Join(o.out, "class.csv"), filepath.Join(o.out, "index.html"))
		return nil
	}
	if o.servers != "" {
		if _, err := conformance.Select("", selectors); err != nil {
			return usageErrorf("%v", err)
		}
	}
	if o.readTimeout <= 0 || o.caseTimeout <= 0 || o.startTimeout <= 0 || o.runTimeout <= 0 || o.cpu <= 0 {
		return usageErrorf("--read-timeout, --case-timeout, --start-timeout, --run-timeout and --cpu must be positive")
	}
	if o.jobs < 0 {
		return usageErrorf("--jobs %d: want 1 or more", o.jobs)
	}
	mem, err := parseBytes(o.memory)
	if err != nil || mem < 16<<20 {
		return usageErrorf("--memory %q: want a size of at least 16MiB, such as 512MiB or 2GiB", o.memory)
	}
	kind, dir := grade.Servers, o.servers
	if o.clients != "" {
		kind, dir = grade.Clients, o.clients
	}
	if o.serial && kind != grade.Servers {
		return usageErrorf("--serial is for --servers")
	}
	var subs []grade.Submission
	if o.roster != "" {
		f, err := os.Open(o.roster)
		if err != nil {
			return usageErrorf("roster: %v", err)
		}
		subs, err = grade.ReadRoster(f, dir)
		f.Close()
		if err != nil {
			return usageErrorf("%v", err)
		}
	} else if subs, err = grade.Discover(dir); err != nil {
		return usageErrorf("%v", err)
	}
	opts := grade.Options{Kind: kind, Submissions: subs, Run: o.run, Jobs: o.jobs, Out: o.out, Rubric: rubric,
		ReadTimeout: o.readTimeout, CaseTimeout: o.caseTimeout, Strict: o.strict, Selectors: selectors,
		StartTimeout: o.startTimeout, RunTimeout: o.runTimeout, Memory: mem, CPU: o.cpu,
		RequireIsolation: o.requireIsolation, Fuzz: o.fuzz}
	if o.serial {
		opts.Parallel = 1
	}
	if o.baseline != "" {
		info, err := os.Stat(o.baseline)
		if err != nil || !info.IsDir() {
			return usageErrorf("--baseline %s: not a folder", o.baseline)
		}
		abs, _ := filepath.Abs(o.baseline)
		opts.Baseline = &grade.Submission{ID: "baseline", Dir: abs}
	}
	if opts.Jobs == 0 {
		opts.Jobs = grade.DefaultJobs()
	}
	p := newGradeProgress(errOut, len(subs), !o.noProgress && isTerminal(errOut))
	opts.Notice = p.notice
	opts.Progress = p.done
	fmt.Fprintf(errOut, "grading %d %s, %d at once\n", len(subs), kind, opts.Jobs)
	class, err := grade.Run(ctx, opts)
	p.finish()
	if err != nil {
		return err
	}
	counts := map[grade.Verdict]int{}
	for _, r := range class.Results {
		counts[r.Verdict]++
	}
	var parts []string
	for _, v := range []grade.Verdict{grade.Conformant, grade.NotConformant, grade.Crashed, grade.DidNotStart, grade.NeverListened, grade.GraderError} {
		if counts[v] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[v], v))
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%d %s in %.1fs: %s\n%s\n%s\n", len(class.Results), kind, class.Duration.Seconds(),
		strings.Join(parts, ", "), filepath.Join(o.out, "class.csv"), filepath.Join(o.out, "index.html"))
	return nil
}

// gradeProgress prints a line per finished submission and, on a terminal,
// an overall bar with the time left below them.
type gradeProgress struct {
	mu  sync.Mutex
	w   io.Writer
	bar *progressbar.ProgressBar
}

func newGradeProgress(w io.Writer, total int, bar bool) *gradeProgress {
	p := &gradeProgress{w: w}
	if bar {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("grading"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionFullWidth(),
			progressbar.OptionClearOnFinish(),
		)
		_ = p.bar.RenderBlank()
	}
	return p
}

func (p *gradeProgress) print(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Clear()
	}
	fmt.Fprintln(p.w, line)
	if p.bar != nil {
		_ = p.bar.RenderBlank()
	}
}

func (p *gradeProgress) notice(s string) { p.print("stepkit: " + s) }

func (p *gradeProgress) done(r *grade.Result, done, total int) {
	line := fmt.Sprintf("[%d/%d] %-14s %-15s", done, total, r.ID, r.Verdict)
	if r.Report != nil {
		line += fmt.Sprintf(" score %-6s %d FAIL %d NON-STRICT %d ERROR", strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", r.Score.Score), "0"), "."),
			r.Counts[conformance.Fail], r.Counts[conformance.NonStrict], r.Counts[conformance.Error])
	}
	if r.Problem != "" {
		line += " — " + r.Problem
	}
	line += fmt.Sprintf(" (%.1fs)", r.Duration.Seconds())
	p.print(line)
	if p.bar != nil {
		p.mu.Lock()
		_ = p.bar.Add(1)
		p.mu.Unlock()
	}
}

func (p *gradeProgress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
