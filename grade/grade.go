package grade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stepkit/stepkit/conformance"
)

// Kind says what a class hands in.
type Kind string

const (
	Servers Kind = "servers"
	Clients Kind = "clients"
)

// Defaults of Options.
const (
	DefaultServerRun = "python3 server.py"
	// DefaultClientRun is the client judge's name for the course sheet's
	// client command line.
	DefaultClientRun    = "course"
	DefaultStartTimeout = 10 * time.Second
	DefaultRunTimeout   = 20 * time.Minute
	// StepPort is where a submission listens inside its namespace.
	StepPort = 1379
)

// DefaultJobs is the number of submissions graded at once by default.
// A suite run mostly waits (for answers, for the read timeout of requests
// a student's server leaves unanswered), so it is a few per core, bounded
// so that a class of servers each allowed DefaultMemory cannot exhaust a
// small machine.
func DefaultJobs() int {
	n := 4 * runtime.NumCPU()
	if n > 32 {
		n = 32
	}
	return n
}

// Options configure the grading of a class.
type Options struct {
	Kind Kind
	// Submissions to grade (Discover or ReadRoster).
	Submissions []Submission
	// Baseline, if set, is graded first; every student is compared with it.
	Baseline *Submission
	// Run is the command template of a submission without its own
	// (DefaultServerRun, DefaultClientRun when empty).
	Run string
	// Jobs is how many submissions are graded at once (DefaultJobs when 0).
	Jobs int
	// Slots, when set, is shared with other runs side by side: a
	// submission is graded only while this run holds one of its slots, so
	// that the runs keep to one bound together and a run whose class is
	// done leaves its share to the others.
	Slots chan struct{}
	// Out is the folder of the class reports.
	Out string
	// Rubric gives the marks (DefaultRubric when nil).
	Rubric *Rubric
	// Stepkit is the stepkit binary that runs the suite (os.Executable
	// when empty).
	Stepkit string
	// Suite flags passed on to each stepkit conformance run: timeouts,
	// strictness and case selectors.
	ReadTimeout, CaseTimeout time.Duration
	Strict                   bool
	Selectors                []string
	// Parallel is how many of a server's cases run at once (the suite's
	// --parallel; 0: the suite's default). 1 runs them as a student runs
	// the suite by hand with --serial.
	Parallel int
	// Fuzz, if positive, is each server's fuzzing budget: stepkit fuzz
	// runs against it after the suite, for the class report's fuzz column.
	Fuzz time.Duration
	// StartTimeout bounds the wait for a server to listen.
	StartTimeout time.Duration
	// RunTimeout bounds a submission's whole grading.
	RunTimeout time.Duration
	// Memory and CPU bound each submission (the sandbox's defaults when 0).
	Memory int64
	CPU    time.Duration
	// RequireIsolation makes grading fail rather than run submissions on
	// the host network when namespaces are not available.
	RequireIsolation bool
	// NewBox makes the box a submission runs in (the sandbox when nil).
	NewBox func(ctx context.Context, cfg BoxConfig) (Box, error)
	// Notice receives one-line remarks meant for the instructor (that
	// isolation is off, and why), each once.
	Notice func(string)
	// Progress is called after each submission, from one goroutine at a
	// time, with how many are done.
	Progress func(r *Result, done, total int)
}

// Class is the grading of a whole class.
type Class struct {
	Kind     Kind
	Results  []*Result // in the order of the submissions
	Baseline *Result
	Rubric   *Rubric
	Started  time.Time
	Duration time.Duration
	Jobs     int
	Isolated bool   // every submission ran isolated
	Why      string // why not, when not
}

// Run grades every submission and writes the class reports into o.Out.
func Run(ctx context.Context, o Options) (*Class, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if o.RequireIsolation && o.Kind == Servers {
		if ok, why := IsolationAvailable(); !ok {
			return nil, fmt.Errorf("isolation is required, but %s", why)
		}
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("report folder: %w", err)
	}
	class := &Class{Kind: o.Kind, Rubric: o.Rubric, Started: time.Now(), Jobs: o.Jobs, Isolated: true}
	g := &grader{o: o, class: class}
	if o.Baseline != nil {
		class.Baseline = g.grade(ctx, *o.Baseline, filepath.Join(o.Out, "baseline"))
	}
	class.Results = make([]*Result, len(o.Submissions))
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for w := 0; w < o.Jobs && w < len(o.Submissions); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				s := o.Submissions[i]
				if o.Slots != nil {
					select {
					case o.Slots <- struct{}{}:
					case <-ctx.Done():
						continue
					}
				}
				r := g.grade(ctx, s, filepath.Join(o.Out, "students", s.ID))
				if o.Slots != nil {
					<-o.Slots
				}
				r.compare(class.Baseline)
				mu.Lock()
				class.Results[i] = r
				done++
				if o.Progress != nil {
					o.Progress(r, done, len(o.Submissions))
				}
				mu.Unlock()
			}
		}()
	}
	for i := range o.Submissions {
		select {
		case work <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("grading stopped: %w", err)
	}
	class.Duration = time.Since(class.Started)
	class.Why = g.why
	class.Isolated = g.why == ""
	if err := class.WriteReports(o.Out); err != nil {
		return class, err
	}
	return class, nil
}

func (o *Options) defaults() error {
	if o.Kind == "" {
		o.Kind = Servers
	}
	if len(o.Submissions) == 0 {
		return errors.New("no submission to grade")
	}
	if o.Run == "" {
		o.Run = DefaultServerRun
		if o.Kind == Clients {
			o.Run = DefaultClientRun
		}
	}
	if o.Jobs <= 0 {
		o.Jobs = DefaultJobs()
	}
	if o.Out == "" {
		return errors.New("no report folder")
	}
	out, err := filepath.Abs(o.Out) // the suite runs in the submission's folder
	if err != nil {
		return err
	}
	o.Out = out
	if o.Rubric == nil {
		o.Rubric = DefaultRubric()
	}
	if o.Stepkit == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the stepkit binary: %w", err)
		}
		o.Stepkit = exe
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.RunTimeout <= 0 {
		o.RunTimeout = DefaultRunTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = conformance.DefaultReadTimeout
	}
	if o.CaseTimeout <= 0 {
		o.CaseTimeout = conformance.DefaultCaseTimeout
	}
	if o.NewBox == nil {
		o.NewBox = newSandbox
	}
	seen := map[string]bool{}
	for _, s := range o.Submissions {
		if seen[s.ID] {
			return fmt.Errorf("student id %s twice", s.ID)
		}
		seen[s.ID] = true
		if s.ID == "baseline" && o.Baseline != nil {
			return errors.New(`a student may not be called "baseline" when a baseline is graded`)
		}
	}
	return nil
}

// grader grades submissions; one per Run.
type grader struct {
	o      Options
	class  *Class
	once   sync.Once
	why    string
	portMu sync.Mutex
}

// notice passes a remark on once.
func (g *grader) notIsolated(why string) {
	g.once.Do(func() {
		g.why = why
		if g.o.Notice != nil {
			if g.o.Kind == Servers {
				g.o.Notice(fmt.Sprintf("submissions run without isolation, each on a port of its own through {port}: %s", why))
			} else {
				g.o.Notice(fmt.Sprintf("submissions run without isolation: %s", why))
			}
		}
	})
}

// grade grades one submission into dir; it always returns a row.
func (g *grader) grade(ctx context.Context, s Submission, dir string) *Result {
	start := time.Now()
	r := &Result{ID: s.ID}
	ctx, cancel := context.WithTimeout(ctx, g.o.RunTimeout)
	defer cancel()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.Verdict, r.Problem = GraderError, err.Error()
		return r
	}
	if g.o.Kind == Clients {
		g.gradeClient(ctx, s, dir, r)
	} else {
		g.gradeServer(ctx, s, dir, r)
	}
	r.Duration = time.Since(start)
	if r.Report == nil {
		r.Score = g.o.Rubric.Score(nil)
		r.Counts = map[conformance.Outcome]int{}
	}
	return r
}

// process is a started program and what became of it.
type process struct {
	box      Box
	stopOnce sync.Once
	cmd      *exec.Cmd
	out      *output
	exited   chan struct{}
	err      error
	stopped  bool // stop ended it: how it ended is not its own doing
}

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop ends the program (SIGTERM, then SIGKILL after a grace period),
// then the rest of the box's processes, and waits for its output.
func (p *process) stop() {
	p.stopOnce.Do(func() {
		if p.running() {
			p.stopped = true
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(time.Second):
				_ = p.cmd.Process.Kill()
			}
		}
		// Children of the shell may outlive it and hold its output open.
		_ = p.box.Close()
		<-p.exited
		p.out.Close()
	})
}

// describe says how the program ended, in one line.
func (p *process) describe() string {
	return p.box.Describe(p.err, p.cmd.ProcessState)
}

func (g *grader) start(ctx context.Context, box Box, s Submission, values map[string]string, dir string) (*process, error) {
	tmpl := s.Run
	if tmpl == "" {
		tmpl = g.o.Run
	}
	line, err := Expand(tmpl, values)
	if err != nil {
		return nil, err
	}
	out, err := newOutput(filepath.Join(dir, "output.txt"))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "$ %s\n", line)
	cmd := box.Command(ctx, []string{"/bin/sh", "-c", line})
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second // output held open by an orphaned child does not hold up the grading
	if s.Stdin != "" {
		cmd.Stdin = strings.NewReader(s.Stdin)
	}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %q: %w", line, err)
	}
	p := &process{box: box, cmd: cmd.Cmd, out: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// gradeServer starts the server, waits for it to listen, runs the suite
// against it beside it, and stops it.
func (g *grader) gradeServer(ctx context.Context, s Submission, dir string, r *Result) {
	box, err := g.o.NewBox(ctx, BoxConfig{Dir: s.Dir, Memory: g.o.Memory, CPU: g.o.CPU, Fallback: !g.o.RequireIsolation})
	if err != nil {
		r.Verdict, r.Problem = GraderError, "sandbox: "+err.Error()
		return
	}
	defer box.Close()
	r.Isolated = box.Isolated()
	if !r.Isolated {
		g.notIsolated(box.Why())
	}
	port := StepPort
	if !box.Isolated() {
		p, err := freePort()
		if err != nil {
			r.Verdict, r.Problem = GraderError, err.Error()
			return
		}
		port = p
	}
	p, err := g.start(ctx, box, s, map[string]string{"port": strconv.Itoa(port), "dir": box.WorkDir(), "id": s.ID}, dir)
	if err != nil {
		r.Verdict, r.Problem = GraderError, err.Error()
		return
	}
	defer p.stop()
	defer g.explain(box, p, dir, r)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := g.waitListening(ctx, box, addr, p); err != nil {
		p.stop()
		r.Output = p.out.Last(tailLines)
		if p.running() || errors.Is(err, errNeverListened) {
			r.Verdict = NeverListened
			r.Problem = strings.TrimPrefix(err.Error(), errNeverListened.Error()+": ")
			if !box.Isolated() {
				r.Problem += fmt.Sprintf(" (it must listen on the port the template's {port} gives, here %d)", port)
			}
		} else {
			r.Verdict, r.Problem = DidNotStart, p.describe()
		}
		return
	}
	rep, _, err := g.suite(ctx, box.Trusted, dir, []string{"--target", addr})
	if err != nil || rep.Counts[conformance.Error] > 0 {
		// A server the suite could not talk to may be dying right now
		// (a memory-limit kill takes a moment): say so, not just ERROR.
		select {
		case <-p.exited:
		case <-time.After(2 * time.Second):
		}
	}
	if err == nil && g.o.Fuzz > 0 && p.running() {
		r.Fuzz = g.fuzz(ctx, box.Trusted, dir, addr)
	}
	if !p.running() {
		r.Verdict, r.Problem = Crashed, "died during the suite: "+p.describe()
		p.stop()
		r.Output = p.out.Last(tailLines)
	}
	if err != nil {
		r.Verdict, r.Problem = GraderError, err.Error()
		return
	}
	r.fill(rep, g.o.Rubric)
}

// explain sets the row's Sandbox line when a server that was not found
// conformant ran into one of the box's restrictions, keeps the last lines
// of its output beside it, and adds the line to the student's reports.
func (g *grader) explain(box Box, p *process, dir string, r *Result) {
	x, ok := box.(explainer)
	if !ok || r.Verdict == Conformant || r.Verdict == GraderError {
		return
	}
	p.stop() // all of its output, and how it ended
	ended := ""
	if !p.stopped {
		ended = p.describe()
	}
	r.Sandbox = x.Explain(p.out.Tail(), ended)
	if r.Sandbox == "" {
		return
	}
	if r.Output == nil {
		r.Output = p.out.Last(tailLines)
	}
	if r.Report != nil {
		r.Report.Sandbox = r.Sandbox
		// The student's own reports say it too; they stay as the suite
		// wrote them if they cannot be rewritten.
		_ = conformance.WriteFile(filepath.Join(dir, "report.json"), r.Report.WriteJSON)
		_ = conformance.WriteFile(filepath.Join(dir, "report.html"), r.Report.WriteHTML)
	}
}

var errNeverListened = errors.New("never listened")

// waitListening dials addr inside the box until a connection succeeds,
// the program exits, or StartTimeout passes.
func (g *grader) waitListening(ctx context.Context, box Box, addr string, p *process) error {
	deadline := time.Now().Add(g.o.StartTimeout)
	for {
		dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		c, err := box.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		if !p.running() {
			return fmt.Errorf("exited before it listened")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: nothing accepted connections on %s within %s", errNeverListened, addr, g.o.StartTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exited:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// gradeClient runs the client judge on the submission's folder. The judge
// runs the client itself, once per case, each time in a fresh copy and a
// namespace of its own, so the box is not used.
func (g *grader) gradeClient(ctx context.Context, s Submission, dir string, r *Result) {
	tmpl := s.Run
	if tmpl == "" {
		tmpl = g.o.Run
	}
	args := []string{"--client", tmpl, "--client-dir", s.Dir}
	// The judge runs the client in sandboxes of its own: the class's
	// bounds go with it.
	if g.o.Memory > 0 {
		args = append(args, "--client-memory", strconv.FormatInt(g.o.Memory, 10))
	}
	if g.o.CPU > 0 {
		args = append(args, "--client-cpu", g.o.CPU.String())
	}
	if s.Stdin != "" {
		in := filepath.Join(dir, "stdin.txt")
		if err := os.WriteFile(in, []byte(s.Stdin), 0o644); err != nil {
			r.Verdict, r.Problem = GraderError, err.Error()
			return
		}
		args = append(args, "--stdin", in)
	}
	run := func(ctx context.Context, argv []string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Dir = dir
		cmd.WaitDelay = time.Second
		return cmd
	}
	rep, isolated, err := g.suite(ctx, run, dir, args)
	if err != nil {
		r.Verdict, r.Problem = GraderError, err.Error()
		return
	}
	r.Isolated = isolated
	if !isolated {
		g.notIsolated(rep.Preflight)
	}
	r.fill(rep, g.o.Rubric)
	r.Sandbox = rep.Sandbox
}

// suite runs stepkit conformance in the box's network and reads its JSON
// report. Its terminal output goes to dir/suite.txt.
func (g *grader) suite(ctx context.Context, command func(context.Context, []string) *exec.Cmd, dir string, target []string) (*conformance.Report, bool, error) {
	jsonPath := filepath.Join(dir, "report.json")
	os.Remove(jsonPath)
	argv := append([]string{g.o.Stepkit, "conformance"}, target...)
	argv = append(argv,
		"--json-report", jsonPath,
		"--html-report", filepath.Join(dir, "report.html"),
		"--junit-report", filepath.Join(dir, "junit.xml"),
		"--no-color")
	if g.o.Kind == Servers {
		argv = append(argv, "--read-timeout", g.o.ReadTimeout.String(), "--case-timeout", g.o.CaseTimeout.String())
		if g.o.Parallel > 0 {
			argv = append(argv, "--parallel", strconv.Itoa(g.o.Parallel))
		}
	}
	if g.o.Strict {
		argv = append(argv, "--strict")
	}
	argv = append(argv, g.o.Selectors...)
	out, err := newOutput(filepath.Join(dir, "suite.txt"))
	if err != nil {
		return nil, false, err
	}
	cmd := command(ctx, argv)
	cmd.Stdout, cmd.Stderr = out, out
	runErr := cmd.Run()
	out.Close()
	var ee *exec.ExitError
	if runErr != nil && !(errors.As(runErr, &ee) && (ee.ExitCode() == 1 || ee.ExitCode() == 3)) {
		return nil, false, fmt.Errorf("the suite: %s: %s", describeExit(runErr, cmd.ProcessState), lastLine(out))
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		return nil, false, fmt.Errorf("the suite wrote no report: %s", lastLine(out))
	}
	rep := &conformance.Report{}
	if err := json.Unmarshal(b, rep); err != nil {
		return nil, false, fmt.Errorf("the suite's report: %w", err)
	}
	// A client run says whether its cases ran isolated.
	var client struct {
		Client *struct {
			Isolated bool `json:"isolated"`
		} `json:"client"`
	}
	_ = json.Unmarshal(b, &client)
	return rep, client.Client == nil || client.Client.Isolated, nil
}

func lastLine(o *output) string {
	l := o.Last(1)
	if len(l) == 0 {
		return "no output"
	}
	return l[0]
}

// freePort asks the kernel for a free port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
