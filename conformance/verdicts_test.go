package conformance_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// TestExt6Advertisement: EXT-6 is INFORMATIONAL when the LOGIN response
// does not advertise pipelining (or advertises something other than true),
// PASS when a server that reads exact lengths advertises it, and FAIL when
// a server that reads past a block into the next request advertises it.
func TestExt6Advertisement(t *testing.T) {
	upstream := selfCheckServer(t)
	strip := func(_ *proxyConn, req, resp *spec.Message) []*spec.Message {
		if req.Operation() == spec.OpLogin {
			resp.Delete(spec.FieldPipelining)
		}
		return one(resp)
	}
	asString := func(_ *proxyConn, req, resp *spec.Message) []*spec.Message {
		if req.Operation() == spec.OpLogin && status(resp) == spec.StatusOK {
			resp.Set(spec.FieldPipelining, "true")
		}
		return one(resp)
	}
	tests := []struct {
		name string
		mut  *mutation
		want conformance.Outcome
		msg  string // in the EXT-6 finding
	}{
		{"not advertised", &mutation{name: "strip", response: strip}, conformance.Informational, "not advertised"},
		{"advertised as a string", &mutation{name: "string", response: asString}, conformance.Informational, "only true advertises it"},
		{"advertised by a server reading exact lengths", &mutation{name: "advertise", response: advertisePipelining}, conformance.Pass, ""},
		{"advertised by a server reading into the next request", &mutation{name: "advertise, over-read", response: advertisePipelining, overRead: true}, conformance.Fail, "advertised pipelining"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := runAgainst(t, startProxy(t, upstream, tt.mut), "EXT-6")
			c, ok := rep.Case("EXT-6")
			if !ok || c.Outcome != tt.want {
				t.Fatalf("EXT-6: %s, want %s (%v)", c.Outcome, tt.want, c.Findings)
			}
			if tt.msg == "" {
				return
			}
			found := false
			for _, f := range c.Findings {
				if f.Requirement == "EXT-6" && f.Outcome == tt.want && strings.Contains(f.Message, tt.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("no EXT-6 finding saying %q: %v", tt.msg, c.Findings)
			}
			if tt.want == conformance.Fail && rep.Conformant {
				t.Error("a server breaking what it advertised was found conformant")
			}
		})
	}
}

// TestNoAnswerEndsTheCase: a request left unanswered is reported once (the
// case's requirement and REQ-6), and the case ends there, even when its
// requirement is a SHOULD: no finding about the status of an answer that
// never came.
func TestNoAnswerEndsTheCase(t *testing.T) {
	m := &mutation{name: "DATA SAVE of an empty key unanswered", response: func(_ *proxyConn, req, resp *spec.Message) []*spec.Message {
		if k, err := req.Key(); err == nil && k == "" && is(req, spec.OpSave, spec.TypeData) {
			return nil
		}
		return one(resp)
	}}
	rep := runAgainst(t, startProxy(t, selfCheckServer(t), m), "KEY-3")
	c, ok := rep.Case("KEY-3")
	if !ok || c.Outcome != conformance.Fail {
		t.Fatalf("KEY-3: %s, want FAIL (%v)", c.Outcome, c.Findings)
	}
	var reqs []string
	for _, f := range c.Findings {
		reqs = append(reqs, f.Requirement)
		if strings.Contains(f.Message, "missing or not an integer") {
			t.Errorf("a finding about the status of an answer that never came: %s", f.Message)
		}
	}
	if strings.Join(reqs, ",") != "REQ-6,KEY-3" {
		t.Errorf("findings against %v, want REQ-6 then KEY-3", reqs)
	}
}

// TestFileSave10Limit: a plan past 2^32 accepted is INFORMATIONAL when the
// run does not know the server's limit (the mutation table checks that),
// PASS when refused, and FAIL when the run was told a limit the server
// does not keep.
func TestFileSave10Limit(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	for _, tt := range []struct {
		told int64
		want conformance.Outcome
	}{{0, conformance.Pass}, {1000, conformance.Fail}} {
		rep, err := conformance.Run(context.Background(), conformance.Options{
			Config:    conformance.Config{Target: addr, MaxFileSize: tt.told},
			Selectors: []string{"FILE-SAVE-10"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if c, ok := rep.Case("FILE-SAVE-10"); !ok || c.Outcome != tt.want {
			t.Errorf("told %d: FILE-SAVE-10 %s, want %s (%v)", tt.told, c.Outcome, tt.want, c.Findings)
		}
	}
}

// TestExtensionsTheRunWasToldOf: a quota or a connection limit the run was
// given is a MUST for the server (EXT-1, EXT-3), so a server that does not
// keep it FAILs, although the extensions are MAYs.
func TestExtensionsTheRunWasToldOf(t *testing.T) {
	quota, _ := refserver.StartTest(t, refserver.Config{Quota: 1 << 20})
	// One server per case: the connections of one case may still count
	// against the limit when the next begins.
	limited, _ := refserver.StartTest(t, refserver.Config{MaxConns: 4})
	limited2, _ := refserver.StartTest(t, refserver.Config{MaxConns: 4})
	noQuota := startProxy(t, quota, &mutation{name: "413 answered 200", response: setStatus(opType(spec.OpSave, spec.TypeFile), 413, 200)})
	for _, tt := range []struct {
		name, target, id string
		cfg              conformance.Config
		want             conformance.Outcome
	}{
		{"quota kept", quota, "EXT-1", conformance.Config{Quota: 1 << 20}, conformance.Pass},
		{"quota not kept", noQuota, "EXT-1", conformance.Config{Quota: 1 << 20}, conformance.Fail},
		{"limit kept", limited, "EXT-3", conformance.Config{MaxConns: 4}, conformance.Pass},
		{"no limit where the run was told of one", limited2, "EXT-3", conformance.Config{MaxConns: 1}, conformance.Fail},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Target, cfg.ReadTimeout = tt.target, shortRead
			rep, err := conformance.Run(context.Background(), conformance.Options{Config: cfg, Selectors: []string{tt.id}})
			if err != nil {
				t.Fatal(err)
			}
			if c, ok := rep.Case(tt.id); !ok || c.Outcome != tt.want {
				t.Errorf("%s: %s, want %s (%v)", tt.id, c.Outcome, tt.want, c.Findings)
			}
		})
	}
}
