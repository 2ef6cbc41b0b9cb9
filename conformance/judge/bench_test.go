package judge

import (
	"context"
	"testing"
	"time"
)

// BenchmarkJudge judges the well-behaved test client with every case, the
// cases four at a time as a run does, next to a serial run measured in the
// same benchmark: x-serial is how much running cases at once saves. Most
// of a run is spent on purpose: the pauses of CLIENT-3, the 1 s holds of
// CLIENT-3.2 and CLIENT-4, and the client's own 2 s read timeout in
// CLIENT-7.
func BenchmarkJudge(b *testing.B) {
	dir := b.TempDir()
	copyTestBinary(b, dir)
	tp, err := ParseTemplate(testTemplate)
	if err != nil {
		b.Fatal(err)
	}
	run := func(parallel int) time.Duration {
		start := time.Now()
		rep, err := Run(context.Background(), Options{Template: tp, Dir: dir, Isolation: Host, Parallel: parallel,
			Env: []string{asTestClient + "=" + modeGood, "GORACE=atexit_sleep_ms=0"}})
		if err != nil {
			b.Fatal(err)
		}
		if !rep.Conformant {
			b.Fatalf("the well-behaved client is not conformant: %v", rep.Counts)
		}
		return time.Since(start)
	}
	var par, ser time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		par += run(0)
		ser += run(1)
	}
	b.StopTimer()
	b.ReportMetric(float64(par.Milliseconds())/float64(b.N), "ms/suite")
	b.ReportMetric(float64(ser.Milliseconds())/float64(b.N), "ms/serial")
	b.ReportMetric(float64(ser)/float64(par), "x-serial")
}
