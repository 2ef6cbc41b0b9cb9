package stepdump_test

import (
	"bufio"
	"bytes"
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

// writeUploadCapture writes a capture of one upload of mib MiB in
// blockSize-byte blocks over one connection, stop-and-wait, each request
// in one loopback-sized segment. Packets are written as each block is
// built, so the generator holds one block at a time.
func writeUploadCapture(tb testing.TB, path string, mib, blockSize int) int64 {
	tb.Helper()
	return writeUploadCaptureBytes(tb, path, int64(mib)<<20, blockSize)
}

// writeUploadCaptureBytes writes a capture of one upload of size bytes.
func writeUploadCaptureBytes(tb testing.TB, path string, size int64, blockSize int) int64 {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := capgen.NewWriter(bw, capgen.Ethernet, true, 0)
	if err != nil {
		tb.Fatal(err)
	}
	data := capgen.Pattern(int(size), 9)
	c := capgen.NewConn(netip.MustParseAddrPort("127.0.0.1:40500"), netip.MustParseAddrPort("127.0.0.1:1379"),
		time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC), 65483)
	s := capgen.NewSession(c, "bench")
	c.Handshake()
	s.Login()
	p := s.SavePlan("big.bin", size, int64(blockSize))
	flush := func() {
		if err := w.WriteAll(c); err != nil {
			tb.Fatal(err)
		}
		c.Packets = c.Packets[:0]
	}
	for i := int64(0); i < p.Total; i++ {
		s.Do(s.UploadReq(p, i, data), s.UploadResp(p, i, data))
		if i%64 == 0 {
			flush()
		}
	}
	s.Bye()
	c.Close()
	flush()
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	return st.Size()
}

// timeCommand runs a command with its output thrown away and returns its
// wall time, its CPU time (user and system) and peak resident memory. The peak is the kernel's high-water
// mark of the program's own memory (VmHWM), sampled until it exits: the
// rusage of a child counts the memory of the process that forked it.
func timeCommand(tb testing.TB, name string, args ...string) (time.Duration, time.Duration, int64) {
	tb.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "HOME="+tb.TempDir())
	var errb bytes.Buffer
	cmd.Stderr = &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	var hwm int64
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				tb.Fatalf("%s %v: %v\n%s", name, args, err, errb.Bytes())
			}
			ps := cmd.ProcessState
			return time.Since(start), ps.UserTime() + ps.SystemTime(), hwm
		case <-tick.C:
			b, _ := os.ReadFile(status)
			if i := bytes.Index(b, []byte("VmHWM:")); i >= 0 {
				var kb int64
				fmt.Sscan(string(b[i+6:]), &kb)
				hwm = max(hwm, kb<<10)
			}
		}
	}
}

// BenchmarkDumpJSONAgainstTshark times `stepkit dump --json` on a capture
// of one 256 MiB upload in 20480-byte blocks (STEPDUMP_BENCH_MIB) against
// `tshark -r FILE -q` on the same file, alternately in the same run, and
// reports the ratio of their times and both peak resident sizes.
//
//	go test ./stepdump -run '^$' -bench DumpJSONAgainstTshark -benchtime 3x
func BenchmarkDumpJSONAgainstTshark(b *testing.B) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		b.Fatalf("tshark is needed for the comparison: %v", err)
	}
	mib := 256
	if v, err := strconv.Atoi(os.Getenv("STEPDUMP_BENCH_MIB")); err == nil && v > 0 {
		mib = v
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "stepkit")
	build := exec.Command("go", "build", "-o", bin, "../cmd/stepkit")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	// Writing the capture takes minutes: STEPDUMP_BENCH_CAPTURE keeps it
	// between runs.
	path := os.Getenv("STEPDUMP_BENCH_CAPTURE")
	var size int64
	if st, err := os.Stat(path); path != "" && err == nil {
		size = st.Size()
	} else {
		if path == "" {
			path = filepath.Join(dir, "upload.pcapng")
		}
		size = writeUploadCapture(b, path, mib, 20480)
	}
	out := filepath.Join(dir, "out.json")

	// tshark -q dissects nothing it need not: most of its time is its
	// start-up, measured here on a capture of one short session.
	tiny := filepath.Join(dir, "tiny.pcapng")
	writeUploadCaptureBytes(b, tiny, 30000, 20480)
	var startup, startupCPU time.Duration
	var ours, theirs, oursCPU, theirsCPU time.Duration
	var oursMin, theirsMin time.Duration
	var oursRSS, theirsRSS int64
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		// Alternate, so both see the same machine and the same page cache.
		el, cpu, _ := timeCommand(b, tshark, "-n", "-q", "-r", tiny)
		startup = minTime(startup, el)
		startupCPU = minTime(startupCPU, cpu)
		el, cpu, rss := timeCommand(b, tshark, "-n", "-q", "-r", path)
		theirs += el
		theirsMin = minTime(theirsMin, el)
		theirsCPU += cpu
		theirsRSS = max(theirsRSS, rss)
		el, cpu, rss = timeCommand(b, "sh", "-c", `exec "$0" dump --json "$1" >"$2"`, bin, path, out)
		ours += el
		oursMin = minTime(oursMin, el)
		oursCPU += cpu
		oursRSS = max(oursRSS, rss)
	}
	b.StopTimer()
	st, err := os.Stat(out)
	if err != nil || st.Size() == 0 {
		b.Fatalf("stepkit dump --json wrote nothing: %v", err)
	}
	n := time.Duration(b.N)
	ratio := ours.Seconds() / theirs.Seconds()
	minRatio := oursMin.Seconds() / theirsMin.Seconds()
	cpuRatio := oursCPU.Seconds() / theirsCPU.Seconds()
	b.ReportMetric(ratio, "time-of-tshark")
	b.ReportMetric(minRatio, "best-time-of-tshark")
	b.ReportMetric(cpuRatio, "cpu-of-tshark")
	b.ReportMetric(startup.Seconds(), "tshark-startup-s")
	b.ReportMetric(startupCPU.Seconds(), "tshark-startup-cpu-s")
	b.ReportMetric(float64(oursRSS)/(1<<20), "stepkit-MiB")
	b.ReportMetric(float64(theirsRSS)/(1<<20), "tshark-MiB")
	b.Logf("capture %d MB: stepkit dump --json %.3fs mean, %.3fs best (CPU %.3fs), %.0f MiB; tshark -r -q %.3fs mean, %.3fs best (CPU %.3fs), %.0f MiB, of which start-up %.3fs (CPU %.3fs); ratio %.2f of the mean time, %.2f of the best, %.2f of the CPU time",
		size/1e6, (ours / n).Seconds(), oursMin.Seconds(), (oursCPU / n).Seconds(), float64(oursRSS)/(1<<20),
		(theirs / n).Seconds(), theirsMin.Seconds(), (theirsCPU / n).Seconds(), float64(theirsRSS)/(1<<20), startup.Seconds(), startupCPU.Seconds(),
		ratio, minRatio, cpuRatio)
}

func minTime(a, b time.Duration) time.Duration {
	if a == 0 || b < a {
		return b
	}
	return a
}
