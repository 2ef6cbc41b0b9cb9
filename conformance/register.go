package conformance

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"

	"github.com/stepkit/stepkit/spec"
)

// Case is one conformance case: what it checks and the requirements it
// cites. The first requirement is the one the case is about; its section
// prefix files the case.
type Case struct {
	ID      string   // the first requirement's ID, with ".N" for the N-th case citing it first
	Reqs    []string // requirement IDs the case cites
	Title   string   // one line: what the case does
	Section string   // e.g. "FILE-UPLOAD"
	body    func(*T)
	// late cases run after every other case of the run (see
	// registrar.LateCase).
	late bool
	// waits is how long the case waits on purpose (a token's lifetime, an
	// idle timeout); it is added to the whole-case timeout.
	waits func(Config) time.Duration
	// alone cases run with no other case of the run at the same time (see
	// registrar.TimedCase).
	alone bool
}

// Labels are the case's Ginkgo labels (CaseLabels).
func (c *Case) Labels() []string { return CaseLabels(c.Reqs) }

// CaseLabels are the labels of a case citing reqs: req:ID for each
// requirement, sec:PREFIX for each section and level:LEVEL for each level
// cited.
func CaseLabels(reqs []string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(l string) {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	for _, id := range reqs {
		add("req:" + id)
	}
	for _, id := range reqs {
		r, _ := spec.Lookup(id)
		add("sec:" + r.SectionPrefix())
	}
	for _, id := range reqs {
		r, _ := spec.Lookup(id)
		add("level:" + string(r.Level))
	}
	return out
}

// Level is the level of the case's first requirement.
func (c *Case) Level() spec.Level {
	r, _ := spec.Lookup(c.Reqs[0])
	return r.Level
}

// Text is the Ginkgo spec text: the case ID in brackets, then the title.
func (c *Case) Text() string { return "[" + c.ID + "] " + c.Title }

// Requirement texts for reports.
func (c *Case) requirementRefs() []RequirementRef {
	out := make([]RequirementRef, 0, len(c.Reqs))
	for _, id := range c.Reqs {
		r, _ := spec.Lookup(id)
		out = append(out, RequirementRef{ID: r.ID, Level: string(r.Level), Text: r.Text})
	}
	return out
}

// registrar is handed to each section's registration function. In Ginkgo
// mode it defines containers and specs; in collect mode it only lists.
type registrar struct {
	ginkgo bool
	suite  *Suite
	cases  []*Case
	count  map[string]int
}

// LateCase defines a case that runs after every other case of the run,
// although it is listed and reported in its own section: a case that needs
// time to pass (TOKEN-11 reuses the run's first token) gets it from the
// cases before it instead of a wait of its own. waits is the longest it
// may still wait.
func (r *registrar) LateCase(reqs []string, title string, waits func(Config) time.Duration, body func(*T)) {
	r.add(reqs, title, waits, body, true)
}

// TimedCase defines a case whose verdict rests on how the server's reads
// fall in time: a frame sent in pieces that the server must read apart, a
// response that must arrive in one piece. In a parallel run it runs alone,
// before the others, so that the run's own load on the server cannot hide
// what it looks for.
func (r *registrar) TimedCase(reqs []string, title string, body func(*T)) {
	r.add(reqs, title, nil, body, false)
	r.cases[len(r.cases)-1].alone = true
}

// Describe groups cases under a container.
func (r *registrar) Describe(text string, body func()) {
	if r.ginkgo {
		ginkgo.Describe(text, body)
		return
	}
	body()
}

// Case defines a case citing reqs (the first is its subject).
func (r *registrar) Case(reqs []string, title string, body func(*T)) {
	r.SlowCase(reqs, title, nil, body)
}

// SlowCase defines a case that waits on purpose for as long as waits says
// under the run's configuration.
func (r *registrar) SlowCase(reqs []string, title string, waits func(Config) time.Duration, body func(*T)) {
	r.add(reqs, title, waits, body, false)
}

func (r *registrar) add(reqs []string, title string, waits func(Config) time.Duration, body func(*T), late bool) {
	for _, id := range reqs {
		if _, ok := spec.Lookup(id); !ok {
			panic(fmt.Sprintf("conformance: case %q cites unknown requirement %s", title, id))
		}
	}
	first, _ := spec.Lookup(reqs[0])
	r.count[first.ID]++
	id := first.ID
	if n := r.count[first.ID]; n > 1 {
		id = fmt.Sprintf("%s.%d", first.ID, n)
	}
	c := &Case{ID: id, Reqs: reqs, Title: title, Section: first.SectionPrefix(), body: body, waits: waits, late: late}
	r.cases = append(r.cases, c)
	if r.ginkgo {
		r.suite.order[c.ID] = len(r.cases)
		if !late && r.suite.selected(c) {
			r.suite.define(c)
		}
	}
}

// defineLate defines the late cases, after every other.
func (r *registrar) defineLate() {
	for _, c := range r.cases {
		if c.late && r.suite.selected(c) {
			r.suite.define(c)
		}
	}
}

// reqs is shorthand for a requirement list.
func reqs(ids ...string) []string { return ids }

// sections are the registration functions, one per spec section, in
// STEP.md order.
var sections = []func(*registrar){
	frameCases,
	messageCases,
	requestCases,
	earthCases,
	loginCases,
	tokenCases,
	dataCases,
	fileSaveCases,
	fileUploadCases,
	fileGetCases,
	fileDownloadCases,
	fileDeleteCases,
	keyCases,
	connCases,
	robustCases,
	extensionCases,
}

// Cases lists every case of the suite, in order, without Ginkgo.
func Cases() []*Case {
	r := &registrar{count: map[string]int{}}
	for _, f := range sections {
		f(r)
	}
	return r.cases
}

// Suite is one registration of the cases with Ginkgo, with the results
// they produce.
type Suite struct {
	cfg      Config
	selectFn func(*Case) bool
	mu       sync.Mutex
	results  map[string]*result
	cases    map[string]*Case
	defined  []*Case
	order    map[string]int // registration order, for reports
	pre      preflight
	runCtx   context.Context
	progress func(c *Case, o Outcome, done, total int)
	done     int
	// parallel is how many cases may run at once (0: DefaultParallel).
	parallel  int
	startOnce sync.Once
	started   bool
	finished  chan struct{}
	exec      Execution
}

// Register defines the cases with Ginkgo's global suite for cfg; call it at
// the top level (before RunSpecs), after ginkgo's extensions/globals.Reset
// when the process runs the suite more than once. sel, when not nil, picks
// the cases to define.
func Register(cfg Config, sel func(*Case) bool) *Suite {
	s := &Suite{cfg: cfg.withDefaults(), selectFn: sel, results: map[string]*result{}, cases: map[string]*Case{}, order: map[string]int{},
		runCtx: context.Background(), finished: make(chan struct{})}
	r := &registrar{ginkgo: true, suite: s, count: map[string]int{}}
	ginkgo.Describe("STEP conformance", func() {
		for _, f := range sections {
			f(r)
		}
		r.defineLate()
	})
	return s
}

// execution is a copy of how the run went, for its report; nil when the
// cases never started.
func (s *Suite) execution() *Execution {
	if !s.wait() {
		return nil
	}
	e := s.exec
	return &e
}

// wait waits for the cases to finish, if they started, and reports
// whether they did.
func (s *Suite) wait() bool {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if started {
		<-s.finished
	}
	return started
}

func (s *Suite) selected(c *Case) bool { return s.selectFn == nil || s.selectFn(c) }

// entryName is the report entry that carries a case's ID.
const entryName = "step-case"

func (s *Suite) define(c *Case) {
	s.cases[c.ID] = c
	s.defined = append(s.defined, c)
	res := &result{log: &wireLog{start: time.Now()}, ready: make(chan struct{})}
	s.results[c.ID] = res
	// The cases run ahead of the specs (see Suite.execute); each spec
	// waits for its case's result and reports it, so that Ginkgo's
	// selection, order and reporting stay those of the suite.
	ginkgo.It(c.Text(), ginkgo.Label(c.Labels()...), func(ctx ginkgo.SpecContext) {
		s.start()
		ginkgo.AddReportEntry(entryName, c.ID, ginkgo.ReportEntryVisibilityNever)
		select {
		case <-res.ready:
		case <-ctx.Done():
			ginkgo.Fail("interrupted while the case ran")
		}
		o, fs, _ := res.snapshot()
		if o == Fail || o == Error {
			var b strings.Builder
			for _, f := range fs {
				if f.Outcome == o {
					b.WriteString(f.String())
				}
			}
			ginkgo.Fail(b.String())
		}
	})
}

// Report turns Ginkgo's report of a run into the suite's own.
func (s *Suite) Report(gr types.Report) *Report {
	rep := &Report{
		Schema:    ReportSchema,
		Target:    s.cfg.Target,
		Started:   gr.StartTime,
		Preflight: s.pre.summary(),
		Execution: s.execution(),
		Settings: Settings{
			ReadTimeoutMS: s.cfg.ReadTimeout.Milliseconds(), CaseTimeoutMS: s.cfg.CaseTimeout.Milliseconds(),
			Accounts: !s.cfg.courseLogin(), User: s.cfg.User, User2: s.cfg.User2,
			TokenTTLMS: s.cfg.TokenTTL.Milliseconds(), IdleTimeoutMS: s.cfg.IdleTimeout.Milliseconds(),
			MaxConns: s.cfg.MaxConns, Quota: s.cfg.Quota, MaxFileSize: s.cfg.MaxFileSize, BlockSize: s.cfg.BlockSize,
		},
	}
	rep.DurationMS = ms(gr.RunTime)
	for _, sr := range gr.SpecReports {
		if sr.LeafNodeType != types.NodeTypeIt {
			continue
		}
		if sr.State == types.SpecStateSkipped || sr.State == types.SpecStatePending {
			continue
		}
		id := caseIDFromEntries(sr.ReportEntries)
		c := s.cases[id]
		if c == nil {
			continue
		}
		s.mu.Lock()
		res := s.results[id]
		s.mu.Unlock()
		cr := CaseReport{ID: c.ID, Section: c.Section, Title: c.Title, Requirements: c.requirementRefs(),
			DurationMS: ms(sr.RunTime)}
		if res != nil {
			cr.DurationMS = ms(res.duration())
		}
		var events []Event
		if res != nil {
			cr.Outcome, cr.Findings, cr.Notes = res.snapshot()
			events = res.log.snapshot()
			cr.Sent = res.log.sends()
		} else {
			cr.Outcome = Error
			cr.Findings = []Finding{{Outcome: Error, Message: "the case did not start"}}
		}
		switch sr.State {
		case types.SpecStateTimedout, types.SpecStateInterrupted, types.SpecStateAborted:
			if cr.Outcome.rank() < Fail.rank() {
				f := Finding{Outcome: Fail, Requirement: c.Reqs[0], Message: fmt.Sprintf("the case did not finish within %v: %s", s.cfg.CaseTimeout, sr.State)}
				if sr.State == types.SpecStateInterrupted || sr.State == types.SpecStateAborted {
					f = Finding{Outcome: Error, Message: "the case was interrupted: " + sr.Failure.Message}
				} else {
					r, _ := spec.Lookup(c.Reqs[0])
					f.Level, f.Text = string(r.Level), r.Text
				}
				cr.Findings = append(cr.Findings, f)
				cr.Outcome = f.Outcome
			}
		case types.SpecStatePanicked:
			if cr.Outcome.rank() < Error.rank() {
				cr.Findings = append(cr.Findings, Finding{Outcome: Error, Message: "the case panicked: " + sr.Failure.Message})
				cr.Outcome = Error
			}
		}
		seen := map[string]bool{}
		for _, f := range cr.Findings {
			if f.Requirement != "" && (f.Outcome == Fail || f.Outcome == NonStrict) && !seen[f.Requirement] {
				seen[f.Requirement] = true
				cr.Broken = append(cr.Broken, f.Requirement)
			}
		}
		cr.Exchange = trimEvents(events, 40, 30)
		rep.Cases = append(rep.Cases, cr)
	}
	// Ginkgo orders specs its own way, and late cases run last; reports
	// follow STEP.md.
	sort.SliceStable(rep.Cases, func(i, j int) bool { return s.order[rep.Cases[i].ID] < s.order[rep.Cases[j].ID] })
	rep.tally()
	return rep
}

func caseIDFromEntries(es types.ReportEntries) string {
	for _, e := range es {
		if e.Name == entryName {
			if id, ok := e.Value.GetRawValue().(string); ok {
				return id
			}
			return strings.Trim(e.Value.AsJSON, `"`)
		}
	}
	return ""
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// preflight checks once per run that the target accepts a connection and
// answers a LOGIN, so that a server that is down or mute yields one clear
// ERROR per case at once rather than a read timeout in every case. It also
// finds out whether the server serves two connections at once: cases run
// side by side only when it does.
type preflight struct {
	once sync.Once
	err  error
	desc string
	// The preflight's login, the first of the run: TOKEN-11 reuses its
	// token at the end of the run.
	first issued
	// oneConn, when set, says how the server showed that it serves one
	// connection at a time.
	oneConn string
	// latency is how long the LOGIN took, connection included.
	latency time.Duration
}

// issued is a token and the user and time it was issued to and at.
type issued struct {
	creds Creds
	token string
	at    time.Time
}

func (p *preflight) check(ctx context.Context, cfg Config) error {
	p.once.Do(func() { p.run(ctx, cfg) })
	return p.err
}

func (p *preflight) summary() string { return p.desc }

// preflightWait is how long the preflight waits for its LOGIN: a server
// that is only slow, on a busy machine, must not be taken for a mute one.
func preflightWait(cfg Config) time.Duration { return 4 * cfg.ReadTimeout }

func (p *preflight) run(ctx context.Context, cfg Config) {
	log := &wireLog{start: time.Now()}
	c, err := dialConn(ctx, cfg.Target, 1, cfg.ReadTimeout, log)
	if err != nil {
		p.err, p.desc = fmt.Errorf("not run: the server cannot be reached (%v)", err), "cannot connect: "+err.Error()
		return
	}
	defer c.Close()
	u := randomUser()
	if !cfg.courseLogin() {
		u = Creds{User: cfg.User, Password: cfg.Password}
	}
	req := loginReq(spec.FieldUsername, u.User, spec.FieldPassword, u.Password)
	if err := c.WriteMessage(req); err != nil {
		p.err, p.desc = fmt.Errorf("not run: writing to the server failed (%v)", err), "write failed: "+err.Error()
		return
	}
	resp, err := c.readWithin(preflightWait(cfg))
	if err != nil {
		var detail []string
		for _, e := range log.snapshot() {
			if e.Dir == "note" {
				detail = append(detail, e.Note)
			}
		}
		p.err = fmt.Errorf("not run: the server accepted a connection but gave no STEP answer to a LOGIN request within %v (%v)", preflightWait(cfg), err)
		p.desc = strings.Join(detail, "; ")
		return
	}
	took := time.Since(log.start)
	p.latency = took
	st, _ := resp.Status()
	if !cfg.courseLogin() && st != spec.StatusOK {
		msg := fmt.Sprintf("not run: the server refused the given credentials for %q (status %d %q)", cfg.User, st, resp.StatusMsg())
		p.err, p.desc = fmt.Errorf("%s", msg), msg
		return
	}
	p.first = issued{creds: u, at: time.Now()}
	p.first.token, _ = resp.Token()
	p.desc = fmt.Sprintf("LOGIN answered with status %d in %.1f ms", st, float64(took.Microseconds())/1000)
	p.oneConn = secondConnection(ctx, cfg, c, log)
	if p.oneConn != "" {
		p.desc += "; " + p.oneConn
	} else {
		p.desc += "; a second connection is served while the first is open"
	}
}

// secondConnection opens a second connection while first is still open
// and sends a LOGIN on it. It returns "" when that LOGIN is answered, or
// what shows that the server serves one connection at a time. A slow
// answer is told from none as the silence judge does: by asking the
// first connection meanwhile.
func secondConnection(ctx context.Context, cfg Config, first *Conn, log *wireLog) string {
	c2, err := dialConn(ctx, cfg.Target, 2, cfg.ReadTimeout, log)
	if err != nil {
		return fmt.Sprintf("a second connection, while the first was open, could not be made (%v)", err)
	}
	defer c2.Close()
	u := randomUser()
	login := loginReq(spec.FieldUsername, u.User, spec.FieldPassword, u.Password)
	if err := c2.WriteMessage(login); err != nil {
		return fmt.Sprintf("a LOGIN could not be sent on a second connection while the first was open (%v)", err)
	}
	_, err = c2.readWithin(cfg.ReadTimeout)
	if err == nil {
		return ""
	}
	if errors.Is(err, ErrSilent) {
		// Slow, or busy with the first connection? Ask the first one.
		start := time.Now()
		if _, ferr := first.exchange(login, preflightWait(cfg)); ferr == nil {
			j := silenceJudge{readTimeout: cfg.ReadTimeout}
			if _, err = c2.readWithin(max(2*time.Since(start), j.minGrace())); err == nil {
				return ""
			}
		}
	}
	_ = first.Close()
	if _, err2 := c2.readWithin(cfg.ReadTimeout); err2 == nil {
		return "a LOGIN on a second connection was answered only once the first connection closed"
	}
	return fmt.Sprintf("a LOGIN on a second connection, while the first was open, got no answer (%v)", err)
}

// sortedSections returns the section prefixes of cases in first-seen order.
func sortedSections(cs []CaseReport) []string {
	order := map[string]int{}
	for i, c := range Cases() {
		if _, ok := order[c.Section]; !ok {
			order[c.Section] = i
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, c := range cs {
		if !seen[c.Section] {
			seen[c.Section] = true
			out = append(out, c.Section)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return order[out[i]] < order[out[j]] })
	return out
}

// trimEvents keeps the first head and the last tail events of a long
// exchange: how it began, and what led to the verdict.
func trimEvents(events []Event, head, tail int) []Event {
	if len(events) <= head+tail+1 {
		return events
	}
	out := append([]Event(nil), events[:head]...)
	out = append(out, Event{Dir: "note", At: events[head].At, Note: fmt.Sprintf("(%d events not shown)", len(events)-head-tail)})
	return append(out, events[len(events)-tail:]...)
}
