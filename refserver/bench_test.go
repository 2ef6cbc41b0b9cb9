package refserver_test

import (
	"bufio"
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

const benchFileSize = 64 << 20

// limits are the rates a benchmark is compared with, measured in the same
// run: one core hashing MD5, and a raw TCP copy over loopback.
type limits struct {
	md5, tcp float64 // bytes per second
}

var benchBuf = sync.OnceValue(func() []byte { return pattern(benchFileSize, 1) })

func measureMD5() float64 {
	buf := benchBuf()
	h := md5.New()
	start := time.Now()
	for i := 0; i < 2; i++ {
		h.Write(buf)
	}
	return float64(2*len(buf)) / time.Since(start).Seconds()
}

func measureTCP(b *testing.B) float64 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	const total = 512 << 20
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_, err = io.CopyBuffer(io.Discard, c, make([]byte, 64<<10))
		done <- err
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	chunk := benchBuf()[:64<<10]
	start := time.Now()
	for sent := 0; sent < total; sent += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return float64(total) / time.Since(start).Seconds()
}

// measureLimits measures the limits just before a benchmark; the MD5 rate
// is measured again after it (see reportRatios), since the load of the
// machine may change meanwhile.
func measureLimits(b *testing.B) limits {
	b.StopTimer()
	defer b.StartTimer()
	return limits{md5: measureMD5(), tcp: measureTCP(b)}
}

// reportRatios reports the benchmark's rate next to the limits, and as a
// fraction of each.
func reportRatios(b *testing.B, lim limits, bytes int64) {
	rate := float64(bytes) / b.Elapsed().Seconds()
	md5Rate := (lim.md5 + measureMD5()) / 2
	b.ReportMetric(md5Rate/1e6, "md5-MB/s")
	b.ReportMetric(lim.tcp/1e6, "tcp-MB/s")
	b.ReportMetric(rate/md5Rate, "x-md5")
	b.ReportMetric(rate/lim.tcp, "x-tcp")
}

// pipeline sends every frame from a goroutine while the responses are
// read, as a client with requests in flight does.
func pipeline(b *testing.B, c *client, frames func(w *bufio.Writer) error, n int, check func(i int, m *spec.Message)) {
	errc := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(c.nc, 256<<10)
		err := frames(w)
		if err == nil {
			err = w.Flush()
		}
		errc <- err
	}()
	for i := 0; i < n; i++ {
		c.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		m, err := c.r.ReadMessage()
		if err != nil {
			b.Fatal(err)
		}
		if st, _ := m.Status(); st != 200 {
			b.Fatalf("response %d: %s", i, m.JSONString())
		}
		if check != nil {
			check(i, m)
		}
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

// benchRoot is a storage root in memory when the system has one, so that
// the benchmarks measure the server rather than the disk.
func benchRoot(b *testing.B) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "stepkit-bench-")
		if err == nil {
			b.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return b.TempDir()
}

func BenchmarkUpload(b *testing.B) {
	root := benchRoot(b)
	lim := measureLimits(b)
	benchUpload(b, root)
	reportRatios(b, lim, int64(b.N)*benchFileSize)
}

// BenchmarkUploadDisk is BenchmarkUpload with its root on disk, where the
// fsync of each completed file counts; it is compared with the rate of
// writing and fsyncing a file of the same size in the same folder.
func BenchmarkUploadDisk(b *testing.B) {
	root := b.TempDir()
	f, err := os.CreateTemp(root, "disk-rate-")
	if err != nil {
		b.Fatal(err)
	}
	buf := pattern(benchFileSize, 3)
	start := time.Now()
	if _, err := f.Write(buf); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	diskRate := float64(len(buf)) / time.Since(start).Seconds()
	f.Close()
	os.Remove(f.Name())
	lim := measureLimits(b)
	b.ResetTimer()
	benchUpload(b, root)
	reportRatios(b, lim, int64(b.N)*benchFileSize)
	b.ReportMetric(diskRate/1e6, "disk-MB/s")
	b.ReportMetric(float64(int64(b.N)*benchFileSize)/b.Elapsed().Seconds()/diskRate, "x-disk")
}

func benchUpload(b *testing.B, root string) {
	addr, _ := refserver.StartTest(b, refserver.Config{Root: root})
	c := dial(b, addr)
	c.login("bench")
	data := pattern(benchFileSize, 7)
	want := md5hex(data)
	const bs = spec.DefaultBlockSize
	total := (len(data) + bs - 1) / bs
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		key := fmt.Sprintf("f%d", it)
		wantStatus(b, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", key, "size", len(data))), 200)
		var buf []byte
		pipeline(b, c, func(*bufio.Writer) error {
			// Header and JSON, then the block straight from the file's
			// bytes, in one writev: the client copies nothing.
			m := c.authed(spec.OpUpload, spec.TypeFile, "key", key, "block_index", 0)
			for i := 0; i < total; i++ {
				m.Set(spec.FieldBlockIndex, i)
				block := data[i*bs : min((i+1)*bs, len(data))]
				buf, _ = spec.AppendFrame(buf[:0], m)
				binary.BigEndian.PutUint32(buf[4:8], uint32(len(block)))
				bufs := net.Buffers{buf, block}
				if _, err := bufs.WriteTo(c.nc); err != nil {
					return err
				}
			}
			return nil
		}, total, func(i int, m *spec.Message) {
			if i == total-1 {
				if s, _ := m.MD5(); s != want {
					b.Fatalf("md5 %s", s)
				}
			}
		})
		b.StopTimer()
		wantStatus(b, c.do(c.authed(spec.OpDelete, spec.TypeFile, "key", key)), 200)
		b.StartTimer()
	}
	b.StopTimer()
}

func BenchmarkDownload(b *testing.B) {
	addr, _ := refserver.StartTest(b, refserver.Config{Root: benchRoot(b)})
	c := dial(b, addr)
	c.login("bench")
	data := pattern(benchFileSize, 7)
	c.upload("f", data)
	const bs = spec.DefaultBlockSize
	total := (len(data) + bs - 1) / bs
	b.SetBytes(int64(len(data)))
	lim := measureLimits(b)
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		wantStatus(b, c.do(c.authed(spec.OpGet, spec.TypeFile, "key", "f")), 200)
		h := md5.New()
		var buf []byte
		pipeline(b, c, func(w *bufio.Writer) error {
			m := c.authed(spec.OpDownload, spec.TypeFile, "key", "f", "block_index", 0)
			for i := 0; i < total; i++ {
				m.Set(spec.FieldBlockIndex, i)
				buf, _ = spec.AppendFrame(buf[:0], m)
				if _, err := w.Write(buf); err != nil {
					return err
				}
			}
			return nil
		}, total, func(i int, m *spec.Message) {
			if len(m.Binary) != min(bs, len(data)-i*bs) {
				b.Fatalf("block %d: %d bytes", i, len(m.Binary))
			}
			if i == 0 || i == total-1 {
				h.Write(m.Binary)
			}
		})
	}
	b.StopTimer()
	reportRatios(b, lim, int64(b.N)*int64(len(data)))
}
