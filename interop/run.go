package interop

import (
	"context"
	"errors"
	"fmt"
	"html"
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
	// User is the course id the clients log in as.
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
	// Progress is called after each cell, from one goroutine at a time.
	Progress func(c *Cell, done, total int)
	// Phase is told what the run is doing ("conformance", "matrix").
	Phase func(string)
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
	if o.Conformance {
		if o.Phase != nil {
			o.Phase("conformance")
		}
		start := time.Now()
		if err := m.runConformance(ctx, &o); err != nil {
			return nil, err
		}
		m.Conformance = time.Since(start)
	}
	if o.Phase != nil {
		o.Phase("matrix")
	}
	type pair struct{ s, c int }
	var pairs []pair
	for s := range m.Servers {
		for c := range m.Clients {
			pairs = append(pairs, pair{s, c})
		}
	}
	m.Cells = make([][]*Cell, len(m.Servers))
	for s := range m.Cells {
		m.Cells[s] = make([]*Cell, len(m.Clients))
	}
	work := make(chan pair)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for w := 0; w < o.Jobs && w < len(pairs); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				c := runCell(ctx, &o, m.Servers[p.s], m.Clients[p.c])
				mu.Lock()
				m.Cells[p.s][p.c] = c
				done++
				if o.Progress != nil {
					o.Progress(c, done, len(pairs))
				}
				mu.Unlock()
			}
		}()
	}
	for _, p := range pairs {
		select {
		case work <- p:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("interop stopped: %w", err)
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
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
	ref    *refserver.Server
	refL   net.Listener
	served chan error
	root   string
	addr   string // where the relay dials (in the box's namespace, or the host's)
	id     string
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
}

// startServer starts the cell's server and waits for it to listen; the
// error says why it did not, in the server's own terms.
func startServer(ctx context.Context, o *Options, p Program, dir string) (*server, error) {
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
		os.WriteFile(filepath.Join(dir, "server.txt"), []byte("stepkit's reference server (in the grader's process)\n"), 0o644)
		return s, nil
	}
	box, err := sandbox.New(ctx, sandbox.Config{Dir: p.Dir, Memory: o.Memory, CPU: o.CPU})
	if err != nil {
		return nil, &setupError{fmt.Errorf("sandbox: %w", err)}
	}
	s := &server{box: box, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(spec.DefaultPort)), exited: make(chan struct{})}
	line, err := grade.Expand(p.Run, map[string]string{"port": strconv.Itoa(spec.DefaultPort), "dir": box.WorkDir(), "id": p.ID})
	if err != nil {
		box.Close()
		return nil, &setupError{err}
	}
	out, err := newCapped(filepath.Join(dir, "server.txt"))
	if err != nil {
		box.Close()
		return nil, &setupError{err}
	}
	fmt.Fprintf(out, "$ %s\n", line)
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
		out.Close()
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

// runCell runs every scenario of one pair.
func runCell(ctx context.Context, o *Options, sp, cp Program) *Cell {
	start := time.Now()
	c := &Cell{Server: sp.ID, Client: cp.ID, Dir: cellDir(sp.ID, cp.ID)}
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
	srv, err := startServer(ctx, o, sp, dir)
	if srv != nil {
		srv.id = sp.ID
	}
	if err != nil {
		var se *setupError
		if errors.As(err, &se) {
			c.Error = err.Error()
		} else {
			c.ServerProblem = err.Error()
		}
		return c
	}
	defer srv.stop()

	var box *sandbox.Sandbox
	var l net.Listener
	if cp.Reference {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	} else {
		box, err = sandbox.New(ctx, sandbox.Config{Dir: cp.Dir, Memory: o.Memory, CPU: o.CPU})
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
		runScenario(ctx, o, sc, srv, box, l, rl, cp, tmpl, dir, r)
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
func runScenario(ctx context.Context, o *Options, sc Scenario, srv *server, box *sandbox.Sandbox, l net.Listener, rl *relay, cp Program, tmpl judge.Template, dir string, r *ScenarioResult) {
	start := time.Now()
	defer func() { r.Duration = time.Since(start) }()
	data := sc.data()
	r.File, r.Size, r.WantMD5 = sc.Name, sc.Size, md5hex(data)
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
		runReferenceClient(ctx, o, sc, data, work, l.Addr().String(), filepath.Join(dir, sc.ID+".client.txt"), r)
	} else {
		path := filepath.Join(box.WorkDir(), sc.Name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			rl.end(0)
			r.Outcome, r.Error = Error, "the client's folder: "+err.Error()
			return
		}
		if sc.Download {
			dlDir = filepath.Join(box.WorkDir(), downloadDir)
			os.MkdirAll(dlDir, 0o777)
			os.Chmod(dlDir, 0o777)
		}
		argv := tmpl.Expand(map[string]string{"{host}": "127.0.0.1", "{port}": strconv.Itoa(spec.DefaultPort),
			"{user}": User, "{file}": sc.Name, "{dir}": downloadDir})
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
	r.StoredMD5, r.StoredSize, r.StoredErr = stored(ctx, srv, sc.Name)
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
func runReferenceClient(ctx context.Context, o *Options, sc Scenario, data []byte, work, addr, outPath string, r *ScenarioResult) {
	ctx, cancel := context.WithTimeout(ctx, o.ClientTimeout)
	defer cancel()
	out, _ := newCapped(outPath)
	defer out.Close()
	fmt.Fprintf(out, "stepkit's reference client: upload %s (%d bytes)\n", sc.Name, len(data))
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
		if _, err := c.Login(ctx, User, refclient.CoursePassword(User)); err != nil {
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
func stored(ctx context.Context, srv *server, key string) (string, int64, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := srv.dial(ctx)
	if err != nil {
		return "", -1, err.Error()
	}
	c := refclient.NewClient(conn, &refclient.Options{ReplyTimeout: 3 * time.Second})
	defer c.Close()
	if _, err := c.Login(ctx, User, refclient.CoursePassword(User)); err != nil {
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
