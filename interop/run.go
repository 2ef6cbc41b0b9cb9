package interop

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stepkit/stepkit/conformance/judge"
	"github.com/stepkit/stepkit/grade"
	"github.com/stepkit/stepkit/refclient"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/sandbox"
	"github.com/stepkit/stepkit/spec"
)

// ReferenceID names stepkit's own server and client in the matrix.
const ReferenceID = "stepkit"

// Defaults of Options.
const (
	DefaultClientTimeout = 20 * time.Second
	DefaultStartTimeout  = 10 * time.Second
	// User is the course id the first column's client logs in as; the
	// next ones count up from it (userFor).
	User = "2362202"
	// downloadDir is {dir}, relative to the client's folder.
	downloadDir = "downloads"
)

// DefaultJobs is how many cells run at once by default: a cell mostly
// waits (for a Python interpreter to start, for a response), so a few per
// core.
func DefaultJobs() int {
	n := 4 * runtime.NumCPU()
	if n > 32 {
		n = 32
	}
	return n
}

// Options configure an interop run.
type Options struct {
	// Servers and Clients are the class's programs (grade.Discover or
	// grade.ReadRoster on each folder).
	Servers, Clients []grade.Submission
	// ServerRun and ClientRun are the templates of programs without their
	// own (grade.DefaultServerRun, grade.DefaultClientRun when empty;
	// "course" is judge.CourseTemplate).
	ServerRun, ClientRun string
	// Jobs is how many cells run at once (DefaultJobs when 0).
	Jobs int
	// Out is the report folder.
	Out string
	// Scenarios run in every cell (Scenarios() when nil).
	Scenarios []Scenario
	// ClientTimeout bounds one run of a client; StartTimeout the wait for
	// a server to listen.
	ClientTimeout, StartTimeout time.Duration
	// Memory and CPU bound each program (the sandbox's defaults when 0).
	Memory int64
	CPU    time.Duration
	// Conformance runs each program's own conformance checks once, with
	// the selectors below, as evidence for blame (grade.Run, which needs
	// Stepkit, the binary).
	Conformance        bool
	Stepkit            string
	ServerSelectors    []string
	ClientSelectors    []string
	ConformanceTimeout time.Duration
	// FreshServers starts a server for every cell instead of one for each
	// segment of a row (see segment).
	FreshServers bool
	// Progress is called after each cell, from one goroutine at a time.
	Progress func(c *Cell, done, total int)
	// Phase is told what the run is doing ("conformance", "matrix").
	Phase func(string)

	files map[string]scenarioFile // each scenario's file, by ID, made once a run
}

// scenarioFile is a scenario's file and its MD5.
type scenarioFile struct {
	data []byte
	md5  string
}

// DefaultServerSelectors and DefaultClientSelectors are the requirements
// each side's own checks are restricted to: those a pair's failure is
// blamed on.
var (
	DefaultServerSelectors = []string{"CONN-3", "FRAME-9", "FILE-UPLOAD-10", "FILE-UPLOAD-2"}
	DefaultClientSelectors = []string{"CLIENT-1", "FRAME-2"}
)

// Run runs every client against every server, stepkit's own first on each
// side, writes the reports into o.Out and returns the matrix.
func Run(ctx context.Context, o Options) (*Matrix, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if ok, why := sandbox.Available(); !ok {
		return nil, fmt.Errorf("interop needs network namespaces (a server and a client each in its own, the relay between): %s", why)
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("report folder: %w", err)
	}
	m := &Matrix{Started: time.Now(), Jobs: o.Jobs}
	m.Servers = append([]Program{{ID: ReferenceID, Reference: true}}, programs(o.Servers, o.ServerRun)...)
	m.Clients = append([]Program{{ID: ReferenceID, Reference: true}}, programs(o.Clients, o.ClientRun)...)
	for _, s := range o.Scenarios {
		m.Scenarios = append(m.Scenarios, ScenarioInfo{ID: s.ID, Title: s.Title, File: s.Name, Size: s.Size})
	}
	// Each program's own checks (o.Jobs at a time, both sides together)
	// run alongside the pairs (o.Jobs segments at a time): the checks
	// mostly wait (for answers, for read timeouts), and the pairs use the
	// cores meanwhile. Blame, which needs the checks, comes after both.
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var own *ownChecks
	var ownErr error
	ownDone := make(chan struct{})
	if o.Conformance {
		if o.Phase != nil {
			o.Phase("conformance")
		}
		go func() {
			defer close(ownDone)
			start := time.Now()
			own, ownErr = runConformance(mctx, &o)
			m.Conformance = time.Since(start)
			if ownErr != nil {
				cancel()
			}
		}()
	} else {
		close(ownDone)
	}
	if o.Phase != nil {
		o.Phase("matrix")
	}
	m.Cells = make([][]*Cell, len(m.Servers))
	for s := range m.Cells {
		m.Cells[s] = make([]*Cell, len(m.Clients))
	}
	per := segmentCells
	if o.FreshServers {
		per = 1
	}
	q := &segmentQueue{segs: segments(len(m.Servers), len(m.Clients), per)}
	workers := min(o.Jobs, len(q.segs))
	ordered := make(chan struct{})
	go func() {
		defer close(ordered)
		<-ownDone
		if ownErr == nil {
			q.order(func(segs []segment) []segment { return longestFirst(segs, m, own) })
		}
	}()
	total := len(m.Servers) * len(m.Clients)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for mctx.Err() == nil {
				sg, ok := q.next()
				if !ok {
					return
				}
				runSegment(mctx, &o, m, sg, func(col int, c *Cell) {
					mu.Lock()
					m.Cells[sg.server][col] = c
					done++
					if o.Progress != nil {
						o.Progress(c, done, total)
					}
					mu.Unlock()
				})
			}
		}()
	}
	wg.Wait()
	<-ordered
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("interop stopped: %w", err)
	}
	if ownErr != nil {
		return nil, ownErr
	}
	if own != nil {
		m.attach(own)
	}
	m.blameAll()
	m.Duration = time.Since(m.Started)
	if err := m.WriteReports(o.Out); err != nil {
		return m, err
	}
	return m, nil
}

func programs(subs []grade.Submission, run string) []Program {
	out := make([]Program, len(subs))
	for i, s := range subs {
		out[i] = Program{ID: s.ID, Dir: s.Dir, Run: s.Run, Stdin: s.Stdin}
		if out[i].Run == "" {
			out[i].Run = run
		}
	}
	return out
}

func (o *Options) defaults() error {
	if len(o.Servers) == 0 && len(o.Clients) == 0 {
		return errors.New("no server and no client to pair")
	}
	if o.ServerRun == "" {
		o.ServerRun = grade.DefaultServerRun
	}
	if o.ClientRun == "" {
		o.ClientRun = grade.DefaultClientRun
	}
	for _, s := range o.Clients {
		run := s.Run
		if run == "" {
			run = o.ClientRun
		}
		if _, err := ClientTemplate(run); err != nil {
			return fmt.Errorf("client %s: %w", s.ID, err)
		}
	}
	if o.Jobs <= 0 {
		o.Jobs = DefaultJobs()
	}
	if o.Out == "" {
		return errors.New("no report folder")
	}
	out, err := filepath.Abs(o.Out)
	if err != nil {
		return err
	}
	o.Out = out
	if o.Scenarios == nil {
		o.Scenarios = Scenarios()
	}
	o.files = map[string]scenarioFile{}
	for _, sc := range o.Scenarios {
		if _, ok := o.files[sc.ID]; ok {
			return fmt.Errorf("scenario %s twice: its id names the cell's files", sc.ID)
		}
		data := sc.data()
		o.files[sc.ID] = scenarioFile{data: data, md5: md5hex(data)}
	}
	if o.ClientTimeout <= 0 {
		o.ClientTimeout = DefaultClientTimeout
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.ServerSelectors == nil {
		o.ServerSelectors = DefaultServerSelectors
	}
	if o.ClientSelectors == nil {
		o.ClientSelectors = DefaultClientSelectors
	}
	for _, side := range [][]grade.Submission{o.Servers, o.Clients} {
		seen := map[string]bool{}
		for _, s := range side {
			if s.ID == ReferenceID {
				return fmt.Errorf("a student may not be called %q: it names stepkit's own program", ReferenceID)
			}
			if seen[s.ID] {
				return fmt.Errorf("student id %s twice", s.ID)
			}
			seen[s.ID] = true
		}
	}
	return nil
}

// ClientTemplate parses a client's command template: "course" is the
// course sheet's (judge.CourseTemplate), and {file} is required.
func ClientTemplate(run string) (judge.Template, error) {
	if strings.TrimSpace(run) == "course" {
		run = judge.CourseTemplate
	}
	return judge.ParseTemplate(run)
}

// cellDir is where a cell's files go, relative to the report folder.
func cellDir(server, client string) string {
	return filepath.Join("cells", server, client)
}

// server is a cell's running server.
type server struct {
	box    *sandbox.Sandbox
	cmd    *sandbox.Cmd
	exited chan struct{}
	err    error
	ref    *refserver.Server
	refL   net.Listener
	served chan error
	root   string
	addr   string // where the relay dials (in the box's namespace, or the host's)
	id     string
	log    *serverLog
	line   string // the command line, for each cell's output file
}

func (s *server) dial(ctx context.Context) (net.Conn, error) {
	if s.box != nil {
		return s.box.DialContext(ctx, "tcp", s.addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", s.addr)
}

func (s *server) running() bool {
	if s.exited == nil {
		return true
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// ended says how a student's server ended, "" while it runs.
func (s *server) ended() string {
	if s.running() {
		return ""
	}
	return s.box.Describe(s.err, s.cmd.ProcessState)
}

func (s *server) stop() {
	if s.ref != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.ref.Shutdown(ctx)
		cancel()
		s.ref.Close()
		<-s.served
		os.RemoveAll(s.root)
		return
	}
	if s.cmd != nil && s.running() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(500 * time.Millisecond):
		}
	}
	if s.box != nil {
		s.box.Close()
	}
	if s.exited != nil {
		<-s.exited
	}
	if s.log != nil {
		s.log.Close()
	}
}

// startServer starts the cell's server and waits for it to listen; the
// error says why it did not, in the server's own terms.
func startServer(ctx context.Context, o *Options, p Program, outPath string) (*server, error) {
	if p.Reference {
		root, err := os.MkdirTemp("", "stepkit-interop-")
		if err != nil {
			return nil, err
		}
		srv, err := refserver.New(refserver.Config{Root: root, UploadMaxAge: -1})
		if err != nil {
			os.RemoveAll(root)
			return nil, err
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			os.RemoveAll(root)
			return nil, err
		}
		s := &server{ref: srv, refL: l, served: make(chan error, 1), root: root, addr: l.Addr().String()}
		go func() { s.served <- srv.Serve(l) }()
		os.WriteFile(outPath, []byte(referenceServerNote), 0o644)
		return s, nil
	}
	box, err := sandbox.New(ctx, sandbox.Config{Dir: p.Dir, Memory: o.Memory, CPU: o.CPU, Env: programEnv()})
	if err != nil {
		return nil, &setupError{fmt.Errorf("sandbox: %w", err)}
	}
	s := &server{box: box, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(spec.DefaultPort)), exited: make(chan struct{})}
	line, err := grade.Expand(p.Run, map[string]string{"port": strconv.Itoa(spec.DefaultPort), "dir": box.WorkDir(), "id": p.ID})
	if err != nil {
		box.Close()
		return nil, &setupError{err}
	}
	s.line = line
	s.log = &serverLog{}
	if err := s.log.to(outPath, "$ "+line+"\n"); err != nil {
		box.Close()
		return nil, &setupError{err}
	}
	out := s.log
	s.cmd = box.Command(ctx, []string{"/bin/sh", "-c", line})
	s.cmd.Stdout, s.cmd.Stderr = out, out
	s.cmd.WaitDelay = time.Second
	if p.Stdin != "" {
		s.cmd.Stdin = strings.NewReader(p.Stdin)
	}
	if err := s.cmd.Start(); err != nil {
		out.Close()
		box.Close()
		return nil, fmt.Errorf("did not start: %v", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(o.StartTimeout)
	for {
		dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		c, err := box.DialContext(dctx, "tcp", s.addr)
		cancel()
		if err == nil {
			c.Close()
			return s, nil
		}
		if !s.running() {
			why := s.ended()
			s.stop()
			return nil, fmt.Errorf("exited before it listened on %s (%s)", s.addr, why)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.stop()
			return nil, fmt.Errorf("never listened on %s within %s", s.addr, o.StartTimeout)
		}
		select {
		case <-ctx.Done():
		case <-s.exited:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// setupError is a failure of the grader's own, not the program's.
type setupError struct{ error }

func (e *setupError) Unwrap() error { return e.error }

// segment is a run of cells of one row whose server process serves them
// one after another: starting a class's server once for several clients
// instead of once a pair spares most of the run's processes. Segments are
// cut the same way whatever the jobs, so that a cell sees the same server
// history at --jobs 1 as at the default.
type segment struct {
	server  int
	clients []int // columns, in order
}

// segmentCells is how many cells one server process serves at most:
// enough to spare most starts, few enough that a class splits into
// several times more segments than jobs, so that the last ones end
// together. A row is cut into segments of equal size.
const segmentCells = 8

func segments(servers, clients, per int) []segment {
	n := (clients + per - 1) / per
	size := (clients + n - 1) / max(n, 1)
	var out []segment
	for s := 0; s < servers; s++ {
		for c := 0; c < clients; c += size {
			sg := segment{server: s}
			for i := c; i < min(c+size, clients); i++ {
				sg.clients = append(sg.clients, i)
			}
			out = append(out, sg)
		}
	}
	return out
}

// segmentQueue hands out segments in order to the jobs; the order of
// those not yet taken may change while they run.
type segmentQueue struct {
	mu   sync.Mutex
	segs []segment
}

func (q *segmentQueue) next() (segment, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.segs) == 0 {
		return segment{}, false
	}
	sg := q.segs[0]
	q.segs = q.segs[1:]
	return sg, true
}

// order reorders the segments not yet taken.
func (q *segmentQueue) order(f func([]segment) []segment) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.segs = f(q.segs)
}

// longestFirst orders segments so that the cells of programs that failed
// their own checks run first: such cells take longest (a failing cell runs
// again on a fresh server; a stall waits out its time), and started last
// they would leave the cores idle at the end of the run. The order changes
// no verdict: a segment's cells meet the same server history whenever it
// runs. Without own checks the order is the matrix's.
func longestFirst(segs []segment, m *Matrix, own *ownChecks) []segment {
	failed := func(p Program, server bool) int {
		if own.failed(p, server) {
			return 1
		}
		return 0
	}
	risk := func(sg segment) int {
		n := 0
		for _, col := range sg.clients {
			n += failed(m.Servers[sg.server], true) + failed(m.Clients[col], false)
		}
		return n
	}
	slices.SortStableFunc(segs, func(a, b segment) int { return risk(b) - risk(a) })
	return segs
}

// host is the server process the cells of a segment share, started when
// a cell first needs it.
type host struct {
	o      *Options
	p      Program
	srv    *server
	served []string // the clients it served, in order, since it started
}

// serve returns the running server, starting one whose output goes to
// outPath; a running one's output goes to outPath from now on.
func (h *host) serve(ctx context.Context, outPath string) (*server, error) {
	if h.srv != nil {
		note := fmt.Sprintf("(the server process started for the cell of client %s and served %s before this cell; what it printed meanwhile is on those cells' pages)\n$ %s\n",
			h.served[0], strings.Join(h.served, ", "), h.srv.line)
		if h.srv.ref != nil {
			note = referenceServerNote
		}
		if h.srv.log != nil {
			return h.srv, h.srv.log.to(outPath, note)
		}
		return h.srv, os.WriteFile(outPath, []byte(note), 0o644)
	}
	srv, err := startServer(ctx, h.o, h.p, outPath)
	if err != nil {
		return nil, err
	}
	srv.id = h.p.ID
	h.srv = srv
	return srv, nil
}

// stop ends the server: the next cell gets a fresh one.
func (h *host) stop() {
	if h.srv != nil {
		h.srv.stop()
	}
	h.srv, h.served = nil, nil
}

// runSegment runs a segment's cells in order and hands each to record.
// A server is restarted after any cell that did not pass, and a cell that
// failed on a server which had served other cells is run again on a fresh
// one, whose verdict it keeps: no cell is judged by what an earlier client
// left behind.
func runSegment(ctx context.Context, o *Options, m *Matrix, sg segment, record func(col int, c *Cell)) {
	h := &host{o: o, p: m.Servers[sg.server]}
	defer h.stop()
	for _, col := range sg.clients {
		if ctx.Err() != nil {
			return
		}
		cp := m.Clients[col]
		before := h.served
		c := runCell(ctx, o, h, cp, userFor(col))
		if c.Outcome != Pass && len(before) > 0 && ctx.Err() == nil {
			first := c.Outcome
			h.stop()
			c = runCell(ctx, o, h, cp, userFor(col))
			c.Rerun = fmt.Sprintf("%s on a server process that had served %s before this cell; run again on a fresh one, whose verdict this is", first, strings.Join(before, ", "))
		} else {
			c.ServedBefore = before
		}
		if c.Outcome != Pass || h.srv == nil || !h.srv.running() {
			h.stop()
		} else {
			h.served = append(h.served, cp.ID)
		}
		record(col, c)
	}
}

// userFor is the course id the client of a column logs in as: each client
// its own, so that the clients a server process serves in turn never meet
// each other's files.
func userFor(col int) string {
	base, _ := strconv.Atoi(User)
	return strconv.Itoa(base + col)
}

// referenceServerNote is the output page of stepkit's own server.
const referenceServerNote = "stepkit's reference server (in the grader's process)\n"

// runCell runs every scenario of one pair on the host's server.
func runCell(ctx context.Context, o *Options, h *host, cp Program, user string) *Cell {
	start := time.Now()
	sp := h.p
	c := &Cell{Server: sp.ID, Client: cp.ID, Dir: cellDir(sp.ID, cp.ID), User: user}
	dir := filepath.Join(o.Out, c.Dir)
	defer func() {
		c.Duration = time.Since(start)
		c.Outcome = provisional(c)
	}()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.Error = err.Error()
		return c
	}
	c.ServerOutput = filepath.Join(c.Dir, "server.txt")
	var tmpl judge.Template
	if !cp.Reference {
		t, err := ClientTemplate(cp.Run)
		if err != nil {
			c.Error = err.Error()
			return c
		}
		tmpl = t
	}
	srv, err := h.serve(ctx, filepath.Join(dir, "server.txt"))
	if err != nil {
		var se *setupError
		if errors.As(err, &se) {
			c.Error = err.Error()
		} else {
			c.ServerProblem = err.Error()
		}
		return c
	}

	var box *sandbox.Sandbox
	var l net.Listener
	if cp.Reference {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	} else {
		box, err = sandbox.New(ctx, sandbox.Config{Dir: cp.Dir, Memory: o.Memory, CPU: o.CPU, Env: programEnv()})
		if err == nil {
			defer box.Close()
			// The client finds its server where a course client looks.
			l, err = box.Listen(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(spec.DefaultPort)))
		}
	}
	if err != nil {
		c.Error = "the client's sandbox: " + err.Error()
		return c
	}
	rl := newRelay(l, srv.dial)
	defer rl.close()

	for _, sc := range o.Scenarios {
		r := &ScenarioResult{Scenario: sc.ID}
		c.Scenarios = append(c.Scenarios, r)
		if sc.Download && !cp.Reference && !tmpl.Has("{dir}") {
			r.Outcome = NotApplicable
			r.Blame = "not applicable: the client's template has no {dir}"
			continue
		}
		if why := srv.ended(); why != "" {
			r.Outcome = Fail
			r.ServerDied = "died before this scenario: " + why
			continue
		}
		runScenario(ctx, o, sc, srv, box, l, rl, cp, tmpl, c.User, dir, r)
		if r.Outcome == Fail && srv.exited != nil {
			// A server that failed the scenario may be dying right now:
			// its exit is reported a moment after its connections end.
			select {
			case <-srv.exited:
			case <-time.After(time.Second):
			}
		}
		if why := srv.ended(); why != "" {
			r.ServerDied = "died during this scenario: " + why
		}
	}
	return c
}

// provisional is a cell's outcome before blame: blame needs the
// reference pairs, which may not have run yet.
func provisional(c *Cell) Outcome {
	switch {
	case c.Error != "":
		return Error
	case c.ServerProblem != "":
		return Fail
	}
	o := Pass
	for _, r := range c.Scenarios {
		switch r.Outcome {
		case Fail:
			return Fail
		case Error:
			o = Error
		}
	}
	return o
}

// runScenario runs the client once through the relay and records what
// happened: the capture, its decoding, the client's exit, what the server
// stored.
func runScenario(ctx context.Context, o *Options, sc Scenario, srv *server, box *sandbox.Sandbox, l net.Listener, rl *relay, cp Program, tmpl judge.Template, user, dir string, r *ScenarioResult) {
	start := time.Now()
	defer func() { r.Duration = time.Since(start) }()
	f := o.files[sc.ID]
	data := f.data
	r.File, r.Size, r.WantMD5 = sc.Name, sc.Size, f.md5
	rel := func(name string) string { return filepath.Join(cellDirOf(dir), name) }
	r.Capture, r.Diagram, r.Dump, r.ClientOutput = rel(sc.ID+".pcapng"), rel(sc.ID+".ladder.html"), rel(sc.ID+".dump.txt"), rel(sc.ID+".client.txt")

	rl.begin()
	var dlDir string
	if cp.Reference {
		work, err := os.MkdirTemp("", "stepkit-interop-client-")
		if err != nil {
			rl.end(0)
			r.Outcome, r.Error = Error, err.Error()
			return
		}
		defer os.RemoveAll(work)
		dlDir = filepath.Join(work, downloadDir)
		os.Mkdir(dlDir, 0o755)
		runReferenceClient(ctx, o, sc, data, work, l.Addr().String(), user, filepath.Join(dir, sc.ID+".client.txt"), r)
	} else {
		path := filepath.Join(box.WorkDir(), sc.Name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			rl.end(0)
			r.Outcome, r.Error = Error, "the client's folder: "+err.Error()
			return
		}
		if tmpl.Has("{dir}") {
			// A client given {dir} finds it there in every scenario, as on
			// the student's machine; only the download scenario checks
			// what it wrote.
			dlDir = filepath.Join(box.WorkDir(), downloadDir)
			os.MkdirAll(dlDir, 0o777)
			os.Chmod(dlDir, 0o777)
		}
		argv := tmpl.Expand(map[string]string{"{host}": "127.0.0.1", "{port}": strconv.Itoa(spec.DefaultPort),
			"{user}": user, "{file}": sc.Name, "{dir}": downloadDir})
		runStudentClient(ctx, o, box, cp, argv, filepath.Join(dir, sc.ID+".client.txt"), r)
	}
	rec := rl.end(time.Second)
	r.Overflow = rec.overflow
	for _, rc := range rec.list() {
		r.Connections++
		if rc.dialErr != nil && r.RelayProblem == "" {
			r.RelayProblem = "the relay could not reach the server: " + rc.dialErr.Error()
		}
	}

	// What the server stored, asked on a connection of the grader's own.
	r.StoredMD5, r.StoredSize, r.StoredErr = stored(ctx, srv, user, sc.Name)
	if sc.Download && dlDir != "" {
		b, err := os.ReadFile(filepath.Join(dlDir, sc.Name))
		if err != nil {
			r.DownloadErr = "no file " + filepath.Join("{dir}", sc.Name)
			if entries, _ := os.ReadDir(dlDir); len(entries) > 0 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				r.DownloadErr += " (found: " + strings.Join(names, ", ") + ")"
			}
		} else {
			r.DownloadMD5 = md5hex(b)
		}
	}

	pcap := filepath.Join(dir, sc.ID+".pcapng")
	if err := rec.writePcapng(pcap); err != nil {
		r.Outcome, r.Error = Error, err.Error()
		return
	}
	if r.Overflow != "" {
		// Megabytes of what is no STEP take the decoder long to resync
		// through, and the blame needs none of it.
		note := fmt.Sprintf("not decoded: the %s sent more than %d MiB; stepkit dump %s decodes it (slowly)", r.Overflow, maxRecorded>>20, sc.ID+".pcapng")
		os.WriteFile(filepath.Join(dir, sc.ID+".dump.txt"), []byte(note+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, sc.ID+".ladder.html"), []byte("<!doctype html><meta charset=\"utf-8\"><p>"+html.EscapeString(note)+"</p>\n"), 0o644)
		r.Outcome = Fail
		return
	}
	w, err := decodeCapture(ctx, pcap, filepath.Join(dir, sc.ID+".dump.txt"), filepath.Join(dir, sc.ID+".ladder.html"),
		fmt.Sprintf("%s × %s: %s", srv.id, cp.ID, sc.ID), rec.clientClosed())
	if err != nil {
		r.Outcome, r.Error = Error, err.Error()
		return
	}
	r.wire = w
	for _, n := range w.Notes {
		if n.Severity != "info" {
			r.Diagnoses = append(r.Diagnoses, n.Kind+": "+n.Text)
		}
	}
	r.Messages = len(w.Msgs)
	r.Outcome = Fail
	if r.whole(sc) && !r.falseSuccess() {
		r.Outcome = Pass
	}
}

// cellDirOf turns a cell's absolute folder into its path in the report.
func cellDirOf(abs string) string {
	parts := strings.Split(filepath.ToSlash(abs), "/")
	if len(parts) < 3 {
		return abs
	}
	return filepath.Join(parts[len(parts)-3:]...)
}

// runStudentClient runs the client's command in its sandbox under the time limit.
func runStudentClient(ctx context.Context, o *Options, box *sandbox.Sandbox, cp Program, argv []string, outPath string, r *ScenarioResult) {
	ctx, cancel := context.WithTimeout(ctx, o.ClientTimeout)
	defer cancel()
	out, err := newCapped(outPath)
	if err != nil {
		r.ClientExit, r.ClientExitCode = err.Error(), -1
		return
	}
	defer out.Close()
	fmt.Fprintf(out, "$ %s\n", shellQuote(argv))
	cmd := box.Command(ctx, argv)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	if cp.Stdin != "" {
		cmd.Stdin = strings.NewReader(cp.Stdin)
	}
	start := time.Now()
	err = cmd.Run()
	r.ClientTime = time.Since(start)
	r.ClientExitCode = -1
	if cmd.ProcessState != nil {
		r.ClientExitCode = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() == context.DeadlineExceeded {
		r.ClientTimedOut = true
		r.ClientExit = fmt.Sprintf("killed after the time limit of %s", o.ClientTimeout)
		r.ClientExitCode = -1
	} else {
		r.ClientExit = box.Describe(err, cmd.ProcessState)
	}
	r.ClientLast = out.lastLine()
}

// runReferenceClient uploads (and downloads) with stepkit's client, in the
// grader's process, through the relay's listener.
func runReferenceClient(ctx context.Context, o *Options, sc Scenario, data []byte, work, addr, user, outPath string, r *ScenarioResult) {
	ctx, cancel := context.WithTimeout(ctx, o.ClientTimeout)
	defer cancel()
	out, _ := newCapped(outPath)
	defer out.Close()
	fmt.Fprintf(out, "stepkit's reference client: upload %s (%d bytes) as %s\n", sc.Name, len(data), user)
	start := time.Now()
	err := func() error {
		path := filepath.Join(work, sc.Name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
		c, err := refclient.Dial(ctx, addr, &refclient.Options{DialTimeout: 5 * time.Second, ReplyTimeout: 10 * time.Second})
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Login(ctx, user, refclient.CoursePassword(user)); err != nil {
			return err
		}
		res, err := c.UploadFile(ctx, path, sc.Name, &refclient.TransferOptions{Restart: true})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "uploaded: %d blocks of %d, server md5 %s\n", res.Plan.TotalBlock, res.Plan.BlockSize, res.ServerMD5)
		if sc.Download {
			res, err := c.DownloadFile(ctx, sc.Name, filepath.Join(work, downloadDir, sc.Name), &refclient.TransferOptions{Restart: true})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "downloaded: md5 %s\n", res.MD5)
		}
		c.Bye()
		return nil
	}()
	r.ClientTime = time.Since(start)
	if err != nil {
		fmt.Fprintf(out, "error: %v\n", err)
		r.ClientExit, r.ClientExitCode = "error: "+err.Error(), 1
	} else {
		r.ClientExit, r.ClientExitCode = "exit status 0", 0
	}
	r.ClientLast = out.lastLine()
}

// stored asks the server, on a connection of the grader's own, for the
// size and MD5 of the file under key (FILE GET).
func stored(ctx context.Context, srv *server, user, key string) (string, int64, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := srv.dial(ctx)
	if err != nil {
		return "", -1, err.Error()
	}
	c := refclient.NewClient(conn, &refclient.Options{ReplyTimeout: 3 * time.Second})
	defer c.Close()
	if _, err := c.Login(ctx, user, refclient.CoursePassword(user)); err != nil {
		return "", -1, err.Error()
	}
	p, err := c.FileInfo(ctx, key)
	if err != nil {
		return "", -1, err.Error()
	}
	c.Bye()
	return p.MD5, p.Size, ""
}

func shellQuote(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~") {
			b.WriteString(a)
			continue
		}
		b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	return b.String()
}

// capped is a program's output file, bounded.
type capped struct {
	mu      sync.Mutex
	f       *os.File
	written int64
	last    []byte
}

const maxOutput = 256 << 10

func newCapped(path string) (*capped, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("program output: %w", err)
	}
	return &capped{f: f}, nil
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return len(p), nil
	}
	if room := maxOutput - c.written; room > 0 {
		q := p
		if int64(len(q)) > room {
			q = q[:room]
		}
		m, _ := c.f.Write(q)
		c.written += int64(m)
	}
	c.last = append(c.last, p...)
	if len(c.last) > 4096 {
		c.last = c.last[len(c.last)-4096:]
	}
	return len(p), nil
}

func (c *capped) lastLine() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := strings.Split(strings.TrimRight(string(c.last), "\n"), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func (c *capped) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.f = nil
	return err
}

// serverLog sends a server's output to the page of the cell it serves at
// the moment, each bounded as a program's output is.
type serverLog struct {
	mu  sync.Mutex
	cur *capped
}

// to starts a cell's output file with head; what the server prints from
// now on goes there.
func (l *serverLog) to(path, head string) error {
	c, err := newCapped(path)
	if err != nil {
		return err
	}
	c.Write([]byte(head))
	l.mu.Lock()
	old := l.cur
	l.cur = c
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (l *serverLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != nil {
		l.cur.Write(p)
	}
	return len(p), nil
}

func (l *serverLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil {
		return nil
	}
	err := l.cur.Close()
	l.cur = nil
	return err
}

// programEnv is what the class's programs find in their environment
// besides the sandbox's own: unbuffered Python output, so that each cell's
// page shows what the server printed during that cell, and the grader's
// TZ when it has one (course tokens carry the server's local time).
// Bytecode may be written: a submission's own modules are compiled once
// for all the scenarios of a cell, as on the student's machine.
func programEnv() []string {
	env := []string{"PYTHONUNBUFFERED=1", "PYTHONIOENCODING=utf-8"}
	if tz, ok := os.LookupEnv("TZ"); ok {
		env = append(env, "TZ="+tz)
	}
	return env
}
