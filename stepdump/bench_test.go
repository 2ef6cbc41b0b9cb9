package stepdump_test

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepkit/stepkit/stepdump"
	"github.com/stepkit/stepkit/stepdump/capgen"
)

// writeLargeCapture writes about mb megabytes of STEP traffic: connections
// one after another, each logging in and uploading then downloading a file
// in 20480-byte blocks, with segments of loopback size. Connections are
// written as they are built, so the generator's memory stays small too.
func writeLargeCapture(tb testing.TB, path string, mb int) int64 {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := capgen.NewWriter(bw, capgen.Ethernet, false, 0)
	if err != nil {
		tb.Fatal(err)
	}
	const fileSize = 4 << 20
	data := capgen.Pattern(fileSize, 7)
	t := time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)
	for i := 0; i*2*fileSize < mb<<20; i++ {
		client := netip.AddrPortFrom(netip.MustParseAddr("10.0.1.2"), uint16(20000+i))
		c := capgen.NewConn(client, netip.MustParseAddrPort("10.0.0.1:1379"), t, 16384)
		s := capgen.NewSession(c, fmt.Sprintf("user%d", i))
		c.Handshake()
		s.Login()
		key := "file" + strconv.Itoa(i)
		s.Upload(key, data, 20480)
		s.Download(key, data, 20480)
		s.Bye()
		c.Close()
		if err := w.WriteAll(c); err != nil {
			tb.Fatal(err)
		}
		t = c.Now().Add(time.Millisecond)
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	return st.Size()
}

type countingHandler struct{ msgs, notes int }

func (h *countingHandler) Message(*stepdump.Message) { h.msgs++ }
func (h *countingHandler) Note(*stepdump.Note)       { h.notes++ }
func (h *countingHandler) ConnEnd(*stepdump.Conn)    {}

// BenchmarkDecodeLargeCapture reports how fast stepdump decodes a large
// capture (STEPDUMP_BENCH_MB, default 300) next to how long `tshark -r`
// takes to read the same file in the same run, as a ratio, and the peak
// heap while decoding (memory follows open connections, not capture size).
//
//	go test ./stepdump -run '^$' -bench DecodeLargeCapture -benchtime 3x
func BenchmarkDecodeLargeCapture(b *testing.B) {
	mb := 300
	if v, err := strconv.Atoi(os.Getenv("STEPDUMP_BENCH_MB")); err == nil && v > 0 {
		mb = v
	}
	path := filepath.Join(b.TempDir(), "large.pcap")
	size := writeLargeCapture(b, path, mb)

	// tshark reading the same file, its summary lines thrown away.
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		b.Fatalf("tshark is needed for the comparison: %v", err)
	}
	start := time.Now()
	cmd := exec.Command(tshark, "-n", "-r", path)
	cmd.Env = append(os.Environ(), "HOME="+b.TempDir())
	if out, err := cmd.Output(); err != nil || len(out) == 0 {
		b.Fatalf("tshark -r: %v", err)
	}
	tsharkTime := time.Since(start)

	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	b.SetBytes(size)
	b.ResetTimer()
	msgs := 0
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		h := &countingHandler{}
		if _, err := stepdump.Decode(context.Background(), f, stepdump.Options{}, h); err != nil {
			b.Fatal(err)
		}
		f.Close()
		msgs = h.msgs
	}
	b.StopTimer()
	close(stop)
	if msgs == 0 {
		b.Fatal("no message decoded")
	}
	per := b.Elapsed() / time.Duration(b.N)
	ours := float64(size) / 1e6 / per.Seconds()
	theirs := float64(size) / 1e6 / tsharkTime.Seconds()
	b.ReportMetric(theirs, "tshark-MB/s")
	b.ReportMetric(ours/theirs, "x-faster-than-tshark")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
	b.Logf("capture %d MB, %d messages: stepdump %.3fs (%.0f MB/s), tshark -r %.3fs (%.0f MB/s), ratio %.1fx",
		size/1e6, msgs, per.Seconds(), ours, tsharkTime.Seconds(), theirs, ours/theirs)
}
