package conformance

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// DefaultParallel is how many cases a run keeps going at once. Cases are
// independent (fresh users, keys and connections), and most of a run
// against a course server is spent waiting on requests it leaves
// unanswered, so the waits overlap.
const DefaultParallel = 16

// gracePeriod is how long a case that ran out of time is given to unwind
// (its connections are closed) before the run moves on without it.
const gracePeriod = 2 * time.Second

// Execution says how a run was carried out, so that a report can be read
// (and a grade defended) without knowing the command line.
type Execution struct {
	// Mode is "parallel" or "serial".
	Mode string `json:"mode"`
	// Workers is how many cases ran at once (1 when serial).
	Workers int `json:"workers"`
	// Reason says why the run is serial; empty when it is parallel.
	Reason string `json:"reason,omitempty"`
	// Alone lists the cases that ran with no other case of the run at the
	// same time: their verdict rests on how the server's reads fall in
	// time.
	Alone []string `json:"alone,omitempty"`
	// Down is how many cases at a time the run dropped to, when the
	// server answered nothing at all for a while side by side (0: it did
	// not drop).
	Down int `json:"down_to,omitempty"`
	// Again lists the cases that did not pass side by side and ran again
	// alone, after the others: the result alone stands.
	Again []string `json:"again,omitempty"`
	// Silence says how a read that gets nothing in time is judged.
	Silence string `json:"silence"`
}

// plan decides how the run goes, once the preflight has looked at the
// server.
func (s *Suite) plan() Execution {
	workers := s.parallel
	if workers <= 0 {
		workers = DefaultParallel
	}
	var reason string
	switch {
	case workers == 1:
		reason = "one case at a time was asked for (--serial)"
	case s.pre.oneConn != "":
		reason = "the server serves one connection at a time: " + s.pre.oneConn
	case !s.cfg.courseLogin():
		// Every case logs in as the one account given: its quota, its
		// files and its tokens are shared, and a server may keep one
		// token per user.
		reason = "the run uses the account given with --user, which every case shares"
	case s.cfg.MaxConns > 0:
		reason = fmt.Sprintf("the server's connection limit (--max-conns %d) must not be reached by cases running side by side", s.cfg.MaxConns)
	}
	e := Execution{Mode: "parallel", Workers: workers, Reason: reason}
	if reason != "" {
		e.Mode, e.Workers = "serial", 1
	}
	e.Silence = s.judge().policy()
	return e
}

// judge is the run's silence judge.
func (s *Suite) judge() *silenceJudge {
	return &silenceJudge{target: s.cfg.Target, readTimeout: s.cfg.ReadTimeout, probe: s.pre.oneConn == "", latency: s.pre.latency}
}

// start launches the run's cases, once, from the first spec that runs:
// Ginkgo defines the specs (and so the cases) only when it builds its
// tree, inside RunSpecs. The specs then only report what the cases found.
func (s *Suite) start() {
	s.startOnce.Do(func() {
		s.mu.Lock()
		s.started = true
		s.mu.Unlock()
		go s.execute()
	})
}

// execute runs every defined case: the preflight first, then the cases
// that must run alone, one by one, then the others, Workers at a time,
// then the late cases. Each case's result is final when finish closes
// its ready channel.
func (s *Suite) execute() {
	defer close(s.finished)
	preErr := s.pre.check(s.runCtx, s.cfg)
	s.exec = s.plan()
	judge := s.judge()
	var alone, pool, late []*Case
	for _, c := range s.defined {
		switch {
		case c.late:
			late = append(late, c)
		case c.alone && s.exec.Workers > 1:
			alone = append(alone, c)
			s.exec.Alone = append(s.exec.Alone, c.ID)
		default:
			pool = append(pool, c)
		}
	}
	// Cases that wait on purpose start first, so that their waits overlap
	// the other cases.
	slices.SortStableFunc(pool, func(a, b *Case) int {
		wa, wb := a.waitFor(s.cfg), b.waitFor(s.cfg)
		switch {
		case wa > wb:
			return -1
		case wa < wb:
			return 1
		}
		return 0
	})
	for _, c := range alone {
		s.runCase(c, preErr, judge)
		s.finish(c)
	}
	// A case that did not pass side by side may have met the other cases
	// rather than the server's protocol: a server with fewer workers than
	// the run has cases going leaves connects queued or refused, answers
	// late, or answers nothing for a while; one that starts a process per
	// connection answers a LOGIN on a new connection while the case's own
	// request still waits. Its verdict must be the one a run one case at
	// a time gives, so it runs again, alone, once the others are done,
	// and that result stands. Only a firm silence is not run again: a
	// request left unanswered on a connection that had answered before,
	// while a LOGIN on a new connection was answered promptly; load makes
	// a server slow to answer everything, not silent on one request.
	// A case during which the server answered nothing at all, not even a
	// LOGIN on a new connection, says the server is swamped: the run
	// halves how many cases it keeps going, down to one, so that it does
	// not bury the server under connections every case would then wait on.
	var mu sync.Mutex
	var again []*Case
	work := make(chan *Case)
	var wg sync.WaitGroup
	workers := min(s.exec.Workers, max(len(pool), 1))
	active := workers
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				stop := i >= active
				mu.Unlock()
				if stop {
					return
				}
				c, ok := <-work
				if !ok {
					return
				}
				s.runCase(c, preErr, judge)
				res := s.results[c.ID]
				if o, _, _ := res.snapshot(); s.exec.Workers > 1 && o != Pass && !res.wasFirm() && s.runCtx.Err() == nil && preErr == nil {
					mu.Lock()
					again = append(again, c)
					if res.wasUnconfirmed() && active > 1 {
						active /= 2
						s.exec.Down = active
					}
					mu.Unlock()
					continue
				}
				s.finish(c)
			}
		}()
	}
	for _, c := range pool {
		work <- c
	}
	close(work)
	wg.Wait()
	slices.SortFunc(again, func(a, b *Case) int { return s.order[a.ID] - s.order[b.ID] })
	if len(again) > 0 {
		// Connections the cases side by side left queued may still be
		// working through the server (a process started for each): a
		// LOGIN answered on a new connection says it is free again.
		s.settle(judge)
	}
	hung := false
	for _, c := range again {
		res := s.results[c.ID]
		if hung {
			res.note("not run again alone: the server answered nothing at all, even to a LOGIN on a new connection within a case timeout, after the case before it ran again alone")
		} else {
			why := againNote(res)
			res.reset()
			res.note(why)
			s.exec.Again = append(s.exec.Again, c.ID)
			s.runCase(c, preErr, judge)
			// Alone and still no answer: the case itself may hold every
			// worker the server has (CONN-4's eight clients), or the
			// server answers nothing any more. Only the latter ends the
			// reruns.
			hung = res.wasUnconfirmed() && !s.settle(judge)
		}
		s.finish(c)
	}
	for _, c := range late {
		s.runCase(c, preErr, judge)
		s.finish(c)
	}
}

// settle waits, up to a case timeout, for the server to answer a LOGIN on
// a new connection, and reports whether it did.
func (s *Suite) settle(judge *silenceJudge) bool {
	deadline := time.Now().Add(s.cfg.CaseTimeout)
	for {
		if probeLogin(s.runCtx, s.cfg.Target, judge.confirmWait()) == nil {
			return true
		}
		if s.runCtx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		select {
		case <-s.runCtx.Done():
			return false
		case <-time.After(judge.minGrace()):
		}
	}
}

// againNote says why a case runs again alone, from its result side by
// side.
func againNote(res *result) string {
	if res.wasUnconfirmed() {
		return "run again alone, after the others: side by side with other cases, the server answered nothing at all for a while, not even a LOGIN on a new connection"
	}
	o, findings, _ := res.snapshot()
	why := string(o)
	for _, f := range findings {
		if f.Outcome == o {
			why = fmt.Sprintf("%s (%s)", o, f.Message)
			if f.Requirement != "" {
				why = fmt.Sprintf("%s %s (%s)", o, f.Requirement, f.Message)
			}
			break
		}
	}
	return "run again alone, after the others: side by side with other cases it ended " + why + "; a verdict must not depend on the cases beside it, so the result alone stands"
}

// waitFor is how long the case waits on purpose under cfg.
func (c *Case) waitFor(cfg Config) time.Duration {
	if c.waits == nil {
		return 0
	}
	return c.waits(cfg)
}

// runCase runs one case to its result, bounded by the case timeout.
func (s *Suite) runCase(c *Case, preErr error, judge *silenceJudge) {
	res := s.results[c.ID]
	start := time.Now()
	switch {
	case s.runCtx.Err() != nil:
		res.add(Finding{Outcome: Error, Message: "not run: the run was interrupted"})
	case preErr != nil:
		res.add(Finding{Outcome: Error, Message: preErr.Error()})
	default:
		timeout := s.cfg.CaseTimeout + c.waitFor(s.cfg)
		ctx, cancel := context.WithTimeout(s.runCtx, timeout)
		t := newT(ctx, s.cfg, c, res)
		t.pre = &s.pre
		t.judge = judge
		done := make(chan struct{})
		go func() {
			defer close(done)
			t.run(c.body)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			select {
			case <-done:
			case <-time.After(gracePeriod):
			}
		}
		if ctx.Err() == context.DeadlineExceeded && s.runCtx.Err() == nil {
			if o, _, _ := res.snapshot(); o.rank() < Fail.rank() {
				r, _ := spec.Lookup(c.Reqs[0])
				res.add(Finding{Outcome: Fail, Requirement: r.ID, Level: string(r.Level), Text: r.Text,
					Message: fmt.Sprintf("the case did not finish within %v", timeout)})
			}
		}
		cancel()
	}
	res.setDuration(time.Since(start))
}

// finish makes the case's result final: its spec may report it.
func (s *Suite) finish(c *Case) {
	res := s.results[c.ID]
	s.mu.Lock()
	s.done++
	o, _, _ := res.snapshot()
	if s.progress != nil {
		s.progress(c, o, s.done, len(s.defined))
	}
	s.mu.Unlock()
	close(res.ready)
}

// silenceJudge decides when a read that got nothing in time is silence.
// A timeout alone cannot tell a server that will never answer from one
// that is slow because the machine is busy (several servers graded at
// once): before a timeout counts, the judge asks the server for a LOGIN
// on a new connection. A server that answers it while the request is
// still unanswered is silent on that request; a slow server answers the
// request first (it came first) or soon after, and the answer counts.
// A server that serves one connection at a time cannot be asked anything
// while a case holds its connection; it is given more time in proportion
// to how slowly it has answered so far.
type silenceJudge struct {
	target      string
	readTimeout time.Duration
	probe       bool
	latency     time.Duration // the preflight LOGIN's round trip
}

// paceFactor is how many times the slowest answer seen so far a server
// serving one connection at a time is given past the read timeout.
const paceFactor = 10

// extension is the extra wait for a server that cannot be asked anything
// else meanwhile: paceFactor times the slowest answer seen on the
// connection or at preflight, between a tenth of the read timeout and a
// whole one.
func (j *silenceJudge) extension(slowest time.Duration) time.Duration {
	return min(max(paceFactor*max(slowest, j.latency), j.minGrace()), j.readTimeout)
}

// confirmWait bounds the LOGIN that confirms a silence.
func (j *silenceJudge) confirmWait() time.Duration { return 4 * j.readTimeout }

// minGrace is the least extra wait after the confirming LOGIN.
func (j *silenceJudge) minGrace() time.Duration { return max(j.readTimeout/10, 50*time.Millisecond) }

func (j *silenceJudge) policy() string {
	if !j.probe {
		return fmt.Sprintf("a read with no answer within the read timeout (%v) is given more time on the same connection before it counts as silence: %d times the slowest answer seen on that connection or at preflight, at least %v and at most another read timeout (the server serves one connection at a time, so nothing else can be asked of it meanwhile)", j.readTimeout, paceFactor, j.minGrace())
	}
	return fmt.Sprintf("a read with no answer within the read timeout (%v) is confirmed before it counts as silence: a LOGIN is sent on a new connection (answered within %v or not at all), then the request is given twice the LOGIN's latency more (at least %v); an answer that comes meanwhile counts, with a note. A slow server answers the request before the later LOGIN; a silent one answers only the LOGIN",
		j.readTimeout, j.confirmWait(), j.minGrace())
}

// confirm is called when a read reached its timeout with nothing; it
// returns how much longer the read may wait, what it found, whether the
// server answered anything meanwhile, and whether it answered the LOGIN
// promptly (within a quarter of the read timeout).
func (j *silenceJudge) confirm(ctx context.Context, slowest time.Duration) (time.Duration, string, bool, bool) {
	if !j.probe {
		ext := j.extension(slowest)
		return ext, fmt.Sprintf("waited %v more, %d times the slowest answer so far (the server serves one connection at a time)", ext, paceFactor), true, false
	}
	start := time.Now()
	err := probeLogin(ctx, j.target, j.confirmWait())
	took := time.Since(start)
	if err != nil {
		return j.minGrace(), fmt.Sprintf("a LOGIN on a new connection got no answer either within %v (%v): the server answered nothing meanwhile", took.Round(time.Millisecond), err), false, false
	}
	return max(2*took, j.minGrace()), fmt.Sprintf("silence confirmed: a LOGIN on a new connection was answered in %v meanwhile", took.Round(100*time.Microsecond)), true, took < j.readTimeout/4
}

// probeLogin sends a LOGIN for a made-up user on a new connection and
// waits up to d for any STEP answer (a refusal is an answer too).
func probeLogin(ctx context.Context, target string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	c, err := dialConn(ctx, target, 0, d, &wireLog{start: time.Now()})
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	u := randomUser()
	_, err = c.exchange(loginReq(spec.FieldUsername, u.User, spec.FieldPassword, u.Password), d)
	return err
}

// exchange writes m and reads one frame within d, without confirmation.
func (c *Conn) exchange(m *spec.Message, d time.Duration) (*spec.Message, error) {
	if err := c.WriteMessage(m); err != nil {
		return nil, err
	}
	return c.readWithin(d)
}
