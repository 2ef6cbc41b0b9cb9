package stepdump_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/stepkit/stepkit/internal/reliability"
	"github.com/stepkit/stepkit/spec"
	"github.com/stepkit/stepkit/stepdump"
	"github.com/stepkit/stepkit/stepdump/capgen"
)

// recorder keeps everything a decoding run reports.
type recorder struct {
	msgs  []*stepdump.Message
	notes []*stepdump.Note
	conns []*stepdump.Conn
}

func (r *recorder) Message(m *stepdump.Message) {
	if m.Msg != nil {
		m.Msg = m.Msg.Clone()
	}
	r.msgs = append(r.msgs, m)
}
func (r *recorder) Note(n *stepdump.Note)    { r.notes = append(r.notes, n) }
func (r *recorder) ConnEnd(c *stepdump.Conn) { r.conns = append(r.conns, c) }

func (r *recorder) kinds() map[string]int {
	k := map[string]int{}
	for _, n := range r.notes {
		k[n.Kind]++
	}
	return k
}

func decodeBytes(t *testing.T, b []byte, opts stepdump.Options) (*recorder, *stepdump.Stats, error) {
	t.Helper()
	r := &recorder{}
	st, err := stepdump.Decode(context.Background(), bytes.NewReader(b), opts, r)
	return r, st, err
}

func decodeFile(t *testing.T, name string, opts stepdump.Options) *recorder {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(capturesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := decodeBytes(t, b, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestExtractRebuildsFilesWithMatchingMD5(t *testing.T) {
	want := md5.Sum(capgen.Pattern(10000, 1))
	dir := t.TempDir()
	b, _ := os.ReadFile(filepath.Join(capturesDir, "basic.pcap"))
	r := &recorder{}
	st, err := stepdump.Decode(context.Background(), bytes.NewReader(b), stepdump.Options{ExtractDir: dir}, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Extracted) != 2 {
		t.Fatalf("extracted %d files, want the upload and the download", len(st.Extracted))
	}
	for _, x := range st.Extracted {
		if !x.Verified || x.MD5 != hex.EncodeToString(want[:]) || len(x.Missing) != 0 {
			t.Errorf("%+v: want a verified file with MD5 %x", x, want)
		}
		data, err := os.ReadFile(x.Path)
		if err != nil {
			t.Fatal(err)
		}
		if md5.Sum(data) != want {
			t.Errorf("%s: content MD5 differs", x.Path)
		}
		if rel, err := filepath.Rel(dir, x.Path); err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("%s is outside the extract directory", x.Path)
		}
	}
}

func TestExtractReportsMissingBlocks(t *testing.T) {
	b, _ := os.ReadFile(filepath.Join(capturesDir, "loss.pcap"))
	r := &recorder{}
	st, err := stepdump.Decode(context.Background(), bytes.NewReader(b), stepdump.Options{ExtractDir: t.TempDir()}, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range st.Extracted {
		if x.Verified || len(x.Missing) != 1 || x.Missing[0] != (stepdump.Range{Start: 1, End: 2}) {
			t.Errorf("%s upload=%v: missing %v, verified %v; want block 1 missing", x.Key, x.Upload, x.Missing, x.Verified)
		}
	}
	if r.kinds()[stepdump.NoteBytesLost] != 2 {
		t.Errorf("notes %v: want two lost-bytes notes", r.kinds())
	}
	for _, m := range r.msgs {
		if m.Request == nil && !m.FromClient {
			t.Errorf("response #%d not paired despite the loss", m.Seq)
		}
	}
}

// session writes one capture of a session built by fn.
func session(t *testing.T, link capgen.Link, snaplen int, fn func(s *capgen.Session)) []byte {
	t.Helper()
	c := capgen.NewConn(netip.MustParseAddrPort("10.0.0.2:40001"), netip.MustParseAddrPort("10.0.0.1:1379"),
		time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC), 0)
	s := capgen.NewSession(c, "mallory")
	c.Handshake()
	s.Login()
	fn(s)
	c.Close()
	var b bytes.Buffer
	w, err := capgen.NewWriter(&b, link, false, snaplen)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteAll(c); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestHostileKeyStaysInsideExtractDir: keys come from the wire.
func TestHostileKeyStaysInsideExtractDir(t *testing.T) {
	data := capgen.Pattern(5000, 2)
	keys := []string{"../../escape.txt", "/etc/passwd", "..", ".hidden", "a\\b", "x\x00y", strings.Repeat("k", 300)}
	capture := session(t, capgen.Ethernet, 0, func(s *capgen.Session) {
		for _, k := range keys {
			s.Upload(k, data, 4096)
		}
	})
	dir := t.TempDir()
	r := &recorder{}
	st, err := stepdump.Decode(context.Background(), bytes.NewReader(capture), stepdump.Options{ExtractDir: dir}, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Extracted) != len(keys) {
		t.Fatalf("extracted %d files, want %d", len(st.Extracted), len(keys))
	}
	seen := map[string]bool{}
	for _, x := range st.Extracted {
		rel, err := filepath.Rel(dir, x.Path)
		if err != nil || strings.HasPrefix(rel, "..") || strings.Count(rel, string(filepath.Separator)) != 2 {
			t.Errorf("key %q written to %s, not a single file under %s", x.Key, x.Path, dir)
		}
		if seen[x.Path] {
			t.Errorf("two keys share %s", x.Path)
		}
		seen[x.Path] = true
		if !x.Verified {
			t.Errorf("key %q: not verified", x.Key)
		}
	}
}

func TestNotACapture(t *testing.T) {
	cases := map[string][]byte{
		"empty":    nil,
		"short":    {0xd4, 0xc3},
		"text":     []byte("this is not a capture at all\n"),
		"bad pcap": append([]byte{0xd4, 0xc3, 0xb2, 0xa1}, 1, 2, 3),
		"bad ng":   {0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 1},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := decodeBytes(t, b, stepdump.Options{})
			if err == nil {
				t.Fatal("no error for input that is not a capture")
			}
		})
	}
}

// TestTruncatedCaptureFile cuts a capture file at every few bytes: every
// cut decodes without error, and what is whole before the cut is shown.
func TestTruncatedCaptureFile(t *testing.T) {
	b, _ := os.ReadFile(filepath.Join(capturesDir, "basic.pcap"))
	full, _, err := decodeBytes(t, b, stepdump.Options{})
	if err != nil {
		t.Fatal(err)
	}
	prev := 0
	for cut := 24; cut < len(b); cut += 97 {
		r, _, err := decodeBytes(t, b[:cut], stepdump.Options{})
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if len(r.msgs) < prev-1 {
			t.Fatalf("cut at %d: %d messages, fewer than %d at a shorter cut", cut, len(r.msgs), prev)
		}
		prev = len(r.msgs)
	}
	if prev > len(full.msgs) || len(full.msgs) != 24 {
		t.Fatalf("full capture: %d messages", len(full.msgs))
	}
}

func TestUnsupportedLinkTypeIsReported(t *testing.T) {
	b, _ := os.ReadFile(filepath.Join(capturesDir, "basic.pcap"))
	b = append([]byte(nil), b...)
	b[20] = 147 // LINKTYPE_USER0
	r, _, err := decodeBytes(t, b, stepdump.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.msgs) != 0 || r.kinds()[stepdump.NoteBadPacket] == 0 {
		t.Fatalf("messages %d, notes %v: want packets reported as undecodable", len(r.msgs), r.kinds())
	}
	if !strings.Contains(r.notes[0].Text, "packet 1:") || !strings.Contains(r.notes[0].Text, "unsupported link type") {
		t.Errorf("note %q does not say where and why", r.notes[0].Text)
	}
}

func TestDiagnoses(t *testing.T) {
	r := decodeFile(t, "diagnoses.pcap", stepdump.Options{})
	k := r.kinds()
	for kind, n := range map[string]int{stepdump.NoteBlockSize: 1, stepdump.NoteUnanswered: 1,
		stepdump.NoteOrphanResponse: 1, stepdump.NoteUploadIncomplete: 2} {
		if k[kind] != n {
			t.Errorf("%s: %d notes, want %d (all: %v)", kind, k[kind], n, k)
		}
	}
	// The easter egg answers the EARTH request, not the unanswered one.
	for _, m := range r.msgs {
		if m.Operation() == "3BODY" && (m.Request == nil || m.Request.Msg.Direction() != spec.DirEarth) {
			t.Errorf("3BODY paired with %v", m.Request)
		}
	}
	cc := decodeFile(t, "charcount.pcap", stepdump.Options{})
	if cc.kinds()[stepdump.NoteCharCount] != 7 {
		t.Errorf("charcount.pcap: %v, want 7 char-count notes (every frame with non-ASCII JSON)", cc.kinds())
	}
	for _, m := range cc.msgs {
		if m.Msg == nil {
			t.Errorf("charcount.pcap: message #%d not recovered: %v", m.Seq, m.Err)
		}
	}
}

func TestPairingAndLatency(t *testing.T) {
	r := decodeFile(t, "multi.pcap", stepdump.Options{})
	if len(r.conns) != 2 {
		t.Fatalf("%d connections, want 2", len(r.conns))
	}
	for _, m := range r.msgs {
		if m.FromClient {
			continue
		}
		if m.Request == nil {
			t.Fatalf("c%d response #%d unpaired", m.Conn.ID, m.Seq)
		}
		if m.Request.Conn != m.Conn || m.Latency <= 0 || m.Request.Operation() != m.Operation() {
			t.Errorf("c%d response #%d paired with #%d (%s), latency %v", m.Conn.ID, m.Seq, m.Request.Seq, m.Request.Operation(), m.Latency)
		}
		if k, err := m.Msg.Key(); err == nil {
			if rk, _ := m.Request.Msg.Key(); rk != k {
				t.Errorf("response for key %q paired with request for %q", k, rk)
			}
		}
	}
	s := r.conns[1].Summary
	if s.User != "grace" || s.Requests != 9 || s.Responses != 9 || s.Unanswered != 0 || len(s.Files) != 1 || s.Files[0].Bytes != 9000 {
		t.Errorf("c2 summary %+v", s)
	}
}

// TestPortHeuristic: without options, STEP is found on port 1379 and on
// any other port whose connections start like STEP, and the other ports
// are named; a port given alone restricts decoding to it; a capture
// without STEP says so.
func TestPortHeuristic(t *testing.T) {
	on := decodeFile(t, "anyport.pcap", stepdump.Options{})
	if len(on.msgs) != 24 || len(on.conns) != 1 {
		t.Fatalf("%d messages, %d connections; want 24 in 1 (the HTTP one ignored)", len(on.msgs), len(on.conns))
	}
	if on.conns[0].Server.Port() != 8000 {
		t.Errorf("server is %v", on.conns[0].Server)
	}
	named := false
	for _, n := range on.notes {
		if n.Kind == stepdump.NoteOtherPort && strings.Contains(n.Text, "port 8000 (1 connection)") {
			named = true
		}
	}
	if !named || on.kinds()[stepdump.NoteNoSTEP] != 0 {
		t.Errorf("port 8000 not named: %v", on.kinds())
	}
	if k := decodeFile(t, "basic.pcap", stepdump.Options{}).kinds(); k[stepdump.NoteOtherPort] != 0 {
		t.Errorf("a capture on port 1379 alone names other ports: %v", k)
	}

	only := decodeFile(t, "anyport.pcap", stepdump.Options{OnlyPort: true})
	if len(only.msgs) != 0 || only.kinds()[stepdump.NoteNoSTEP] != 1 {
		t.Errorf("--port 1379: %d messages, notes %v", len(only.msgs), only.kinds())
	}
	eight := decodeFile(t, "anyport.pcap", stepdump.Options{Port: 8000, OnlyPort: true})
	if len(eight.msgs) != 24 || eight.kinds()[stepdump.NoteOtherPort] != 0 {
		t.Errorf("--port 8000: %d messages, notes %v", len(eight.msgs), eight.kinds())
	}
	if other := decodeFile(t, "basic.pcap", stepdump.Options{Port: 9999, OnlyPort: true}); len(other.msgs) != 0 {
		t.Errorf("--port 9999 still decodes port 1379")
	}

	// No STEP anywhere: HTTP, and a stream of bytes that never frames.
	web := capgen.NewConn(netip.MustParseAddrPort("10.0.0.2:40011"), netip.MustParseAddrPort("10.0.0.1:80"), time.Unix(1e9, 0), 0)
	web.Handshake()
	web.Write(true, []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"))
	web.Write(false, []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"))
	web.Close()
	junk := capgen.NewConn(netip.MustParseAddrPort("10.0.0.2:40012"), netip.MustParseAddrPort("10.0.0.1:5000"), time.Unix(1e9, 0), 0)
	junk.Handshake()
	junk.Write(true, capgen.Pattern(5000, 9))
	junk.Close()
	var buf bytes.Buffer
	w, err := capgen.NewWriter(&buf, capgen.Ethernet, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteAll(web, junk); err != nil {
		t.Fatal(err)
	}
	none, _, err := decodeBytes(t, buf.Bytes(), stepdump.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(none.msgs) != 0 || len(none.notes) != 1 || none.notes[0].Kind != stepdump.NoteNoSTEP ||
		!strings.Contains(none.notes[0].Text, "none of the capture's 2 TCP connections") {
		t.Errorf("no STEP: %d messages, notes %+v", len(none.msgs), none.notes)
	}
	for _, r := range []reliability.Row{
		{Input: "STEP on port 8000 next to HTTP on port 80, no flags", Outcome: "port 8000 decoded (24 messages) and named; HTTP left alone"},
		{Input: "the same capture with --port 1379", Outcome: "nothing decoded; says no STEP is on port 1379 and how to look on every port"},
		{Input: "a capture of HTTP and random bytes, no STEP", Outcome: "says that none of its 2 TCP connections is STEP"},
	} {
		r.Area, r.Times, r.Lost = "decoder", 1, "nothing"
		reliability.Record(t, r)
	}
}

func TestMidStreamAndSnaplen(t *testing.T) {
	r := decodeFile(t, "midstream.pcap", stepdump.Options{})
	if r.kinds()[stepdump.NoteMidStream] != 1 || r.kinds()[stepdump.NoteUnanswered] != 0 {
		t.Errorf("midstream notes %v", r.kinds())
	}
	if len(r.msgs) == 0 || r.msgs[len(r.msgs)-1].Operation() != "BYE" {
		t.Errorf("midstream: did not resynchronise up to the BYE")
	}
	s := decodeFile(t, "snaplen.pcap", stepdump.Options{})
	truncated := 0
	for _, m := range s.msgs {
		if m.Msg == nil {
			t.Errorf("snaplen: message #%d JSON lost", m.Seq)
		}
		if len(m.Missing) > 0 {
			truncated++
		}
	}
	if truncated != 3 || s.kinds()[stepdump.NoteSnaplen] == 0 {
		t.Errorf("snaplen: %d messages with missing bytes, notes %v", truncated, s.kinds())
	}
}

// FuzzDecode feeds damaged captures: nothing may panic or hang, and passing
// over binary parts at offsets with messages reused decodes them as reading
// every byte does.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"basic.pcap", "charcount.pcap", "sll2.pcap", "pcapng.pcapng", "null.pcap"} {
		b, err := os.ReadFile(filepath.Join(capturesDir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(0), byte(0))
		f.Add(b, uint16(len(b)/3), byte(0xff))
	}
	f.Fuzz(func(t *testing.T, b []byte, at uint16, x byte) {
		if len(b) > 0 {
			b = append([]byte(nil), b...)
			b[int(at)%len(b)] ^= x
		}
		sameWithSkip(t, "the input", b, stepdump.Options{AnyPort: at%2 == 0})
	})
}

// TestPcapngMixedLinkTypes: a pcapng file may hold interfaces of different
// link types; each packet is read with its own interface's.
func TestPcapngMixedLinkTypes(t *testing.T) {
	read := func(name string) ([][]byte, []gopacket.CaptureInfo) {
		f, err := os.Open(filepath.Join(capturesDir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r, err := pcapgo.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		var data [][]byte
		var cis []gopacket.CaptureInfo
		for {
			d, ci, err := r.ReadPacketData()
			if err != nil {
				return data, cis
			}
			data, cis = append(data, d), append(cis, ci)
		}
	}
	// The same session twice, on two interfaces of two link types, the
	// second a second later (a new connection on the same ports).
	ethData, ethCI := read("sll.pcap")
	sllData, sllCI := read("sll2.pcap")
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&b, pcapgo.NgInterface{Name: "cooked1", LinkType: layers.LinkTypeLinuxSLL, SnapLength: 262144},
		pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := w.AddInterface(pcapgo.NgInterface{Name: "cooked2", LinkType: layers.LinkTypeLinuxSLL2, SnapLength: 262144})
	if err != nil {
		t.Fatal(err)
	}
	for i := range ethData {
		if err := w.WritePacket(ethCI[i], ethData[i]); err != nil {
			t.Fatal(err)
		}
	}
	for i := range sllData {
		ci := sllCI[i]
		ci.InterfaceIndex = id
		ci.Timestamp = ci.Timestamp.Add(time.Second)
		if err := w.WritePacket(ci, sllData[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r, _, err := decodeBytes(t, b.Bytes(), stepdump.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.msgs) != 12 || len(r.conns) != 2 || r.kinds()[stepdump.NoteBadPacket] != 0 {
		t.Fatalf("%d messages in %d connections, notes %v; want 12 in 2, none bad", len(r.msgs), len(r.conns), r.kinds())
	}
}

// TestExtensionRefusalsWithoutRequest: ERROR/413 after a client header over
// the limits, and ERROR/503 greeting a connection over the server's limit,
// answer no request frame (STEP.md section 12, EXT-3). They are explained
// as such, not reported as responses nobody asked for.
func TestExtensionRefusalsWithoutRequest(t *testing.T) {
	oversized := session(t, capgen.Ethernet, 0, func(s *capgen.Session) {
		h := make([]byte, spec.HeaderLen)
		h[0] = 0x7f // a JSON length of 2 GiB
		s.Write(true, h)
		s.Respond(spec.NewResponse(spec.OpError, spec.TypeError, spec.StatusTooLarge, "Frame too large."))
	})
	c := capgen.NewConn(netip.MustParseAddrPort("10.0.0.3:40002"), netip.MustParseAddrPort("10.0.0.1:1379"),
		time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC), 0)
	c.Handshake()
	c.Write(false, capgen.Frame(spec.NewResponse(spec.OpError, spec.TypeError, spec.StatusServiceBusy, "Server busy.")))
	c.Close()
	var busy bytes.Buffer
	w, err := capgen.NewWriter(&busy, capgen.Ethernet, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteAll(c); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		capture []byte
		want    string
	}{
		"413": {oversized, "refuses the client's oversized header"},
		"503": {busy.Bytes(), "at its connection limit"},
	} {
		r, _, err := decodeBytes(t, tc.capture, stepdump.Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		found := false
		for _, n := range r.notes {
			if n.Kind == stepdump.NoteOrphanResponse && n.Severity == stepdump.Error {
				t.Errorf("%s: %q", name, n.Text)
			}
			if strings.Contains(n.Text, tc.want) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no note saying %q: %v", name, tc.want, r.kinds())
		}
	}
}

// firstPackets returns a capture of the first n packets of a fixture: a
// capture stopped while a transfer goes on.
func firstPackets(t *testing.T, name string, n int) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join(capturesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(r.Snaplen(), r.LinkType()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// TestCaptureCutMidTransfer: a capture that ends while an upload goes on,
// inside a block or between blocks, is reported as cut where it ends, not
// as an upload that never completed nor as a block of the wrong size.
func TestCaptureCutMidTransfer(t *testing.T) {
	r := decodeFile(t, "cutoff.pcap", stepdump.Options{})
	k := r.kinds()
	if k[stepdump.NoteCaptureCut] != 1 || k[stepdump.NoteUploadIncomplete] != 0 || k[stepdump.NoteBlockSize] != 0 || k[stepdump.NoteTruncatedFrame] != 1 {
		t.Errorf("cut inside a block: notes %v", k)
	}
	for _, n := range r.notes {
		if n.Kind == stepdump.NoteCaptureCut && (!strings.Contains(n.Text, "at packet 22") ||
			!strings.Contains(n.Text, "blocks cut short by the end of the capture: 1") || n.Severity != stepdump.Warning) {
			t.Errorf("cut note: %s %s", n.Severity, n.Text)
		}
	}
	for cut := 10; cut <= 18; cut++ {
		r, _, err := decodeBytes(t, firstPackets(t, "real-transfer.pcap", cut), stepdump.Options{})
		if err != nil {
			t.Fatal(err)
		}
		k := r.kinds()
		if k[stepdump.NoteCaptureCut] != 1 || k[stepdump.NoteUploadIncomplete] != 0 || k[stepdump.NoteBlockSize] != 0 {
			t.Errorf("real transfer cut after packet %d: notes %v", cut, k)
		}
	}
	// A connection that closed with its upload unfinished is still one.
	if k := decodeFile(t, "diagnoses.pcap", stepdump.Options{}).kinds(); k[stepdump.NoteUploadIncomplete] != 2 || k[stepdump.NoteCaptureCut] != 0 {
		t.Errorf("diagnoses: %v", k)
	}
	reliability.Record(t, reliability.Row{Area: "decoder", Times: 1 + 9,
		Input:   "a capture that ends inside an upload's block, and a recorded upload cut after each of its packets 10 to 18",
		Outcome: "reported as a capture cut during the transfer, with the packet and the blocks cut or not yet sent; no wrong block size, no upload blamed",
		Lost:    "nothing"})
}
