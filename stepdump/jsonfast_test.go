package stepdump

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// sameJSON writes every message through both of JSONWriter's paths.
type sameJSON struct {
	t         *testing.T
	fast      *JSONWriter
	n, hand   int
	slow, got bytes.Buffer
}

func (s *sameJSON) Message(m *Message) {
	s.n++
	if len(m.Missing) > 0 {
		return // always written by encoding/json
	}
	b, ok := s.fast.appendMessage(nil, m)
	if !ok {
		return
	}
	s.hand++
	s.slow.Reset()
	slow := NewJSONWriter(&s.slow)
	slow.start = s.fast.start
	slow.encodeMessage(m)
	slow.Flush()
	if !bytes.Equal(b, s.slow.Bytes()) {
		s.t.Errorf("message %d:\nby hand:       %s\nencoding/json: %s", s.n, b, s.slow.Bytes())
	}
}
func (s *sameJSON) CaptureStart(t time.Time) { s.fast.start = t }
func (s *sameJSON) Note(*Note)               {}
func (s *sameJSON) ConnEnd(*Conn)            {}

// TestJSONLineByHandMatchesEncoder: the message lines written by hand are
// those encoding/json writes, for every message of every fixture (odd
// strings, character counts, errors, responses without requests).
func TestJSONLineByHandMatchesEncoder(t *testing.T) {
	paths, err := filepath.Glob("../fixtures/captures/*.pcap*")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	total := 0
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		h := &sameJSON{t: t, fast: NewJSONWriter(&bytes.Buffer{})}
		if _, err := Decode(context.Background(), f, Options{}, h); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		f.Close()
		if h.hand < h.n {
			t.Logf("%s: %d of %d messages left to encoding/json", filepath.Base(p), h.n-h.hand, h.n)
		}
		total += h.hand
	}
	if total < 100 {
		t.Fatalf("only %d messages compared", total)
	}
	for _, s := range []string{"plain", `quote " and \ back`, "tab\there", "é ü 中", "\u2028", "<html>&", "bad \xff utf8"} {
		var w bytes.Buffer
		j := NewJSONWriter(&w)
		_ = j.enc.Encode(s)
		j.Flush()
		if got := appendJSONString(nil, s); string(got)+"\n" != w.String() {
			t.Errorf("%q: by hand %s, encoding/json %s", s, got, w.String())
		}
	}
}

// TestJSONKeyAndStatusCopiedOnlyWhenWrittenAsIs: a key or status message
// copied from the frame as it is must read as encoding/json writes it; one
// with escapes, an empty one or one that is not a string is decoded first.
func TestJSONKeyAndStatusCopiedOnlyWhenWrittenAsIs(t *testing.T) {
	for _, fields := range []string{
		`"key":"plain.bin","status_msg":"Block 3 uploaded"`,
		`"key":"a\u0041\"b","status_msg":"caf\u00e9 <ok> \\ done"`,
		`"key":"","status_msg":""`,
		`"key":7,"status_msg":false`,
		`"key":"tab\there é","status_msg":"del` + "\x7f" + `"`,
	} {
		js := `{"type":"FILE","operation":"UPLOAD","direction":"RESPONSE","status":200,` + fields + `}`
		frame := append([]byte{0, 0, 0, byte(len(js)), 0, 0, 0, 0}, js...)
		msg, _, err := spec.DecodeFrame(frame, spec.Limits{})
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		c := &Conn{ID: 1, Client: netip.MustParseAddrPort("127.0.0.1:40000"), Server: netip.MustParseAddrPort("127.0.0.1:1379")}
		start := time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)
		m := &Message{Packet: 4, Time: start.Add(time.Millisecond), Conn: c, JSONLen: uint32(len(js)), Msg: msg}
		fast := NewJSONWriter(&bytes.Buffer{})
		fast.start = start
		b, ok := fast.appendMessage(nil, m)
		if !ok {
			t.Fatalf("%s: not written by hand", js)
		}
		var slow bytes.Buffer
		w := NewJSONWriter(&slow)
		w.start = start
		w.encodeMessage(m)
		w.Flush()
		if !bytes.Equal(b, slow.Bytes()) {
			t.Errorf("%s:\nby hand:       %s\nencoding/json: %s", js, b, slow.Bytes())
		}
	}
}
