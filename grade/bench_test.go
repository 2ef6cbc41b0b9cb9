package grade_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stepkit/stepkit/grade"
)

// classLimit is what grading a class of 32 slow servers may take on a
// 2-core machine.
const classLimit = 3 * time.Minute

// slowServer is the fixture server with FILE GET and DELETE left
// unanswered: like many course servers, it leaves dozens of the suite's
// requests to the read timeout.
const slowServer = "python3 server.py --port {port} --mute GET,DELETE"

// BenchmarkGradeClass grades a class of 32 servers that each leave
// requests unanswered, next to one serial suite run against one of them
// in the same run. Metrics: serial-s (one suite run), class-s (the whole
// class), class/serial (the class's time in single runs) and
// x-vs-one-by-one (32 serial runs over the class's time),
// class/limit (the class's time over the 3-minute limit; ≤ 1 meets it),
// slow-cases/server (cases that waited out the read timeout).
//
//	go test ./grade -run '^$' -bench BenchmarkGradeClass -benchtime 1x
func BenchmarkGradeClass(b *testing.B) {
	src, err := os.ReadFile(filepath.Join("testdata", "stepserver.py"))
	if err != nil {
		b.Fatal(err)
	}
	class := b.TempDir()
	var subs []grade.Submission
	for i := 0; i < 32; i++ {
		id := fmt.Sprintf("s%02d", i)
		d := filepath.Join(class, id)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "server.py"), src, 0o644)
		subs = append(subs, grade.Submission{ID: id, Dir: d})
	}
	for n := 0; n < b.N; n++ {
		// One suite run, serially, against one of these servers on the host.
		serial, slow := serialRun(b, filepath.Join(class, "s00"))
		out := b.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		start := time.Now()
		c, err := grade.Run(ctx, grade.Options{Submissions: subs, Run: slowServer, Out: out, Stepkit: stepkitBin})
		took := time.Since(start)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range c.Results {
			if r.Verdict != grade.NotConformant {
				b.Fatalf("%s: %s %s, want NOT CONFORMANT", r.ID, r.Verdict, r.Problem)
			}
		}
		b.ReportMetric(serial.Seconds(), "serial-s")
		b.ReportMetric(took.Seconds(), "class-s")
		b.ReportMetric(took.Seconds()/serial.Seconds(), "class/serial")
		b.ReportMetric(float64(len(subs))*serial.Seconds()/took.Seconds(), "x-vs-one-by-one")
		b.ReportMetric(took.Seconds()/classLimit.Seconds(), "class/limit")
		b.ReportMetric(float64(slow), "slow-cases/server")
		b.ReportMetric(float64(c.Jobs), "jobs")
		b.Logf("isolated %v; 32 servers in %s with %d jobs; one serial run %s (%d cases waited out the read timeout)",
			c.Isolated, took.Round(time.Second), c.Jobs, serial.Round(time.Second), slow)
	}
}

// serialRun starts the slow server on the host and times one stepkit
// conformance run against it.
func serialRun(b *testing.B, dir string) (time.Duration, int) {
	port := freePort(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	srv := exec.CommandContext(ctx, "python3", "server.py", "--port", port, "--mute", "GET,DELETE")
	srv.Dir = dir
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	waitPort(b, "127.0.0.1:"+port)
	report := filepath.Join(b.TempDir(), "report.json")
	start := time.Now()
	run := exec.CommandContext(ctx, stepkitBin, "conformance", "--target", "127.0.0.1:"+port, "--json-report", report)
	_ = run.Run() // exit status 1: not conformant, as expected
	took := time.Since(start)
	rep, err := grade.ReadReport(report)
	if err != nil {
		b.Fatal(err)
	}
	slow := 0
	for _, c := range rep.Cases {
		if c.Duration() >= time.Duration(rep.Settings.ReadTimeoutMS)*time.Millisecond {
			slow++
		}
	}
	return took, slow
}
