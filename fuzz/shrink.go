package fuzz

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// shrinker shrinks one finding's input by delta debugging: whole
// connections first, then steps, then fields and frame decorations. Each
// candidate is run on a fresh process when stepkit started the server.
type shrinker struct {
	f        *fuzzer
	fd       *Finding
	deadline time.Time
	checks   int
	last     Violation
	lastTr   *Trace
}

func (f *fuzzer) shrink(ctx context.Context, fd *Finding, i int) {
	s := &shrinker{f: f, fd: fd, deadline: time.Now().Add(f.o.ShrinkTime), last: fd.Violation}
	f.progress("shrinking "+fd.ID, 0)
	in := fd.Input.Clone()
	shown := s.test(ctx, in)
	// The bound counts from here: the first run only says whether the
	// input shows the failure at all, and a slow server's first run
	// would otherwise take the whole budget.
	s.deadline = time.Now().Add(f.o.ShrinkTime)
	if !shown {
		// Not shown again: keep the input as found, and say so.
		fd.ShrinkNote = "the failure did not show again when the input was replayed; the input is given as found"
		fd.Repro = in
		s.confirm(ctx, in)
		fd.ShrinkChecks = s.checks
		return
	}
	if !f.o.Target.Managed() && (fd.Oracle == OracleDied || fd.Oracle == OracleUnresponsive || fd.Oracle == OracleMemory) {
		fd.ShrinkNote = "not shrunk: the server stopped, and stepkit cannot restart a server it did not start"
	} else {
		in = s.conns(ctx, in)
		in = s.steps(ctx, in)
		in = s.blocks(ctx, in)
		in = s.steps(ctx, in)
		in = s.fields(ctx, in)
		fd.Minimised = true
		if s.out() {
			fd.ShrinkNote = fmt.Sprintf("shrinking stopped at its bound (%d runs or %v)", maxShrinkChecks, f.o.ShrinkTime)
		}
	}
	fd.Repro = in
	fd.ShrinkChecks = s.checks
	s.confirm(ctx, in)
}

func (s *shrinker) out() bool { return s.checks >= maxShrinkChecks || time.Now().After(s.deadline) }

// fresh restarts a started server, so that a check sees only its input.
func (s *shrinker) fresh(ctx context.Context) {
	if s.f.o.Target.Managed() {
		if err := s.f.o.Target.Restart(ctx); err == nil {
			s.f.res.Restarts++
			s.f.baseRSS = 0
		}
	}
}

// test runs in and reports whether the finding shows again.
func (s *shrinker) test(ctx context.Context, in *Input) bool {
	if ctx.Err() != nil || len(in.Steps) == 0 {
		return false
	}
	s.checks++
	s.fresh(ctx)
	if s.fd.Oracle == OracleMemory {
		s.f.baseRSS = s.f.o.Target.RSS()
	}
	vs, tr, _ := s.f.try(ctx, in, false)
	for _, v := range vs {
		if v.Key() == s.fd.Key() {
			s.last, s.lastTr = v, tr
			return true
		}
	}
	return false
}

// conns tries the input without each connection.
func (s *shrinker) conns(ctx context.Context, in *Input) *Input {
	ids := map[int]bool{}
	for _, st := range in.Steps {
		ids[st.Conn] = true
	}
	var order []int
	for id := range ids {
		order = append(order, id)
	}
	sort.Ints(order)
	for _, id := range order {
		if s.out() || len(ids) < 2 {
			break
		}
		c := &Input{}
		for _, st := range in.Steps {
			if st.Conn != id {
				c.Steps = append(c.Steps, st)
			}
		}
		if s.test(ctx, c) {
			in = c
			delete(ids, id)
		}
	}
	return in
}

// steps is ddmin over the steps, testing complements, then a pass that
// tries each step alone out.
func (s *shrinker) steps(ctx context.Context, in *Input) *Input {
	items := in.Steps
	n := 2
	for len(items) >= 2 && !s.out() {
		chunk := (len(items) + n - 1) / n
		reduced := false
		for start := 0; start < len(items) && !s.out(); start += chunk {
			end := min(start+chunk, len(items))
			c := append(append([]Step{}, items[:start]...), items[end:]...)
			if s.test(ctx, &Input{Steps: c}) {
				items = c
				n = max(n-1, 2)
				reduced = true
				break
			}
		}
		if !reduced {
			if n >= len(items) {
				break
			}
			n = min(2*n, len(items))
		}
	}
	for i := len(items) - 1; i >= 0 && len(items) > 1 && !s.out(); i-- {
		c := append(append([]Step{}, items[:i]...), items[i+1:]...)
		if s.test(ctx, &Input{Steps: c}) {
			items = c
		}
	}
	return &Input{Steps: items}
}

// fields tries each step without its frame decorations and without each
// field that is not compulsory.
func (s *shrinker) fields(ctx context.Context, in *Input) *Input {
	for i := range in.Steps {
		for _, simplify := range []func(*Step) bool{
			func(st *Step) bool { ok := st.Pipe; st.Pipe = false; return ok },
			func(st *Step) bool { ok := len(st.Split) > 0; st.Split = nil; return ok },
			func(st *Step) bool { ok := st.JSONLie != 0; st.JSONLie = 0; return ok },
			func(st *Step) bool { ok := st.BinLie != 0; st.BinLie = 0; return ok },
			func(st *Step) bool { ok := st.Cut > 0; st.Cut = 0; return ok },
		} {
			if s.out() {
				return in
			}
			c := in.Clone()
			if simplify(&c.Steps[i]) && s.test(ctx, c) {
				in = c
			}
		}
		m, err := spec.ParseMessage([]byte(in.Steps[i].JSON))
		if err != nil {
			continue
		}
		for _, name := range m.Fields() {
			switch name {
			case spec.FieldOperation, spec.FieldDirection, spec.FieldType:
				continue
			}
			if s.out() {
				return in
			}
			c := in.Clone()
			cm := m.Clone()
			cm.Delete(name)
			c.Steps[i].JSON = cm.JSONString()
			if s.test(ctx, c) {
				in, m = c, cm
			}
		}
	}
	return in
}

// confirm replays the reproducer on fresh processes and keeps the last
// run's answers for the reports.
func (s *shrinker) confirm(ctx context.Context, in *Input) {
	fd := s.fd
	fd.Confirmed = confirmRuns
	if !s.f.o.Target.Managed() && (fd.Oracle == OracleDied || fd.Oracle == OracleUnresponsive) {
		fd.Confirmed = 0
	}
	for i := 0; i < fd.Confirmed && ctx.Err() == nil; i++ {
		if s.test(ctx, in) {
			fd.Reproduced++
		}
	}
	if s.lastTr != nil {
		fd.Violation = s.last
		fd.Answers = answers(in, s.lastTr)
	}
	if fd.Oracle == OracleDied || fd.Oracle == OracleUnresponsive {
		if s.f.o.Target.Managed() {
			fd.Output = lastLines(s.f.o.Target.Output(), 20)
		}
		// Leave a fresh server behind for whatever comes next.
		s.fresh(ctx)
	}
}

// answers lists what the server answered to each step.
func answers(in *Input, tr *Trace) []Answer {
	var out []Answer
	for _, ex := range tr.Exchanges {
		a := Answer{Step: ex.Step, Sent: in.Steps[ex.Step].describe(), Outcome: ex.Outcome, Detail: ex.Detail}
		if ex.Resp != nil {
			a.Answer = ex.Resp.JSONString()
			a.Binary = len(ex.RespBin)
		}
		out = append(out, a)
	}
	return out
}

// blocks tries each file of the input one block shorter: its plan's size
// less a block, that block's UPLOAD gone and the later ones renumbered,
// so that an upload keeps its order with fewer blocks.
func (s *shrinker) blocks(ctx context.Context, in *Input) *Input {
	bs := s.f.res.BlockSize
	for changed := true; changed && !s.out(); {
		changed = false
		for i, st := range in.Steps {
			m, err := spec.ParseMessage([]byte(st.JSON))
			if err != nil || m.Operation() != spec.OpSave || m.Type() != spec.TypeFile {
				continue
			}
			key, err1 := m.Key()
			size, err2 := m.Size()
			if err1 != nil || err2 != nil || size <= bs {
				continue
			}
			total := spec.TotalBlocks(size, bs)
			for drop := int64(0); drop < total-1 && !changed && !s.out(); drop++ {
				c := &Input{}
				for j, o := range in.Steps {
					if j == i {
						cm := m.Clone()
						cm.SetInt(spec.FieldSize, size-bs)
						o.JSON = cm.JSONString()
						c.Steps = append(c.Steps, o)
						continue
					}
					um, err := spec.ParseMessage([]byte(o.JSON))
					if err == nil && um.Operation() == spec.OpUpload {
						if k, err := um.Key(); err == nil && k == key {
							if idx, err := um.BlockIndex(); err == nil && idx >= drop {
								if idx == drop {
									continue
								}
								um.SetInt(spec.FieldBlockIndex, idx-1)
								o.JSON = um.JSONString()
							}
						}
					}
					c.Steps = append(c.Steps, o)
				}
				if s.test(ctx, c) {
					in, changed = c, true
				}
			}
			if changed {
				break
			}
		}
	}
	return in
}
