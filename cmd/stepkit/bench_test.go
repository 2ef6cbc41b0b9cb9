package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refclient"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

func TestBenchMixedJSON(t *testing.T) {
	clientEnv(t)
	addr, _ := refserver.StartTest(t, refserver.Config{})
	code, out, errs := runCLI(t, "", "bench", "--target", addr, "--clients", "3", "--size", "50KiB",
		"--op", "mixed", "--requests", "12", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if rep.Ops != 12 || rep.Failed != 0 || len(rep.Errors) != 0 || rep.Size != 50<<10 {
		t.Fatalf("report %+v", rep)
	}
	// refserver advertises pipelining: the automatic window pipelines both.
	if rep.Window != 0 || rep.UpWindow != refclient.AutoWindow(spec.DefaultBlockSize) || rep.DownWindow != refclient.AutoWindow(refclient.DefaultBlockSize) {
		t.Fatalf("windows: asked %d, uploads %d, downloads %d", rep.Window, rep.UpWindow, rep.DownWindow)
	}
	byOp := map[string]benchOpReport{}
	for _, o := range rep.Operations {
		byOp[o.Op] = o
	}
	up, down := byOp["upload"], byOp["download"]
	if up.Count+down.Count != 12 || up.Count == 0 || down.Count == 0 {
		t.Fatalf("operations %+v", rep.Operations)
	}
	for _, o := range []benchOpReport{up, down} {
		l := o.LatencyMS
		if !(l.Min > 0 && l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) || o.BytesPerS <= 0 {
			t.Fatalf("%s: latencies %+v, %v B/s", o.Op, l, o.BytesPerS)
		}
	}
}

func TestBenchReportsEveryError(t *testing.T) {
	clientEnv(t)
	// A quota smaller than one file: every upload is refused with 413.
	addr, _ := refserver.StartTest(t, refserver.Config{Quota: 10 << 10})
	code, out, errs := runCLI(t, "", "bench", "--target", addr, "--clients", "2", "--size", "20KiB",
		"--op", "upload", "--requests", "4")
	if code != exitRefused {
		t.Fatalf("exit %d, want %d: %s", code, exitRefused, errs)
	}
	if !strings.Contains(out, "413") || !strings.Contains(out, "errors:") || !strings.Contains(out, "p99") {
		t.Fatalf("text report lacks the errors: %q", out)
	}
}

func TestBenchUsage(t *testing.T) {
	clientEnv(t)
	for _, args := range [][]string{
		{"bench", "--op", "delete"},
		{"bench", "--size", "lots"},
		{"bench", "--clients", "0"},
		{"bench", "--target", "nohost"},
	} {
		if code, _, _ := runCLI(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d", args, code)
		}
	}
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	p := percentiles(d)
	if p.Min != 1 || p.P50 != 50 || p.P90 != 90 || p.P99 != 99 || p.Max != 100 || p.Mean != 50.5 {
		t.Fatalf("%+v", p)
	}
	if (percentiles(nil) != benchPercentile{}) {
		t.Fatal("empty")
	}
}

// Against a server that does not advertise pipelining, bench uploads one
// block at a time unless --window says otherwise.
func TestBenchAutomaticWindow(t *testing.T) {
	clientEnv(t)
	addr, _ := refserver.StartTest(t, refserver.Config{})
	plain := noPipeliningProxy(t, addr)
	for _, tc := range []struct {
		extra []string
		want  string
	}{
		{nil, "window automatic (1 for uploads)"},
		{[]string{"--window", "8"}, "window 8,"},
	} {
		args := append([]string{"bench", "--target", plain, "--clients", "1", "--size", "100KiB", "--op", "upload", "--requests", "2"}, tc.extra...)
		code, out, errs := runCLI(t, "", args...)
		if code != 0 || !strings.Contains(out, tc.want) || !strings.Contains(out, "no errors") {
			t.Fatalf("%v: exit %d %q %s", tc.extra, code, out, errs)
		}
	}
}
