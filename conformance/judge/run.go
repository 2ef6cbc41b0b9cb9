package judge

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/sandbox"
	"github.com/stepkit/stepkit/spec"
)

// DefaultTimeout is the time limit of the client in each case.
const DefaultTimeout = 20 * time.Second

// Isolation says where cases run the client.
type Isolation int

const (
	// Auto runs each case in a network namespace of its own when this
	// machine allows it, else on the host network (said once, in the
	// report's preflight line).
	Auto Isolation = iota
	// Host always runs on the host network: the judge listens on a free
	// port passed through {port}, or on 1379 when the template has none.
	Host
)

// Options configure a client run.
type Options struct {
	Template Template
	// Dir is the client's folder, copied afresh for each case ("": the
	// working directory).
	Dir string
	// Stdin is given to the client on its standard input (nil: empty);
	// StdinName names its file in the report.
	Stdin     []byte
	StdinName string
	// Env is the client's environment besides PATH, HOME and LANG.
	Env []string
	// Timeout is the client's time limit in each case (0: DefaultTimeout).
	Timeout time.Duration
	// Memory and CPU bound the client in each case, in its sandbox (the
	// sandbox's defaults when 0; not applied on the host).
	Memory int64
	CPU    time.Duration
	// Parallel is the number of cases run at once (0: 4 when isolated).
	Parallel int
	// Isolation says where the client runs (default Auto).
	Isolation Isolation

	LabelFilter string
	Selectors   []string
	Strict      bool
	// Progress, if set, is called after each case.
	Progress func(c *Case, o conformance.Outcome, done, total int)
}

// hostPort is the port clients that ignore {port} dial, and the judge's
// port inside a namespace.
const hostPort = spec.DefaultPort

// hostPortMu serialises cases that listen on the host's 1379.
var hostPortMu sync.Mutex

// Run judges the client: each selected case runs the template once against
// a judging server and is reported like a server case.
func Run(ctx context.Context, o Options) (*conformance.Report, error) {
	picked, err := Select(o.LabelFilter, o.Selectors)
	if err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Dir == "" {
		if o.Dir, err = os.Getwd(); err != nil {
			return nil, err
		}
	}
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(o.Dir); err != nil {
		return nil, fmt.Errorf("client folder: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("client folder %s is not a folder", o.Dir)
	}
	isolated, why := false, "the run asked for the host network"
	if o.Isolation == Auto {
		isolated, why = namespacesAvailable()
	}
	port := hostPort
	parallel := o.Parallel
	if !isolated {
		if o.Template.Has("{port}") {
			port = 0
		} else if parallel == 0 {
			parallel = 1 // every case listens on the host's 1379
		}
	}
	if parallel <= 0 {
		parallel = 4
	}
	started := time.Now()
	reports := make([]conformance.CaseReport, len(picked))
	var mu sync.Mutex
	done := 0
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(parallel, len(picked)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				cr := runCase(ctx, &o, picked[i], isolated, port)
				mu.Lock()
				reports[i] = cr
				done++
				if o.Progress != nil {
					o.Progress(picked[i], cr.Outcome, done, len(picked))
				}
				mu.Unlock()
			}
		}()
	}
	for i := range picked {
		work <- i
	}
	close(work)
	wg.Wait()

	preflight := "each case ran the client in a network namespace of its own, the judge on 127.0.0.1:1379"
	if !isolated {
		where := "a free port passed through {port}"
		if port != 0 {
			where = "127.0.0.1:1379, one case at a time"
		}
		preflight = fmt.Sprintf("no network namespaces (%s): the client ran on the host network, the judge on %s", why, where)
	}
	cs := conformance.ClientSettings{Template: o.Template.String(), Dir: o.Dir, Isolated: isolated, Port: port,
		TimeoutMS: o.Timeout.Milliseconds(), Stdin: o.StdinName, Parallel: parallel, Features: o.Template.Features()}
	if !isolated {
		cs.Why = why
	}
	settings := conformance.Settings{CaseTimeoutMS: o.Timeout.Milliseconds()}
	rep := conformance.NewClientReport("client `"+o.Template.String()+"`", started, time.Since(started), settings, cs, preflight, reports, o.Strict)
	rep.Execution = clientExecution(parallel, isolated, port, o.Timeout)
	for _, c := range rep.Cases {
		if c.Client != nil && c.Client.Sandbox != "" {
			rep.Sandbox = fmt.Sprintf("%s (case %s)", c.Client.Sandbox, c.ID)
			break
		}
	}
	return rep, nil
}

// clientExecution says how a client run was carried out, in the terms a
// server run uses.
func clientExecution(parallel int, isolated bool, port int, limit time.Duration) *conformance.Execution {
	e := &conformance.Execution{Mode: "parallel", Workers: parallel,
		Silence: fmt.Sprintf("the judge never waits on the client: a client still running after its time limit (%v) is ended, and the case is judged by what reached the judge", limit)}
	if parallel <= 1 || (!isolated && port != 0) {
		e.Mode, e.Workers = "serial", 1
		e.Reason = "cases ran one at a time"
		if !isolated && port != 0 {
			e.Reason = "without namespaces the client dials the host's 127.0.0.1:1379, which one case at a time can hold"
		}
	}
	return e
}

// caseRun is one case in progress: the file the client uploads, the
// server it meets, what it did, and the findings against it.
type caseRun struct {
	ctx  context.Context
	o    *Options
	c    *Case
	b    behaviour
	user string // "" when the template has no {user}
	name string // the file's name
	data []byte
	srv  *server
	run  *conformance.ClientRun
	// findings and notes of the case.
	findings []conformance.Finding
	notes    []string
	dlDir    string // the download folder on the host, when {dir} is used
}

// abortCase ends a case's judgement after a finding that decides it.
type abortCase struct{}

func runCase(ctx context.Context, o *Options, c *Case, isolated bool, port int) (cr conformance.CaseReport) {
	start := time.Now()
	cr = conformance.CaseReport{ID: c.ID, Section: c.Section, Title: c.Title, Requirements: c.requirementRefs()}
	r := &caseRun{ctx: ctx, o: o, c: c, user: "s" + strconv.Itoa(2000000+rand.IntN(999999))}
	defer func() {
		cr.Findings, cr.Notes = r.findings, r.notes
		cr.Outcome = conformance.WorstOutcome(r.findings)
		cr.DurationMS = float64(time.Since(start).Microseconds()) / 1000
		if r.run != nil {
			cr.Client = r.run
		}
		if r.srv != nil {
			cr.Exchange = r.srv.exchange()
			for _, e := range cr.Exchange {
				if e.Dir == "send" {
					cr.Sent++ // responses the judge wrote
				}
			}
		}
	}()
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(abortCase); !ok {
				r.add(conformance.Finding{Outcome: conformance.Error, Message: fmt.Sprintf("the judge failed: %v", v)})
			}
		}
	}()
	c.setup(r)
	for _, ph := range c.needs {
		if !o.Template.Has(ph) {
			r.info(c.Reqs[0], fmt.Sprintf("not applicable: the template has no %s, so the client cannot be asked for this", ph))
			return
		}
	}
	if !o.Template.Has("{user}") {
		r.user = ""
	}
	if ctx.Err() != nil {
		r.errorf("not run: the run was interrupted")
	}
	p, err := newPlace(ctx, o, isolated)
	if err != nil {
		r.errorf("the client's scratch folder or namespace could not be made: %v", err)
	}
	defer p.Close()
	// The file lies in the client's working folder under its bare name, as
	// a student would pass it; downloads go to a folder of their own.
	rel := r.name
	if err := os.WriteFile(filepath.Join(p.WorkDir(), rel), r.data, 0o644); err != nil {
		r.errorf("scratch folder: %v", err)
	}
	dlRel := "judge-downloads"
	if o.Template.Has("{dir}") {
		r.dlDir = filepath.Join(p.WorkDir(), dlRel)
		if err := os.MkdirAll(r.dlDir, 0o777); err != nil {
			r.errorf("scratch folder: %v", err)
		}
		os.Chmod(r.dlDir, 0o777)
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if !isolated && port == hostPort {
		hostPortMu.Lock()
		defer hostPortMu.Unlock()
	}
	l, err := p.Listen(ctx, "tcp", addr)
	if err != nil {
		if !isolated && port == hostPort {
			r.errorf("%v (%v)", errNoPort, err)
		}
		r.errorf("the judge cannot listen on %s: %v", addr, err)
	}
	if err := reachable(ctx, p, l); err != nil {
		l.Close()
		r.errorf("%v", err)
	}
	srv, err := startServer(r.b, l, start)
	if err != nil {
		l.Close()
		r.errorf("%v", err)
	}
	r.srv = srv
	defer srv.close()
	_, ps, _ := net.SplitHostPort(l.Addr().String())
	argv := o.Template.Expand(map[string]string{"{host}": "127.0.0.1", "{port}": ps, "{user}": r.user, "{file}": rel, "{dir}": dlRel})
	r.run = r.runClient(p, argv)
	srv.stopRelay(2 * time.Second)
	c.judge(r)
	return
}

// runClient runs the client once under the case's time limit.
func (r *caseRun) runClient(p place, argv []string) *conformance.ClientRun {
	ctx, cancel := context.WithTimeout(r.ctx, r.o.Timeout)
	defer cancel()
	stdout, stderr := &tailBuffer{max: outputMax}, &tailBuffer{max: outputMax}
	run := &conformance.ClientRun{Command: argv, ExitCode: -1}
	start := time.Now()
	var cmd *sandbox.Cmd
	var err error
	for try := 0; ; try++ {
		cmd = p.Command(ctx, argv)
		cmd.Stdin = bytes.NewReader(r.o.Stdin)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		err = cmd.Start()
		// A program just copied into the scratch folder may still be open
		// for writing in a child forked meanwhile by another case: that
		// lasts until the child's exec, so try again.
		if !errors.Is(err, syscall.ETXTBSY) || try == 50 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		run.Exit = "not started: " + err.Error()
		r.run = run
		r.errorf("the client could not be started: %v", err)
	}
	err = cmd.Wait()
	run.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	run.Stdout, run.Stderr = stdout.String(), stderr.String()
	var ee *exec.ExitError
	switch {
	case ctx.Err() == context.DeadlineExceeded && r.ctx.Err() == nil:
		run.TimedOut = true
		run.Exit = fmt.Sprintf("killed: time limit (%v)", r.o.Timeout)
	case r.ctx.Err() != nil:
		run.Exit = "killed: the run was interrupted"
	case err == nil:
		run.ExitCode = 0
		run.Exit = "exit status 0"
	case errors.As(err, &ee):
		run.ExitCode = ee.ExitCode()
		run.Exit = ee.Error()
		if d, ok := p.(describer); ok {
			run.Exit = d.describe(err, cmd.ProcessState)
		}
	default:
		run.Exit = err.Error()
	}
	if x, ok := p.(explainer); ok && !run.TimedOut {
		run.Sandbox = x.explain(run.Stdout+"\n"+run.Stderr, run.Exit)
	}
	if r.ctx.Err() != nil {
		r.run = run
		r.errorf("not finished: the run was interrupted")
	}
	return run
}

// outputMax bounds what is kept of each of the client's output streams.
const outputMax = 16 << 10

// tailBuffer keeps the first and the last bytes of a stream.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	head    []byte
	tail    []byte
	dropped int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if room := t.max/2 - len(t.head); room > 0 {
		k := min(room, len(p))
		t.head = append(t.head, p[:k]...)
		p = p[k:]
	}
	t.tail = append(t.tail, p...)
	if over := len(t.tail) - t.max/2; over > 0 {
		t.dropped += over
		t.tail = append(t.tail[:0], t.tail[over:]...)
	}
	return n, nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dropped > 0 {
		return string(t.head) + fmt.Sprintf("\n[... %d bytes not kept ...]\n", t.dropped) + string(t.tail)
	}
	return string(t.head) + string(t.tail)
}

// ---- findings

func (r *caseRun) add(f conformance.Finding) { r.findings = append(r.findings, f) }

// fail records req as broken (at its level) and, for a MUST, ends the
// judgement of the case.
func (r *caseRun) fail(req, msg, expected, sent string) {
	rq, ok := spec.Lookup(req)
	if !ok {
		panic(fmt.Sprintf("judge: case %s cites unknown requirement %s", r.c.ID, req))
	}
	f := conformance.Finding{Outcome: outcomeFor(rq.Level), Requirement: rq.ID, Level: string(rq.Level), Text: rq.Text,
		Message: msg, Expected: expected, Received: sent}
	r.add(f)
	if f.Outcome == conformance.Fail {
		panic(abortCase{})
	}
}

// failHex is fail with the bytes that decide it.
func (r *caseRun) failHex(req, msg, expected, sent string, b []byte) {
	rq, _ := spec.Lookup(req)
	r.add(conformance.Finding{Outcome: outcomeFor(rq.Level), Requirement: rq.ID, Level: string(rq.Level), Text: rq.Text,
		Message: msg, Expected: expected, Received: sent, ReceivedHex: hex.Dump(b)})
}

func (r *caseRun) info(req, msg string) {
	rq, _ := spec.Lookup(req)
	r.add(conformance.Finding{Outcome: conformance.Informational, Requirement: rq.ID, Level: string(rq.Level), Text: rq.Text, Message: msg})
}

func (r *caseRun) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *caseRun) errorf(format string, args ...any) {
	r.add(conformance.Finding{Outcome: conformance.Error, Message: fmt.Sprintf(format, args...)})
	panic(abortCase{})
}

func outcomeFor(l spec.Level) conformance.Outcome {
	switch l {
	case spec.MUST:
		return conformance.Fail
	case spec.SHOULD:
		return conformance.NonStrict
	}
	return conformance.Informational
}

// ---- helpers for cases

// fileData is size bytes that differ from one block to the next, the same
// on every run of a case (verdicts must not depend on luck).
func fileData(size int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x5e9))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func coursePassword(user string) string { return md5hex([]byte(user)) }

// describe is a request as a report shows it.
func describe(q *request) string {
	s := fmt.Sprintf("c%d #%d %s", q.conn, q.seq, q.msg.JSONString())
	if n := q.binLen; n > 0 {
		s += fmt.Sprintf(" + %d binary bytes", n)
	}
	return s
}

func quoteList(ss []string) string { return strings.Join(ss, ", ") }
