package conformance_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// BenchmarkSuite runs the whole suite against refserver and reports its
// request rate next to the rate of plain request/response round trips on
// one raw connection to the same server, measured in the same run: the
// ratio says how much of the server's speed the suite's bookkeeping
// (fresh connections, logins, checks, records) leaves.
func BenchmarkSuite(b *testing.B) {
	addr, _ := refserver.StartTest(b, refserver.Config{})
	rawRate := rawRoundTrips(b, addr, 300*time.Millisecond)

	var sent int
	var elapsed time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		// TOKEN-11 waits until the run's first token is two seconds old.
		rep, err := conformance.Run(context.Background(), conformance.Options{Config: conformance.Config{Target: addr}, LabelFilter: "!req:TOKEN-11"})
		elapsed += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if !rep.Conformant {
			b.Fatalf("refserver not conformant: %v", rep.Counts)
		}
		for _, c := range rep.Cases {
			sent += c.Sent
		}
	}
	b.StopTimer()
	suiteRate := float64(sent) / elapsed.Seconds()
	b.ReportMetric(float64(elapsed.Milliseconds())/float64(b.N), "ms/suite")
	b.ReportMetric(suiteRate, "req/s")
	b.ReportMetric(rawRate, "raw-req/s")
	b.ReportMetric(suiteRate/rawRate, "ratio")
}

// rawRoundTrips measures DATA GET round trips per second on one logged-in
// connection for about d.
func rawRoundTrips(b *testing.B, addr string, d time.Duration) float64 {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	w, r := spec.NewWriter(nc), spec.NewReader(nc, spec.Limits{})
	login := spec.NewRequest(spec.OpLogin, spec.TypeAuth)
	login.Set(spec.FieldUsername, "bench").Set(spec.FieldPassword, refserver.CoursePassword("bench"))
	if err := w.WriteMessage(login); err != nil {
		b.Fatal(err)
	}
	resp, err := r.ReadMessage()
	if err != nil {
		b.Fatal(err)
	}
	tok, _ := resp.Token()
	get := spec.NewRequest(spec.OpGet, spec.TypeData)
	get.Set(spec.FieldToken, tok).Set(spec.FieldKey, "none")
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if err := w.WriteMessage(get); err != nil {
			b.Fatal(err)
		}
		if _, err := r.ReadMessage(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkCourseLikeSuite runs the whole suite, with the default read
// timeout, against the course-like server (the reference profile: about
// 30 requests of a run left unanswered), sixteen cases at a time and, in
// the same iteration, one case at a time. x-serial is how many times
// faster the parallel run is than the serial one measured next to it; the
// two runs must agree on every case's outcome.
//
//	go test ./conformance -run '^$' -bench CourseLike -benchtime 1x
func BenchmarkCourseLikeSuite(b *testing.B) {
	addr := startCourseLike(b, 0)
	cfg := conformance.Config{Target: addr}
	var parallel, serial time.Duration
	run := func(workers int) (*conformance.Report, time.Duration) {
		start := time.Now()
		rep, err := conformance.Run(context.Background(), conformance.Options{Config: cfg, Parallel: workers})
		if err != nil {
			b.Fatal(err)
		}
		return rep, time.Since(start)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, took := run(0)
		parallel += took
		s, took := run(1)
		serial += took
		want := outcomes(s)
		for id, o := range outcomes(p) {
			if want[id] != o {
				b.Fatalf("%s: %s in parallel, %s serially", id, o, want[id])
			}
		}
		if p.Counts[conformance.Fail] < 20 {
			b.Fatalf("the course-like server failed only %d cases", p.Counts[conformance.Fail])
		}
	}
	b.ReportMetric(parallel.Seconds()/float64(b.N), "s/parallel-suite")
	b.ReportMetric(serial.Seconds()/float64(b.N), "s/serial-suite")
	b.ReportMetric(serial.Seconds()/parallel.Seconds(), "x-serial")
}
