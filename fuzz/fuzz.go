package fuzz

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// Defaults of Options.
const (
	DefaultDuration    = 60 * time.Second
	DefaultConnections = 3
	DefaultMemoryBound = 256 << 20
	DefaultShrinkTime  = 30 * time.Second
	// maxInputs bounds a run however fast the server answers.
	maxInputs = 1_000_000
	// maxShrinkChecks bounds the runs that shrink one finding.
	maxShrinkChecks = 400
	// corpusMax bounds the inputs kept for mutation.
	corpusMax = 512
	// confirmRuns is how many times a reproducer is replayed to confirm it.
	confirmRuns = 3
)

// Options configure a run.
type Options struct {
	Target   Target
	Duration time.Duration // how long to explore; DefaultDuration when 0
	Seed     uint64        // 0: a random seed, reported
	// Connections is the most connections one input opens.
	Connections int
	ReadTimeout time.Duration
	// MemoryBound is how far the resident memory of a started server may
	// grow past what it used after its first input.
	MemoryBound int64
	// ShrinkTime bounds the shrinking of each finding.
	ShrinkTime time.Duration
	// MaxInputs, if positive, ends exploring after that many inputs.
	MaxInputs int
	// OnInput, if set, sees each input before it is sent.
	OnInput func(*Input)
	// StopAtFirst ends exploring at the first finding.
	StopAtFirst bool
	// Progress, if set, is called about four times a second.
	Progress func(Progress)
}

// Progress is what a progress line shows.
type Progress struct {
	Inputs, Findings, Corpus, Behaviours int
	Left                                 time.Duration
	Phase                                string // "exploring", "shrinking F2"
}

// Result is a run's outcome.
type Result struct {
	Target      string        `json:"target"`
	Managed     bool          `json:"managed"`
	Seed        uint64        `json:"seed"`
	Started     time.Time     `json:"started"`
	Explored    time.Duration `json:"-"`
	Duration    time.Duration `json:"-"`
	Inputs      int           `json:"inputs"`
	Corpus      int           `json:"corpus"`
	Behaviours  int           `json:"behaviours"`
	Restarts    int           `json:"restarts"`
	BlockSize   int64         `json:"block_size"`
	ReadTimeout time.Duration `json:"-"`
	Stopped     string        `json:"stopped,omitempty"` // why exploring ended before its time
	Findings    []*Finding    `json:"findings"`
}

// Finding is one distinct failure, with the shortest input that shows it.
type Finding struct {
	ID string `json:"id"`
	Violation
	Level        string        `json:"level"`
	Text         string        `json:"text"` // the requirement's sentence
	FoundAfter   time.Duration `json:"-"`
	FoundAtInput int           `json:"found_at_input"`
	Input        *Input        `json:"-"` // as found
	Repro        *Input        `json:"-"` // as shrunk
	Minimised    bool          `json:"minimised"`
	ShrinkNote   string        `json:"shrink_note,omitempty"`
	ShrinkChecks int           `json:"shrink_checks"`
	Reproduced   int           `json:"reproduced"` // of Confirmations replays
	Confirmed    int           `json:"confirmations"`
	Answers      []Answer      `json:"answers"` // the server's answers to the reproducer
	Output       string        `json:"server_output,omitempty"`
	Files        Files         `json:"files"`
}

// Files are where a finding's reproducers were written, relative to the
// report's folder.
type Files struct {
	JSON   string `json:"json,omitempty"`
	Python string `json:"python,omitempty"`
}

// Answer is one step of a reproducer's run, as the reports show it.
type Answer struct {
	Step    int    `json:"step"`
	Sent    string `json:"sent"`
	Outcome string `json:"outcome"`
	Answer  string `json:"answer,omitempty"`
	Binary  int    `json:"binary,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// fuzzer is one run's state.
type fuzzer struct {
	o       Options
	exec    *Exec
	gen     *gen
	res     *Result
	seen    map[string]bool
	corpus  []*Input
	byKey   map[string]*Finding
	nonce   string
	nameSeq int
	baseRSS int64
}

// Run explores the target for o.Duration, then shrinks and confirms each
// finding. Every loop is bounded in count and time; the context stops
// everything.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Target == nil {
		return nil, errors.New("no target")
	}
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	if o.Connections <= 0 {
		o.Connections = DefaultConnections
	}
	if o.MemoryBound <= 0 {
		o.MemoryBound = DefaultMemoryBound
	}
	if o.ShrinkTime <= 0 {
		o.ShrinkTime = DefaultShrinkTime
	}
	if o.Seed == 0 {
		var b [8]byte
		_, _ = crand.Read(b[:])
		o.Seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	f := &fuzzer{o: o, exec: &Exec{Target: o.Target, ReadTimeout: o.ReadTimeout}, seen: map[string]bool{}, byKey: map[string]*Finding{}}
	var nb [4]byte
	_, _ = crand.Read(nb[:])
	f.nonce = fmt.Sprintf("%x", nb)
	f.res = &Result{Target: o.Target.Addr(), Managed: o.Target.Managed(), Seed: o.Seed, Started: time.Now(), ReadTimeout: f.exec.rt()}
	bs, err := f.calibrate(ctx)
	if err != nil {
		return nil, err
	}
	f.res.BlockSize = bs
	f.gen = newGen(o.Seed, bs)
	f.gen.conns = o.Connections
	f.explore(ctx)
	f.res.Explored = time.Since(f.res.Started)
	f.res.Corpus, f.res.Behaviours = len(f.corpus), len(f.seen)
	for i, fd := range f.res.Findings {
		if ctx.Err() != nil {
			break
		}
		f.shrink(ctx, fd, i)
	}
	f.res.Duration = time.Since(f.res.Started)
	return f.res, ctx.Err()
}

// names returns fresh users for one run of an input: the run's nonce
// keeps them apart from earlier runs against the same server.
func (f *fuzzer) names() *names {
	f.nameSeq++
	return newNames(fmt.Sprintf("fz%s%d", f.nonce, f.nameSeq))
}

// calibrate logs in and plans one byte, to learn the block size.
func (f *fuzzer) calibrate(ctx context.Context) (int64, error) {
	in := &Input{Steps: []Step{
		{JSON: req(spec.OpLogin, spec.TypeAuth, spec.FieldUsername, user(1), spec.FieldPassword, pass(1))},
		{JSON: req(spec.OpSave, spec.TypeFile, spec.FieldToken, tok(1), spec.FieldKey, "calibrate", spec.FieldSize, 1)},
	}}
	tr := f.exec.Run(ctx, in, f.names())
	if len(tr.Exchanges) == 0 || tr.Exchanges[0].Resp == nil {
		why := "nothing"
		if len(tr.Exchanges) > 0 {
			why = tr.Exchanges[0].Outcome + " " + tr.Exchanges[0].Detail
		}
		return 0, fmt.Errorf("%s does not answer a LOGIN (%s)", f.o.Target.Addr(), why)
	}
	if len(tr.Exchanges) > 1 && tr.Exchanges[1].Resp != nil {
		if bs, err := tr.Exchanges[1].Resp.BlockSize(); err == nil && bs > 0 && bs <= spec.MaxBlockSize {
			return bs, nil
		}
	}
	return spec.DefaultBlockSize, nil
}

func (f *fuzzer) progress(phase string, left time.Duration) {
	if f.o.Progress != nil {
		f.o.Progress(Progress{Inputs: f.res.Inputs, Findings: len(f.res.Findings), Corpus: len(f.corpus), Behaviours: len(f.seen), Left: left, Phase: phase})
	}
}

func (f *fuzzer) explore(ctx context.Context) {
	deadline := time.Now().Add(f.o.Duration)
	var lastProgress time.Time
	for f.res.Inputs < maxInputs && ctx.Err() == nil {
		now := time.Now()
		if !now.Before(deadline) {
			break
		}
		if now.Sub(lastProgress) > 250*time.Millisecond {
			f.progress("exploring", deadline.Sub(now))
			lastProgress = now
		}
		var in *Input
		if len(f.corpus) == 0 || f.gen.chance(0.25) {
			in = f.gen.fresh()
			if f.gen.chance(0.5) {
				in = f.gen.mutate(in, f.corpus)
			}
		} else {
			in = f.gen.mutate(f.corpus[f.gen.pick(len(f.corpus))], f.corpus)
		}
		if f.o.MaxInputs > 0 && f.res.Inputs >= f.o.MaxInputs {
			break
		}
		if f.o.OnInput != nil {
			f.o.OnInput(in)
		}
		f.res.Inputs++
		vs, tr, stop := f.try(ctx, in, true)
		if ctx.Err() != nil {
			return
		}
		newBehaviour := false
		for _, ex := range tr.Exchanges {
			if s := signature(ex); !f.seen[s] {
				f.seen[s] = true
				newBehaviour = true
			}
		}
		for _, v := range vs {
			if s := "finding:" + v.Key(); !f.seen[s] {
				f.seen[s] = true
				newBehaviour = true
			}
			if f.byKey[v.Key()] == nil {
				f.record(v, in)
			}
		}
		if newBehaviour {
			if len(f.corpus) < corpusMax {
				f.corpus = append(f.corpus, in)
			} else {
				f.corpus[f.gen.pick(corpusMax)] = in
			}
		}
		if stop != "" {
			f.res.Stopped = stop
			return
		}
		if f.o.StopAtFirst && len(f.res.Findings) > 0 {
			f.res.Stopped = "stopped at the first finding"
			return
		}
	}
	f.progress("exploring", 0)
}

func (f *fuzzer) record(v Violation, in *Input) {
	fd := &Finding{ID: fmt.Sprintf("F%d", len(f.res.Findings)+1), Violation: v, FoundAfter: time.Since(f.res.Started), FoundAtInput: f.res.Inputs, Input: in.Clone(), Repro: in.Clone()}
	if r, ok := spec.Lookup(v.Requirement); ok {
		fd.Level, fd.Text = string(r.Level), r.Text
	}
	if f.o.Target.Managed() && (v.Oracle == OracleDied || v.Oracle == OracleUnresponsive) {
		fd.Output = lastLines(f.o.Target.Output(), 20)
	}
	f.byKey[v.Key()] = fd
	f.res.Findings = append(f.res.Findings, fd)
}

// try runs one input and judges it, then checks that the server lives
// and restarts it if it does not (when stepkit started it). stop is set
// when the server cannot be used any more.
func (f *fuzzer) try(ctx context.Context, in *Input, explore bool) ([]Violation, *Trace, string) {
	tr := f.exec.Run(ctx, in, f.names())
	vs := Judge(tr)
	if ctx.Err() != nil {
		return vs, tr, ""
	}
	alive, v := f.alive(ctx, tr)
	if v != nil {
		// A request unanswered because the server died is the death's
		// symptom, not a finding of its own.
		kept := []Violation{*v}
		for _, x := range vs {
			if x.Oracle != OracleHangup && x.Oracle != OracleSilence {
				kept = append(kept, x)
			}
		}
		vs = kept
	}
	if !alive {
		if !f.o.Target.Managed() {
			// Give a server that was only slow a moment, then give up.
			for i := 0; i < 3 && ctx.Err() == nil; i++ {
				time.Sleep(time.Second)
				if _, err := f.exec.probe(ctx); err == nil {
					return vs, tr, ""
				}
			}
			return vs, tr, "the server stopped answering, and stepkit did not start it, so it cannot restart it"
		}
		if err := f.o.Target.Restart(ctx); err != nil {
			return vs, tr, "the server could not be restarted: " + err.Error()
		}
		f.res.Restarts++
		f.baseRSS = 0
		return vs, tr, ""
	}
	if f.o.Target.Managed() {
		rss := f.o.Target.RSS()
		if f.baseRSS == 0 {
			f.baseRSS = rss
		} else if rss > 0 && rss-f.baseRSS > f.o.MemoryBound {
			req := "ROBUST-1"
			for _, s := range in.Steps {
				if s.JSONLie > spec.DefaultMaxJSON || s.BinLie > spec.DefaultMaxBinary {
					req = "FRAME-10"
				}
			}
			vs = append(vs, Violation{Oracle: OracleMemory, Requirement: req, Operation: "-", Step: -1,
				Message:  fmt.Sprintf("the server's resident memory grew from %d MiB to %d MiB", f.baseRSS>>20, rss>>20),
				Expected: fmt.Sprintf("growth below %d MiB", f.o.MemoryBound>>20), Check: Check{Kind: "memory", Step: -1}})
			if explore {
				// Start afresh so that the next inputs are measured alone.
				if err := f.o.Target.Restart(ctx); err == nil {
					f.res.Restarts++
					f.baseRSS = 0
				}
			}
		}
	}
	return vs, tr, ""
}

// alive checks after an input that the server still accepts and answers
// a LOGIN on a new connection, and that a started process still runs.
func (f *fuzzer) alive(ctx context.Context, tr *Trace) (bool, *Violation) {
	op, step := "-", -1
	for _, ex := range tr.Exchanges {
		if ex.Outcome != Answered && ex.Outcome != NotJudged && ex.Outcome != NoAnswer {
			op, step = opName(ex.Req), ex.Step
			break
		}
	}
	_, perr := f.exec.probe(ctx)
	exited, how := f.o.Target.Exited()
	if perr != nil && !exited && f.o.Target.Managed() {
		// A process that is dying may still be closing its sockets.
		for i := 0; i < 10 && !exited; i++ {
			time.Sleep(100 * time.Millisecond)
			exited, how = f.o.Target.Exited()
		}
	}
	if exited {
		return false, &Violation{Oracle: OracleDied, Requirement: "ROBUST-1", Operation: op, Step: step,
			Message: "the server process ended: " + how, Expected: "a server that keeps serving",
			Check: Check{Kind: "dead", Step: step}}
	}
	if perr != nil {
		return false, &Violation{Oracle: OracleUnresponsive, Requirement: "ROBUST-1", Operation: op, Step: step,
			Message: "after this input a LOGIN on a new connection got no answer: " + perr.Error(), Expected: "a server that keeps serving new connections",
			Check: Check{Kind: "dead", Step: step}}
	}
	return true, nil
}
