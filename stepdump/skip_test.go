package stepdump_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/stepkit/stepkit/stepdump"
)

// streamOnly hides every method but Read, so a capture is read from start
// to end whatever it is.
type streamOnly struct{ io.Reader }

// dumpJSON decodes a capture as `stepkit dump --json --summary` shows it.
func dumpJSON(r io.Reader, opts stepdump.Options) (string, *stepdump.Stats, error) {
	var b bytes.Buffer
	js := stepdump.NewJSONWriter(&b)
	coll := &stepdump.Collector{}
	st, err := stepdump.Decode(context.Background(), r, opts, stepdump.Multi{js, coll})
	if err != nil {
		return "", nil, err
	}
	js.Summary(coll.Sorted())
	js.Extracted(st.Extracted)
	if err := js.Flush(); err != nil {
		return "", nil, err
	}
	return b.String(), st, nil
}

// sameWithSkip checks that a capture decodes to the same messages, notes,
// summaries and counts when binary parts are passed over (read at offsets)
// and messages reused as when every byte is read from start to end and
// every message is new.
func sameWithSkip(t *testing.T, name string, b []byte, opts stepdump.Options) {
	t.Helper()
	want, wantSt, wantErr := dumpJSON(streamOnly{bytes.NewReader(b)}, opts)
	// The JSON writer and the collector keep no message: their memory is
	// used again as well.
	opts.SkipBinary, opts.ReuseMessages = true, true
	got, gotSt, gotErr := dumpJSON(bytes.NewReader(b), opts)
	if fmt.Sprint(wantErr) != fmt.Sprint(gotErr) {
		t.Fatalf("%s: error %v, passing over binary parts: %v", name, wantErr, gotErr)
	}
	if want != got {
		t.Fatalf("%s: passing over binary parts changes the output:\n%s", name, firstDiff(want, got))
	}
	if !reflect.DeepEqual(wantSt, gotSt) {
		t.Fatalf("%s: stats %+v, passing over binary parts %+v", name, wantSt, gotSt)
	}
}

func firstDiff(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	from := max(0, i-200)
	return fmt.Sprintf("at byte %d:\n  read whole: %.400s\n  passed over: %.400s", i, a[from:], b[from:])
}

// asPcapng rewrites a pcap capture as pcapng, with options on its blocks.
func asPcapng(t *testing.T, b []byte) []byte {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&out, pcapgo.NgInterface{Name: "lo", LinkType: r.LinkType(), SnapLength: r.Snaplen(), TimestampResolution: 9},
		pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "stepdump test", Comment: "rewritten from pcap"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var opts pcapgo.NgPacketOptions
		if i%3 == 0 {
			opts.Comments = []string{fmt.Sprintf("packet %d", i+1)}
		}
		if err := w.WritePacketWithOptions(ci, data, opts); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestSkipBinarySameOutput decodes every fixture capture, each also
// rewritten as pcapng, both ways: passing over binary parts changes
// nothing a user sees, on clean captures and on damaged ones.
func TestSkipBinarySameOutput(t *testing.T) {
	names, _ := filepath.Glob(filepath.Join(capturesDir, "*.pcap*"))
	if len(names) < 15 {
		t.Fatalf("only %d fixture captures", len(names))
	}
	for _, path := range names {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(path)
		sameWithSkip(t, name, b, stepdump.Options{})
		sameWithSkip(t, name+" (any port)", b, stepdump.Options{AnyPort: true})
		if bytes.HasPrefix(b, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
			continue
		}
		ng := asPcapng(t, b)
		sameWithSkip(t, name+" as pcapng", ng, stepdump.Options{})
		// Cut anywhere: inside a block, a frame's JSON or its binary part.
		for cut := 24; cut < len(ng); cut += 211 {
			sameWithSkip(t, fmt.Sprintf("%s as pcapng cut at %d", name, cut), ng[:cut], stepdump.Options{})
		}
		for cut := 24; cut < len(b); cut += 307 {
			sameWithSkip(t, fmt.Sprintf("%s cut at %d", name, cut), b[:cut], stepdump.Options{})
		}
	}
}

// TestSkipBinaryDamagedCaptures compares the two ways on damaged copies of
// the fixtures: whatever the damage, in a record's header, its options or
// its packet, the same messages, notes and errors come out.
func TestSkipBinaryDamagedCaptures(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	for _, name := range []string{"basic.pcap", "pcapng.pcapng", "charcount.pcap", "loss.pcap"} {
		b, err := os.ReadFile(filepath.Join(capturesDir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, base := range [][]byte{b, asPcapngOrSame(t, b)} {
			for i := 0; i < 120; i++ {
				c, _ := damage(rng, base, 3, 1<<16)
				sameWithSkip(t, fmt.Sprintf("%s damaged (%d)", name, i), c, stepdump.Options{AnyPort: i%2 == 0})
			}
		}
	}
}

func asPcapngOrSame(t *testing.T, b []byte) []byte {
	if bytes.HasPrefix(b, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		return b
	}
	return asPcapng(t, b)
}

// countingReaderAt counts the bytes read from a file.
type countingReaderAt struct {
	*os.File
	n atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.File.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// TestSkipBinaryLeavesBlocksUnread decodes a capture of a 16 MiB upload
// in 20480-byte blocks, pcapng and pcap: passing over binary parts reads a
// small part of the file, and the output is the same.
func TestSkipBinaryLeavesBlocksUnread(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "upload.pcapng")
	size := writeUploadCapture(t, path, 16, 20480)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
	}{{"pcapng", b}, {"pcap", asPcap(t, b)}} {
		p := filepath.Join(dir, "upload."+c.name)
		if err := os.WriteFile(p, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		cr := &countingReaderAt{File: f}
		got, _, err := dumpJSON(struct {
			io.ReaderAt
			io.ReadSeeker
		}{cr, f}, stepdump.Options{SkipBinary: true, ReuseMessages: true})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		want, _, err := dumpJSON(streamOnly{bytes.NewReader(c.data)}, stepdump.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%s: output differs:\n%s", c.name, firstDiff(want, got))
		}
		read := cr.n.Load()
		t.Logf("%s: %d of %d bytes read (%.1f%%)", c.name, read, len(c.data), 100*float64(read)/float64(len(c.data)))
		if read > int64(len(c.data))/5 {
			t.Errorf("%s: %d of %d bytes read passing over binary parts", c.name, read, size)
		}
	}
}

// asPcap rewrites a pcapng capture of one interface as pcap.
func asPcap(t *testing.T, b []byte) []byte {
	t.Helper()
	r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := pcapgo.NewWriterNanos(&out)
	if err := w.WriteFileHeader(262144, r.LinkType()); err != nil {
		t.Fatal(err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}
