package refclient

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver"
)

// md5Rate measures one core's MD5 throughput in bytes per second, the
// limit a transfer that hashes every byte cannot beat on one core.
func md5Rate(b *testing.B) float64 {
	b.Helper()
	buf := testData(1<<20, 1)
	h := md5.New()
	start := time.Now()
	n := 0
	for time.Since(start) < 200*time.Millisecond {
		h.Write(buf)
		n++
	}
	return float64(n<<20) / time.Since(start).Seconds()
}

// reportVsMD5 reports the transfer rate in MB/s and as a fraction of the
// one-core MD5 rate measured in the same run.
func reportVsMD5(b *testing.B, bytesPerOp int64, md5BPS float64) {
	bps := float64(bytesPerOp) * float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(bps/1e6, "MB/s")
	b.ReportMetric(md5BPS/1e6, "md5-MB/s")
	b.ReportMetric(bps/md5BPS, "x-md5")
}

func benchConfigs() []Options {
	return []Options{{Window: 1}, {Window: 16}, {Window: 16, Conns: 2}}
}

func optName(o Options) string { return fmt.Sprintf("window%d-conns%d", o.Window, max(o.Conns, 1)) }

func BenchmarkUpload(b *testing.B) {
	const size = 8 << 20
	data := testData(size, 2)
	md5BPS := md5Rate(b)
	for _, o := range benchConfigs() {
		b.Run(optName(o), func(b *testing.B) {
			addr, _ := refserver.StartTest(b, refserver.Config{})
			c := login(b, addr, &o)
			ctx := context.Background()
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				key := fmt.Sprintf("bench-%d", i)
				if _, err := c.Upload(ctx, key, bytes.NewReader(data), size, nil); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := c.DeleteFile(ctx, key); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			reportVsMD5(b, size, md5BPS)
		})
	}
}

func BenchmarkDownload(b *testing.B) {
	const size = 8 << 20
	data := testData(size, 3)
	md5BPS := md5Rate(b)
	for _, o := range benchConfigs() {
		b.Run(optName(o), func(b *testing.B) {
			addr, _ := refserver.StartTest(b, refserver.Config{})
			c := login(b, addr, &o)
			ctx := context.Background()
			if _, err := c.Upload(ctx, "src", bytes.NewReader(data), size, nil); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Download(ctx, "src", io.Discard, nil); err != nil {
					b.Fatal(err)
				}
			}
			reportVsMD5(b, size, md5BPS)
		})
	}
}
