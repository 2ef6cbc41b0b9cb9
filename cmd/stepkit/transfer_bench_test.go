package main

import (
	"context"
	"crypto/md5"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkCLITransfer measures what a user sees: "stepkit upload FILE"
// and "stepkit download KEY -o PATH" as processes, against "stepkit serve"
// as a process, the file on disk and the server's root on tmpfs or on
// disk. Each rate is printed next to the one-core MD5 rate and a raw
// loopback TCP copy measured in the same run (x-md5, x-tcp), with the CPU
// seconds per GB moved of the server and of the client, each also split
// into user and system time, and their minor page faults and read and
// write system calls per GB (from /proc: the client's read once it has
// exited, before it is reaped).
//
//	go test ./cmd/stepkit -run '^$' -bench CLITransfer -benchtime 3x
//
// STEPKIT_BENCH_SIZE sets the file size (default 256MiB).
func BenchmarkCLITransfer(b *testing.B) {
	fileDir, src, size := benchSource(b)
	eachRoot(b, func(b *testing.B, srv *stepkitProc, addr string) {
		for _, block := range []string{"20480", "auto"} {
			for _, conns := range []string{"1", "2"} {
				args := []string{"--server", addr, "--user", "bench", "--conns", conns, "--no-progress"}
				if block != "auto" {
					args = append(args, "--block-size", block)
				}
				name := "block=" + block + "/conns=" + conns
				key := fmt.Sprintf("bench-%s-%s", block, conns)
				b.Run(name+"/op=upload", func(b *testing.B) {
					benchCLI(b, srv, size, func(i int) []string {
						return append([]string{"upload", src, "--key", fmt.Sprintf("%s-%d", key, i), "--json"}, args...)
					}, func(i int) []string {
						return append([]string{"rm", fmt.Sprintf("%s-%d", key, i)}, args[:4]...)
					})
				})
				b.Run(name+"/op=download", func(b *testing.B) {
					if code, out, errs := stepkitRun(b, fileDir, append([]string{"upload", src, "--key", key}, args...)...); code != exitOK {
						b.Fatalf("upload: exit %d %s %s", code, out, errs)
					}
					dst := filepath.Join(fileDir, "dst.bin")
					benchCLI(b, srv, size, func(int) []string {
						return append([]string{"download", key, "-o", dst, "--json"}, args...)
					}, func(int) []string {
						// A fresh destination each time: replacing a
						// large file would time its removal too.
						os.Remove(dst)
						return nil
					})
					os.Remove(dst)
					stepkitRun(b, fileDir, append([]string{"rm", key}, args[:4]...)...)
				})
			}
		}
	})
}

// benchSource writes the file the transfer benchmarks move, on disk:
// STEPKIT_BENCH_SIZE bytes, 256 MiB by default.
func benchSource(b *testing.B) (dir, path string, size int64) {
	size = 256 << 20
	if s := os.Getenv("STEPKIT_BENCH_SIZE"); s != "" {
		n, err := parseBytes(s)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	dir = b.TempDir()
	path = filepath.Join(dir, "src.bin")
	writePattern(b, path, size)
	return dir, path, size
}

// benchRoot is where a transfer benchmark's server keeps its files: under
// dir, or in a test folder on disk when dir is empty.
type benchRoot struct{ name, dir string }

func benchRoots() []benchRoot { return []benchRoot{{"tmpfs", "/dev/shm"}, {"disk", ""}} }

func (r benchRoot) available() bool {
	if r.dir == "" {
		return true
	}
	fi, err := os.Stat(r.dir)
	return err == nil && fi.IsDir()
}

// make returns a new empty folder under the root, removed after b.
func (r benchRoot) make(b *testing.B) string {
	if r.dir == "" {
		return b.TempDir()
	}
	d, err := os.MkdirTemp(r.dir, "stepkit-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// benchCLI runs the command cmd(i) b.N times, timed, each followed by the
// untimed cleanup(i), and reports the rates.
func benchCLI(b *testing.B, srv *stepkitProc, size int64, cmd, cleanup func(i int) []string) {
	dir := b.TempDir()
	b.SetBytes(size)
	// The MD5 rate is sampled before every run and after the last, and
	// averaged: the load of a shared machine changes meanwhile.
	tcp := benchTCPRate(b)
	md5Sum, md5N := 0.0, 0
	srvStart := procStats(b, srv.cmd.Process.Pid)
	var client procStat
	var elapsed time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		md5Sum, md5N = md5Sum+benchMD5Rate(), md5N+1
		b.StartTimer()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		p := stepkitCmd(b, ctx, dir, cmd(i)...)
		var st procStat
		err := p.cmd.Start()
		if err == nil {
			st, err = exitedStats(p.cmd.Process.Pid)
			if werr := p.cmd.Wait(); err == nil {
				err = werr
			}
		}
		cancel()
		elapsed += time.Since(start)
		client = client.add(st)
		if err != nil {
			b.Fatalf("stepkit %v: %v\n%s%s", cmd(i), err, p.stdout.String(), p.stderr)
		}
		var rep struct{ Verified bool }
		if json.Unmarshal(p.stdout.Bytes(), &rep) != nil || !rep.Verified {
			b.Fatalf("stepkit %v: not verified: %s", cmd(i), p.stdout.String())
		}
		b.StopTimer()
		if c := cleanup(i); c != nil {
			if code, out, errs := stepkitRun(b, dir, c...); code != exitOK {
				b.Fatalf("stepkit %v: exit %d %s %s", c, code, out, errs)
			}
		}
		b.StartTimer()
	}
	b.StopTimer()
	server := procStats(b, srv.cmd.Process.Pid).sub(srvStart) // the MD5 samples are this process's, not the server's
	md5Rate := (md5Sum + benchMD5Rate()) / float64(md5N+1)
	gb := float64(size) * float64(b.N) / 1e9
	rate := float64(size) * float64(b.N) / elapsed.Seconds()
	b.ReportMetric(rate/1e6, "MB/s")
	b.ReportMetric(md5Rate/1e6, "md5-MB/s")
	b.ReportMetric(tcp/1e6, "tcp-MB/s")
	b.ReportMetric(rate/md5Rate, "x-md5")
	b.ReportMetric(rate/tcp, "x-tcp")
	for _, side := range []struct {
		name string
		st   procStat
	}{{"server", server}, {"client", client}} {
		b.ReportMetric((side.st.user+side.st.sys).Seconds()/gb, side.name+"-cpu-s/GB")
		b.ReportMetric(side.st.user.Seconds()/gb, side.name+"-user-s/GB")
		b.ReportMetric(side.st.sys.Seconds()/gb, side.name+"-sys-s/GB")
		b.ReportMetric(float64(side.st.minflt)/gb, side.name+"-minflt/GB")
		b.ReportMetric(float64(side.st.syscalls)/gb, side.name+"-rwcalls/GB")
	}
}

// procStat is what a process used: CPU time, minor page faults, and read
// and write system calls (of any kind: files, sockets).
type procStat struct {
	user, sys        time.Duration
	minflt, syscalls int64
}

func (a procStat) add(b procStat) procStat {
	return procStat{a.user + b.user, a.sys + b.sys, a.minflt + b.minflt, a.syscalls + b.syscalls}
}

func (a procStat) sub(b procStat) procStat {
	return procStat{a.user - b.user, a.sys - b.sys, a.minflt - b.minflt, a.syscalls - b.syscalls}
}

// procStats reads what process pid has used so far from /proc.
func procStats(b *testing.B, pid int) procStat {
	st, err := readProcStats(pid)
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	return st
}

func readProcStats(pid int) (procStat, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// Fields after the command name, which is in parentheses: minflt is
	// the 10th field of the line, utime and stime the 14th and 15th.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	minflt, _ := strconv.ParseInt(fields[7], 10, 64)
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	out := procStat{user: time.Duration(ut) * time.Second / ticks, sys: time.Duration(st) * time.Second / ticks, minflt: minflt}
	io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return procStat{}, err
	}
	for _, line := range strings.Split(string(io), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && (k == "syscr" || k == "syscw") {
			n, _ := strconv.ParseInt(v, 10, 64)
			out.syscalls += n
		}
	}
	return out, nil
}

// writePattern writes a file of n bytes that does not compress.
func writePattern(b *testing.B, path string, n int64) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	x := uint64(0x9e3779b97f4a7c15)
	for off := int64(0); off < n; off += int64(len(buf)) {
		for i := 0; i+8 <= len(buf); i += 8 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			buf[i], buf[i+1], buf[i+2], buf[i+3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
			buf[i+4], buf[i+5], buf[i+6], buf[i+7] = byte(x>>32), byte(x>>40), byte(x>>48), byte(x>>56)
		}
		if _, err := f.Write(buf[:min(int64(len(buf)), n-off)]); err != nil {
			b.Fatal(err)
		}
	}
}

// benchMD5Rate is one core's MD5 rate in bytes per second.
func benchMD5Rate() float64 {
	buf := make([]byte, 1<<20)
	h := md5.New()
	start := time.Now()
	n := 0
	for time.Since(start) < 300*time.Millisecond {
		h.Write(buf)
		n += len(buf)
	}
	return float64(n) / time.Since(start).Seconds()
}

// benchTCPRate is a raw copy over a loopback TCP connection in bytes per
// second.
func benchTCPRate(b *testing.B) float64 {
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
		n, _ := io.CopyBuffer(io.Discard, c, make([]byte, 256<<10))
		c.Close()
		done <- n
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	start := time.Now()
	for time.Since(start) < 300*time.Millisecond {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	return float64(<-done) / time.Since(start).Seconds()
}

// BenchmarkCLIConns compares "--conns 2" with "--conns 1" for one 256 MiB
// file, upload and download, 20480-byte blocks and negotiated ones, the
// server's root on tmpfs and on disk. The two are measured in pairs, in
// the order 1, 2, 2, 1 within each iteration, so that a machine whose
// speed drifts during the run (writeback, another process) weighs on both
// alike; x-conns1 is the rate with two connections over the rate with
// one, both summed over the same iterations.
//
//	go test ./cmd/stepkit -run '^$' -bench CLIConns -benchtime 3x
func BenchmarkCLIConns(b *testing.B) {
	fileDir, src, size := benchSource(b)
	eachRoot(b, func(b *testing.B, _ *stepkitProc, addr string) {
		for _, block := range []string{"20480", "auto"} {
			b.Run("block="+block, func(b *testing.B) {
				benchPairOps(b, fileDir, src, size, "pair-"+block, func(conns string) []string {
					a := []string{"--server", addr, "--user", "bench", "--conns", conns, "--no-progress"}
					if block != "auto" {
						a = append(a, "--block-size", block)
					}
					return a
				})
			})
		}
	})
}

// eachRoot runs body under "root=NAME" for every benchmark root there is,
// with a stepkit serve process on a new folder of it.
func eachRoot(b *testing.B, body func(b *testing.B, srv *stepkitProc, addr string)) {
	for _, root := range benchRoots() {
		if !root.available() {
			continue
		}
		b.Run("root="+root.name, func(b *testing.B) {
			srv, addr, _, _ := startServeProcess(b, root.make(b))
			body(b, srv, addr)
		})
	}
}

// benchPairOps runs benchPairs for the upload of src ("op=upload") and
// the download of its copy ("op=download"), with args(conns) as the
// server, user and connection flags (the first four: --server and --user)
// and keys that begin with key.
func benchPairOps(b *testing.B, fileDir, src string, size int64, key string, args func(conns string) []string) {
	b.Run("op=upload", func(b *testing.B) {
		n := 0
		benchPairs(b, size, func(conns string) (time.Duration, int) {
			n++
			k := fmt.Sprintf("%s-%d", key, n)
			d, used := timeCLI(b, fileDir, append([]string{"upload", src, "--key", k, "--json"}, args(conns)...)...)
			stepkitRun(b, fileDir, append([]string{"rm", k}, args(conns)[:4]...)...)
			return d, used
		})
	})
	b.Run("op=download", func(b *testing.B) {
		if code, out, errs := stepkitRun(b, fileDir, append([]string{"upload", src, "--key", key}, args("1")...)...); code != exitOK {
			b.Fatalf("upload: exit %d %s %s", code, out, errs)
		}
		dst := filepath.Join(fileDir, "dst.bin")
		benchPairs(b, size, func(conns string) (time.Duration, int) {
			os.Remove(dst)
			return timeCLI(b, fileDir, append([]string{"download", key, "-o", dst, "--json"}, args(conns)...)...)
		})
		os.Remove(dst)
		stepkitRun(b, fileDir, append([]string{"rm", key}, args("1")[:4]...)...)
	})
}

// benchPairs runs transfer("1") and transfer("2") twice each per
// iteration, in the order 1, 2, 2, 1, and reports both rates, their
// ratio, the lowest and highest ratio of a single iteration, and how many
// connections "--conns 2" used on average (transfer returns it).
func benchPairs(b *testing.B, size int64, transfer func(conns string) (time.Duration, int)) {
	b.SetBytes(4 * size)
	var one, two time.Duration
	var used int
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := 0; i < b.N; i++ {
		a1, _ := transfer("1")
		a2, u2 := transfer("2")
		b2, v2 := transfer("2")
		b1, _ := transfer("1")
		one, two, used = one+a1+b1, two+a2+b2, used+u2+v2
		r := (a1 + b1).Seconds() / (a2 + b2).Seconds()
		lo, hi = min(lo, r), max(hi, r)
	}
	moved := float64(2*size) * float64(b.N)
	b.ReportMetric(moved/one.Seconds()/1e6, "conns1-MB/s")
	b.ReportMetric(moved/two.Seconds()/1e6, "conns2-MB/s")
	b.ReportMetric(one.Seconds()/two.Seconds(), "x-conns1")
	// The spread of the iterations' own ratios: a difference inside it
	// is the machine's, not the connections'.
	b.ReportMetric(lo, "x-conns1-min")
	b.ReportMetric(hi, "x-conns1-max")
	b.ReportMetric(float64(used)/float64(2*b.N), "conns2-used")
}

// BenchmarkCLIConnsRTT is BenchmarkCLIConns over a path with a round trip
// of 20 ms (a relay holds every byte 10 ms each way), negotiated blocks,
// a 64 MiB file: there, one connection's window (about 4 MiB) carries at
// most about 200 MB/s, and a second connection doubles what is in flight.
//
//	go test ./cmd/stepkit -run '^$' -bench CLIConnsRTT -benchtime 2x
func BenchmarkCLIConnsRTT(b *testing.B) {
	if os.Getenv("STEPKIT_BENCH_SIZE") == "" {
		b.Setenv("STEPKIT_BENCH_SIZE", "64MiB")
	}
	fileDir, src, size := benchSource(b)
	root := benchRoots()[0]
	if !root.available() {
		root = benchRoots()[1]
	}
	_, addr, _, _ := startServeProcess(b, root.make(b))
	addr = delayRelay(b, addr, 10*time.Millisecond)
	benchPairOps(b, fileDir, src, size, "rtt", func(conns string) []string {
		return []string{"--server", addr, "--user", "bench", "--conns", conns, "--no-progress"}
	})
}

// delayRelay forwards the TCP connections it accepts to target, holding
// every byte oneWay in each direction: a path with a round trip of
// 2*oneWay, on one machine. It stops with tb.
func delayRelay(tb testing.TB, target string, oneWay time.Duration) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			go delayCopy(s, c, oneWay)
			go delayCopy(c, s, oneWay)
		}
	}()
	return ln.Addr().String()
}

// delayCopy copies src to dst, each piece oneWay after it was read, and
// closes both at the end.
func delayCopy(dst, src net.Conn, oneWay time.Duration) {
	type piece struct {
		b  []byte
		at time.Time
	}
	q := make(chan piece, 4096)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 64<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- piece{b[:n], time.Now().Add(oneWay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for p := range q {
		time.Sleep(time.Until(p.at))
		if _, err := dst.Write(p.b); err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	for range q { // let the reader end
	}
}

// timeCLI runs stepkit with args, which must report a verified transfer
// in JSON, and returns how long it took and over how many connections.
func timeCLI(b *testing.B, dir string, args ...string) (time.Duration, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := stepkitCmd(b, ctx, dir, args...)
	start := time.Now()
	err := p.cmd.Run()
	d := time.Since(start)
	if err != nil {
		b.Fatalf("stepkit %v: %v\n%s%s", args, err, p.stdout.String(), p.stderr)
	}
	var rep struct {
		Verified bool
		Conns    int
	}
	if json.Unmarshal(p.stdout.Bytes(), &rep) != nil || !rep.Verified {
		b.Fatalf("stepkit %v: not verified: %s", args, p.stdout.String())
	}
	return d, rep.Conns
}
