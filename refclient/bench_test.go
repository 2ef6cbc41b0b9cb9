package refclient

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net"
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

// tcpRate measures a raw copy over a loopback TCP connection in bytes per
// second: the limit of any protocol on this machine.
func tcpRate(b *testing.B) float64 {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan int64)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- 0
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		done <- n
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	buf := testData(256<<10, 2)
	start := time.Now()
	for time.Since(start) < 200*time.Millisecond {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	n := <-done
	return float64(n) / time.Since(start).Seconds()
}

// limits are the reference rates of one run.
type limits struct{ md5, tcp float64 }

func measureLimits(b *testing.B) limits { return limits{md5: md5Rate(b), tcp: tcpRate(b)} }

// reportVsMD5 reports the transfer rate in MB/s and as a fraction of the
// one-core MD5 rate and of the raw loopback TCP rate measured in the same
// run.
func reportVsMD5(b *testing.B, bytesPerOp int64, l limits) {
	bps := float64(bytesPerOp) * float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(bps/1e6, "MB/s")
	b.ReportMetric(l.md5/1e6, "md5-MB/s")
	b.ReportMetric(bps/l.md5, "x-md5")
	b.ReportMetric(l.tcp/1e6, "tcp-MB/s")
	b.ReportMetric(bps/l.tcp, "x-tcp")
}

// benchConfigs are the transfer settings measured; the first is the
// automatic window (refserver advertises pipelining, so 16).
func benchConfigs() []Options {
	return []Options{{}, {Window: 1}, {Window: 16}, {Window: 16, Conns: 2}}
}

func optName(o Options) string {
	w := "auto"
	if o.Window > 0 {
		w = fmt.Sprint(o.Window)
	}
	return fmt.Sprintf("window%s-conns%d", w, max(o.Conns, 1))
}

func BenchmarkUpload(b *testing.B) {
	const size = 8 << 20
	data := testData(size, 2)
	lim := measureLimits(b)
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
			reportVsMD5(b, size, lim)
		})
	}
}

func BenchmarkDownload(b *testing.B) {
	const size = 8 << 20
	data := testData(size, 3)
	lim := measureLimits(b)
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
			reportVsMD5(b, size, lim)
		})
	}
}
