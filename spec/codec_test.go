package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

func frameOf(t testing.TB, m *Message) []byte {
	t.Helper()
	b, err := EncodeFrame(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func byeFrame(t testing.TB) []byte { return frameOf(t, NewRequest(OpBye, TypeAuth)) }

// TestReaderErrors is the table of every typed error the Reader returns:
// what it is, whether the stream is still in step after it (Resumable), and
// that a resumable error really leaves the next frame readable.
func TestReaderErrors(t *testing.T) {
	bye := byeFrame(t)
	lim := Limits{MaxJSON: 64, MaxBinary: 16}
	cases := []struct {
		name      string
		stream    []byte
		want      error
		resumable bool
	}{
		{"truncated header, 1 byte", []byte{0}, ErrTruncatedHeader, false},
		{"truncated header, 7 bytes", bye[:7], ErrTruncatedHeader, false},
		{"truncated body, in the JSON", bye[:12], ErrTruncatedBody, false},
		{"truncated body, in the binary", RawFrame([]byte(`{}`), []byte("0123456789"))[:14], ErrTruncatedBody, false},
		{"JSON too large", append(Header(65, 0), bytes.Repeat([]byte(" "), 65)...), ErrJSONTooLarge, false},
		{"JSON too large, 4 GiB", Header(0xffffffff, 0), ErrJSONTooLarge, false},
		{"binary too large", append(Header(2, 17), make([]byte, 19)...), ErrBinaryTooLarge, false},
		{"binary too large, 4 GiB", Header(2, 0xffffffff), ErrBinaryTooLarge, false},
		{"not JSON", RawFrame([]byte(`{"operation":`), nil), ErrNotJSON, true},
		{"not JSON, empty", RawFrame(nil, []byte("bin")), ErrNotJSON, true},
		{"not JSON, two objects", RawFrame([]byte(`{}{}`), nil), ErrNotJSON, true},
		{"not JSON, single quotes", RawFrame([]byte(`{'a': 1}`), nil), ErrNotJSON, true},
		{"not JSON, non-ASCII but no character-count", RawFrame([]byte(`{"key": "é"`), nil), ErrNotJSON, true},
		{"not an object: array", RawFrame([]byte(`[1,2]`), nil), ErrNotObject, true},
		{"not an object: null", RawFrame([]byte(` null `), nil), ErrNotObject, true},
		{"not an object: number", RawFrame([]byte(`42`), nil), ErrNotObject, true},
		{"invalid UTF-8 in a value", RawFrame([]byte("{\"key\":\"\xc3\x28\"}"), nil), ErrInvalidUTF8, true},
		{"invalid UTF-8 in a name", RawFrame([]byte("{\"\xff\":1}"), nil), ErrInvalidUTF8, true},
		{"invalid UTF-8: surrogate bytes", RawFrame([]byte("{\"k\":\"\xed\xa0\x80\"}"), nil), ErrInvalidUTF8, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stream := c.stream
			if c.resumable {
				stream = append(append([]byte(nil), stream...), bye...)
			}
			r := NewReader(bytes.NewReader(stream), lim)
			_, err := r.ReadMessage()
			var fe *FrameError
			if !errors.As(err, &fe) || !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if fe.Offset != 0 {
				t.Errorf("Offset = %d", fe.Offset)
			}
			if fe.Resumable() != c.resumable {
				t.Errorf("Resumable = %v, want %v", fe.Resumable(), c.resumable)
			}
			if fe.Error() == "" || !strings.Contains(fe.Error(), c.want.Error()) {
				t.Errorf("message %q does not say %q", fe.Error(), c.want)
			}
			if c.resumable {
				m, err := r.ReadMessage()
				if err != nil || m.Operation() != OpBye {
					t.Fatalf("frame after a resumable error: %v %v", m, err)
				}
			}
			// DecodeFrame reports the same error for the same bytes.
			_, _, derr := DecodeFrame(c.stream, lim)
			if !errors.Is(derr, c.want) {
				t.Errorf("DecodeFrame: %v, want %v", derr, c.want)
			}
		})
	}
}

func TestReaderCleanEOF(t *testing.T) {
	r := NewReader(bytes.NewReader(nil), Limits{})
	if _, err := r.ReadMessage(); err != io.EOF {
		t.Fatalf("empty stream: %v, want io.EOF", err)
	}
	r = NewReader(bytes.NewReader(byeFrame(t)), Limits{})
	if _, err := r.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadMessage(); err != io.EOF {
		t.Fatalf("after a frame: %v, want io.EOF", err)
	}
}

// TestReaderErrorsCarryDetails checks the fields a caller reports from.
func TestReaderErrorsCarryDetails(t *testing.T) {
	bye := byeFrame(t)
	stream := append(append([]byte(nil), bye...), Header(1000, 7)...)
	r := NewReader(bytes.NewReader(stream), Limits{MaxJSON: 999})
	if _, err := r.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	_, err := r.ReadMessage()
	var fe *FrameError
	if !errors.As(err, &fe) {
		t.Fatal(err)
	}
	if fe.Offset != int64(len(bye)) || fe.JSONLen != 1000 || fe.BinaryLen != 7 || fe.Limit != 999 {
		t.Errorf("got %+v", fe)
	}
	if !strings.Contains(fe.Error(), "1000 > 999") {
		t.Errorf("message %q", fe.Error())
	}
}

// greedyReader serves a header and then fails the test if asked for any of
// the body it announced.
type greedyReader struct {
	t      *testing.T
	header []byte
	asked  bool
}

func (g *greedyReader) Read(p []byte) (int, error) {
	if len(g.header) > 0 {
		n := copy(p, g.header)
		g.header = g.header[n:]
		return n, nil
	}
	g.asked = true
	return 0, errors.New("the body of an oversized frame was read")
}

// TestLimitsCheckedBeforeReading proves FRAME-10: an oversized header is
// refused before the Reader asks the stream for the body, and before it
// allocates memory for it.
func TestLimitsCheckedBeforeReading(t *testing.T) {
	for _, h := range [][]byte{Header(0xffffffff, 0), Header(2, 0xffffffff), Header(DefaultMaxJSON+1, 0)} {
		g := &greedyReader{t: t, header: h}
		_, err := NewReader(g, Limits{}).ReadMessage()
		if !errors.Is(err, ErrJSONTooLarge) && !errors.Is(err, ErrBinaryTooLarge) {
			t.Fatalf("err = %v", err)
		}
		if g.asked {
			t.Errorf("header % x: the Reader asked for the body", h)
		}
	}

	// A stream of nothing but 4 GiB headers: each read fails after the
	// header, with the error as the only allocation.
	r := NewReader(&loopReader{data: Header(0xffffffff, 0xffffffff)}, Limits{})
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := r.ReadMessage(); !errors.Is(err, ErrJSONTooLarge) {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("%v allocations per oversized header, want at most 1 (the error)", allocs)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		r.ReadMessage()
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 100*1024 {
		t.Errorf("100 oversized headers allocated %d bytes", d)
	}
}

// TestAnnouncedBodyNotPreallocated: a frame within the limits whose body
// never comes costs memory for what arrived, not for what was announced.
func TestAnnouncedBodyNotPreallocated(t *testing.T) {
	lim := Limits{MaxJSON: 1 << 20, MaxBinary: 64 << 20}
	stream := append(Header(2, 64<<20), `{}`...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := NewReader(bytes.NewReader(stream), lim).ReadMessage()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTruncatedBody) {
		t.Fatalf("err = %v", err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Errorf("a 64 MiB announcement with 2 bytes sent allocated %d bytes", d)
	}
}

// TestLargeBodyGrowsToFit reads a body larger than the growth step, then a
// small frame, on the same Reader.
func TestLargeBodyGrowsToFit(t *testing.T) {
	m := NewRequest(OpUpload, TypeFile).Set(FieldKey, "k").Set(FieldBlockIndex, 0)
	m.Binary = bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640000 bytes
	stream := append(frameOf(t, m), byeFrame(t)...)
	r := NewReader(bytes.NewReader(stream), Limits{})
	got, err := r.ReadMessage()
	if err != nil || !bytes.Equal(got.Binary, m.Binary) {
		t.Fatalf("large frame: %v", err)
	}
	if got, err := r.ReadMessage(); err != nil || got.Operation() != OpBye {
		t.Fatalf("next frame: %v", err)
	}
}

// TestCharCountLength covers the reference's framing bug: the JSON length
// counts characters. The Reader recovers the message, consumes the whole
// frame and stays in step; DecodeFrame does the same in memory.
func TestCharCountLength(t *testing.T) {
	bye := byeFrame(t)
	mk := func(text string, bin string) []byte {
		f := append(Header(uint32(len([]rune(text))), uint32(len(bin))), text...)
		return append(f, bin...)
	}
	cases := []struct {
		name, text, bin string
	}{
		{"two-byte characters", `{"operation":"SAVE","key":"café"}`, ""},
		{"three-byte characters, binary part", `{"operation":"UPLOAD","key":"报告.pdf","block_index":0}`, "hello"},
		{"four-byte characters", `{"key":"🎉🎉🎉"}`, ""},
		{"binary longer than the shortfall", `{"k":"é"}`, strings.Repeat("x", 100)},
		{"non-ASCII in the last character", `{"é":1}`, "z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			frame := mk(c.text, c.bin)
			r := NewReader(bytes.NewReader(append(append([]byte(nil), frame...), bye...)), Limits{})
			_, err := r.ReadMessage()
			var fe *FrameError
			if !errors.As(err, &fe) || !errors.Is(err, ErrCharCountLength) {
				t.Fatalf("err = %v", err)
			}
			if !fe.Resumable() || fe.Recovered == nil {
				t.Fatal("not recovered")
			}
			want, _ := ParseMessage([]byte(c.text))
			if fe.Recovered.JSONString() != want.JSONString() || string(fe.Recovered.Binary) != c.bin {
				t.Errorf("recovered %s %q", fe.Recovered.JSONString(), fe.Recovered.Binary)
			}
			if fe.ActualJSONLen != len(c.text) {
				t.Errorf("ActualJSONLen = %d, want %d", fe.ActualJSONLen, len(c.text))
			}
			if r.Offset() != int64(len(frame)) {
				t.Errorf("Offset after the frame = %d, want %d", r.Offset(), len(frame))
			}
			if m, err := r.ReadMessage(); err != nil || m.Operation() != OpBye {
				t.Fatalf("stream out of step: %v %v", m, err)
			}
			_, n, err := DecodeFrame(append(append([]byte(nil), frame...), bye...), Limits{})
			if !errors.Is(err, ErrCharCountLength) || n != len(frame) {
				t.Errorf("DecodeFrame: n=%d want %d, err=%v", n, len(frame), err)
			}
		})
	}
}

// TestCharCountNotRecoveredPastLimit: the recovered text must fit the JSON
// limit too; otherwise the frame is reported as not JSON.
func TestCharCountNotRecoveredPastLimit(t *testing.T) {
	text := `{"k":"` + strings.Repeat("é", 30) + `"}`
	chars := len([]rune(text))
	frame := append(Header(uint32(chars), 0), text...)
	_, err := NewReader(bytes.NewReader(frame), Limits{MaxJSON: uint32(chars) + 5}).ReadMessage()
	if errors.Is(err, ErrCharCountLength) || !errors.Is(err, ErrNotJSON) {
		t.Fatalf("err = %v, want ErrNotJSON", err)
	}
	_, _, err = DecodeFrame(frame, Limits{MaxJSON: uint32(chars) + 5})
	if !errors.Is(err, ErrNotJSON) {
		t.Fatalf("DecodeFrame: %v", err)
	}
}

// TestCharCountTruncated: a character-count frame whose tail never comes.
func TestCharCountTruncated(t *testing.T) {
	text := `{"key":"报告报告"}`
	frame := append(Header(uint32(len([]rune(text))), 4), text...) // binary never sent
	_, err := NewReader(bytes.NewReader(frame), Limits{}).ReadMessage()
	if errors.Is(err, ErrCharCountLength) {
		t.Fatalf("recovered a frame whose binary part never came")
	}
	if !errors.Is(err, ErrTruncatedBody) {
		t.Fatalf("err = %v, want ErrTruncatedBody", err)
	}
	// In memory, the same bytes mean "need more data": nothing consumed.
	_, n, err := DecodeFrame(frame, Limits{})
	if !errors.Is(err, ErrTruncatedBody) || n != 0 {
		t.Fatalf("DecodeFrame: n=%d err=%v, want ErrTruncatedBody and 0", n, err)
	}
	_, n, err = DecodeFrame(append(frame, "bin!"...), Limits{})
	if !errors.Is(err, ErrCharCountLength) || n != len(frame)+4 {
		t.Fatalf("DecodeFrame with the binary: n=%d err=%v", n, err)
	}
}

func TestDecodeFrame(t *testing.T) {
	bye := byeFrame(t)
	two := append(append([]byte(nil), bye...), bye...)
	m, n, err := DecodeFrame(two, Limits{})
	if err != nil || n != len(bye) || m.Operation() != OpBye {
		t.Fatalf("first of two: n=%d err=%v", n, err)
	}
	m, n2, err := DecodeFrame(two[n:], Limits{})
	if err != nil || n2 != len(bye) || m.Operation() != OpBye {
		t.Fatalf("second of two: n=%d err=%v", n2, err)
	}
	// Need more data: a partial frame consumes nothing.
	for i := range len(bye) {
		_, n, err := DecodeFrame(bye[:i], Limits{})
		want := ErrTruncatedBody
		if i < HeaderLen {
			want = ErrTruncatedHeader
		}
		if !errors.Is(err, want) || n != 0 {
			t.Fatalf("%d bytes: n=%d err=%v, want %v", i, n, err, want)
		}
	}
	// A malformed but complete frame is skipped whole.
	bad := RawFrame([]byte(`nope`), []byte("bin"))
	_, n, err = DecodeFrame(append(bad, bye...), Limits{})
	if !errors.Is(err, ErrNotJSON) || n != len(bad) {
		t.Fatalf("malformed frame: n=%d err=%v", n, err)
	}
	// Binary aliases the input.
	up := NewRequest(OpUpload, TypeFile)
	up.Binary = []byte("abc")
	f := frameOf(t, up)
	m, _, _ = DecodeFrame(f, Limits{})
	f[len(f)-1] = 'X'
	if string(m.Binary) != "abX" {
		t.Errorf("Binary does not alias the input: %q", m.Binary)
	}
}

// TestWriterByteLengths: the Writer counts bytes (FRAME-2), and writes each
// frame with one Write call (FRAME-6).
func TestWriterByteLengths(t *testing.T) {
	m := NewResponse(OpSave, TypeFile, StatusOK, "This is the upload plan.").Set(FieldKey, "报告 🎉.pdf")
	m.Binary = []byte{0, 1, 2}
	var w countingWriter
	if err := NewWriter(&w).WriteMessage(m); err != nil {
		t.Fatal(err)
	}
	if w.writes != 1 {
		t.Errorf("%d writes, want 1", w.writes)
	}
	text := m.AppendJSON(nil)
	want := append(append(Header(uint32(len(text)), 3), text...), 0, 1, 2)
	if !bytes.Equal(w.buf.Bytes(), want) {
		t.Errorf("frame\n got % x\nwant % x", w.buf.Bytes(), want)
	}
	if len(text) == len([]rune(string(text))) {
		t.Fatal("test text has no multi-byte characters")
	}
	// Writing again reuses the buffer.
	wr := NewWriter(io.Discard)
	wr.WriteMessage(m)
	if a := testing.AllocsPerRun(50, func() { wr.WriteMessage(m) }); a != 0 {
		t.Errorf("%v allocations per write", a)
	}
	// A failing stream is reported with context.
	err := NewWriter(failWriter{}).WriteMessage(m)
	if err == nil || !strings.Contains(err.Error(), "write step frame") || !errors.Is(err, errFail) {
		t.Errorf("err = %v", err)
	}
}

type countingWriter struct {
	buf    bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) { c.writes++; return c.buf.Write(p) }

var errFail = errors.New("broken pipe")

type failWriter struct{}

func (failWriter) Write(p []byte) (int, error) { return 0, errFail }

func TestAccessors(t *testing.T) {
	m, err := ParseMessage([]byte(`{
		"s": "text", "esc": "a\"b\u00e9\n", "lone": "\ud800", "num": 7, "neg": -3,
		"float": 1.5, "exp": 1e3, "big": 9223372036854775807, "huge": 9223372036854775808,
		"huger": 1234567890123456789012345678901234567890123456789, "negzero": -0, "strnum": "5",
		"t": true, "n": null, "arr": [1], "obj": {"a": 1}, "status": 2147483648
	}`))
	if err != nil {
		t.Fatal(err)
	}
	strs := []struct {
		field, want string
		err         bool
	}{
		{"s", "text", false}, {"esc", "a\"bé\n", false}, {"lone", "\uFFFD", false},
		{"num", "", true}, {"t", "", true}, {"n", "", true}, {"arr", "", true}, {"obj", "", true},
	}
	for _, c := range strs {
		got, err := m.String(c.field)
		var fte *FieldTypeError
		if c.err != errors.As(err, &fte) || got != c.want {
			t.Errorf("String(%q) = %q, %v", c.field, got, err)
		}
		if c.err && (fte.Field != c.field || fte.Want != "string") {
			t.Errorf("String(%q) error %+v", c.field, fte)
		}
	}
	ints := []struct {
		field string
		want  int64
		err   bool
	}{
		{"num", 7, false}, {"neg", -3, false}, {"big", 9223372036854775807, false}, {"negzero", 0, false},
		{"float", 0, true}, {"exp", 0, true}, {"huge", 0, true}, {"huger", 0, true},
		{"strnum", 0, true}, {"t", 0, true}, {"n", 0, true}, {"s", 0, true},
	}
	for _, c := range ints {
		got, err := m.Int(c.field)
		var fte *FieldTypeError
		if c.err != errors.As(err, &fte) || got != c.want {
			t.Errorf("Int(%q) = %d, %v", c.field, got, err)
		}
		if c.err && fte.Want != "integer" {
			t.Errorf("Int(%q) error wants %q", c.field, fte.Want)
		}
	}
	if _, err := m.NonNegInt("neg"); err == nil || !strings.Contains(err.Error(), "non-negative") {
		t.Errorf("NonNegInt(neg) = %v", err)
	}
	if n, err := m.NonNegInt("num"); n != 7 || err != nil {
		t.Errorf("NonNegInt(num) = %d %v", n, err)
	}
	for _, f := range []string{"absent"} {
		if _, err := m.String(f); err != ErrFieldMissing {
			t.Errorf("String(absent) = %v", err)
		}
		if _, err := m.Int(f); err != ErrFieldMissing {
			t.Errorf("Int(absent) = %v", err)
		}
		if _, err := m.NonNegInt(f); err != ErrFieldMissing {
			t.Errorf("NonNegInt(absent) = %v", err)
		}
	}
	if _, ok := m.Status(); ok {
		t.Error("Status() accepted 2^31")
	}
	var fte *FieldTypeError
	_, err = m.Int("huger")
	if errors.As(err, &fte); !strings.Contains(fte.Error(), "...") || !strings.Contains(fte.Error(), "an integer") {
		t.Errorf("long value not shortened: %v", fte)
	}
}

func TestTypedFieldAccessors(t *testing.T) {
	m := NewRequest(OpUpload, TypeFile).
		Set(FieldKey, "k").Set(FieldToken, "t").Set(FieldUsername, "u").Set(FieldPassword, "p").
		Set(FieldMD5, "d41d8cd98f00b204e9800998ecf8427e").Set(FieldSize, 10).Set(FieldBlockIndex, -1).
		Set(FieldBlockSize, 20480).Set(FieldTotalBlock, 1).Set(FieldStatus, StatusBlockSize).Set(FieldStatusMsg, "m")
	strs := map[string]func() (string, error){"k": m.Key, "t": m.Token, "u": m.Username, "p": m.Password, "d41d8cd98f00b204e9800998ecf8427e": m.MD5}
	for want, f := range strs {
		if got, err := f(); got != want || err != nil {
			t.Errorf("got %q %v, want %q", got, err, want)
		}
	}
	if n, err := m.Size(); n != 10 || err != nil {
		t.Errorf("Size = %d %v", n, err)
	}
	if n, err := m.BlockIndex(); n != -1 || err != nil {
		t.Errorf("BlockIndex = %d %v (a negative index is returned as sent)", n, err)
	}
	if n, _ := m.BlockSize(); n != 20480 {
		t.Errorf("BlockSize = %d", n)
	}
	if n, _ := m.TotalBlock(); n != 1 {
		t.Errorf("TotalBlock = %d", n)
	}
	if s, ok := m.Status(); !ok || s != StatusBlockSize {
		t.Errorf("Status = %d %v", s, ok)
	}
	if m.Operation() != OpUpload || m.Direction() != DirRequest || m.Type() != TypeFile || m.StatusMsg() != "m" {
		t.Errorf("operation/direction/type/status_msg: %s", m.JSONString())
	}
	m.Set(FieldSize, -5)
	if _, err := m.Size(); err == nil {
		t.Error("Size accepted -5")
	}
	m.Set(FieldOperation, 5)
	if m.Operation() != "" {
		t.Errorf("numeric operation read as %q", m.Operation())
	}
}

// TestFieldOrderAndRawValues: unknown fields are kept in their order and
// bytes, and a message re-encodes to exactly what it was parsed from when
// that was compact.
func TestFieldOrderAndRawValues(t *testing.T) {
	text := `{"z":1,"operation":"SAVE","nested":{"b":[1, 2.50, "}"],"a":null},"é":"ü","n":1.0e2,"s":"\u00e9\/"}`
	m, err := ParseMessage([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.Fields(), ","); got != "z,operation,nested,é,n,s" {
		t.Errorf("fields %s", got)
	}
	if raw, _ := m.Raw("nested"); string(raw) != `{"b":[1, 2.50, "}"],"a":null}` {
		t.Errorf("nested raw %s", raw)
	}
	if raw, _ := m.Raw("n"); string(raw) != `1.0e2` {
		t.Errorf("number raw %s", raw)
	}
	if m.JSONString() != text {
		t.Errorf("re-encoded\n got %s\nwant %s", m.JSONString(), text)
	}
	// Whitespace around names and values goes; values keep theirs.
	spaced, err := ParseMessage([]byte(" {\n \"a\" :\t[ 1 , 2 ] ,\r\n\"b\" : \"x\" } \n"))
	if err != nil || spaced.JSONString() != `{"a":[ 1 , 2 ],"b":"x"}` {
		t.Errorf("spaced: %v %s", err, spaced.JSONString())
	}
	empty, err := ParseMessage([]byte(` { } `))
	if err != nil || empty.Len() != 0 || empty.JSONString() != `{}` {
		t.Errorf("empty object: %v", err)
	}
}

func TestDuplicateFields(t *testing.T) {
	m, err := ParseMessage([]byte(`{"a":1,"b":2,"a":3,"\u0061":4}`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Len() != 2 || strings.Join(m.Fields(), ",") != "a,b" {
		t.Fatalf("fields %v", m.Fields())
	}
	if n, _ := m.Int("a"); n != 4 {
		t.Errorf("a = %d, want the last value 4", n)
	}
	names, vals, _ := tokenParse([]byte(`{"a":1,"b":2,"a":3,"\u0061":4}`))
	if strings.Join(names, ",") != "a,b" || vals["a"] != "4" {
		t.Errorf("tokenParse disagrees: %v %v", names, vals)
	}
}

// TestMessageEditing covers Set, SetRaw, Delete and Clone, on small
// messages and on ones large enough to be indexed.
func TestMessageEditing(t *testing.T) {
	for _, n := range []int{3, indexThreshold, indexThreshold + 1, 200} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var m Message // the zero value is usable
			for i := range n {
				m.Set(fmt.Sprintf("f%d", i), i)
			}
			m.Set("f1", "again") // keeps its place
			if m.Len() != n || m.Fields()[1] != "f1" {
				t.Fatalf("len %d, fields %v", m.Len(), m.Fields()[:2])
			}
			if s, _ := m.String("f1"); s != "again" {
				t.Errorf("f1 = %q", s)
			}
			m.Delete("f0")
			m.Delete("absent")
			if m.Has("f0") || m.Len() != n-1 || m.Fields()[0] != "f1" {
				t.Fatalf("after Delete: %v", m.Fields())
			}
			for i := 2; i < n; i++ {
				if v, err := m.Int(fmt.Sprintf("f%d", i)); v != int64(i) || err != nil {
					t.Fatalf("f%d = %d %v", i, v, err)
				}
			}
			m.Set("new", true)
			if f := m.Fields(); f[len(f)-1] != "new" {
				t.Errorf("new field not last")
			}
			m.Binary = []byte("bin")
			c := m.Clone()
			if c.JSONString() != m.JSONString() || string(c.Binary) != "bin" {
				t.Fatal("clone differs")
			}
			c.Set("f1", "changed")
			c.Binary[0] = 'X'
			raw, _ := c.Raw("new")
			raw[0] = 'X' // a clone shares no memory
			if s, _ := m.String("f1"); s != "again" || string(m.Binary) != "bin" {
				t.Error("editing the clone changed the original")
			}
			if raw, _ := m.Raw("new"); string(raw) != "true" {
				t.Errorf("original raw changed: %s", raw)
			}
		})
	}
}

// TestRawValuesCapped: appending to a value returned by Raw must not
// overwrite the next value, which shares the parsed buffer.
func TestRawValuesCapped(t *testing.T) {
	m, _ := ParseMessage([]byte(`{"a":"x","b":"y"}`))
	raw, _ := m.Raw("a")
	_ = append(raw, "ZZZZ"...)
	if s, _ := m.String("b"); s != "y" {
		t.Fatalf("b = %q after appending to a", s)
	}
}

func TestSetValues(t *testing.T) {
	m := NewMessage().
		Set("s", "ctl\x01\x7f<&>\"\\é").
		Set("bad", "\xff").
		Set("i64", int64(-9)).
		Set("raw", json.RawMessage(`[1]`)).
		Set("any", map[string]int{"a": 1}).
		Set("html", []string{"<b>"})
	want := `{"s":"ctl\u0001\u007f<&>\"\\é","bad":"` + "\uFFFD" + `","i64":-9,"raw":[1],"any":{"a":1},"html":["<b>"]}`
	if m.JSONString() != want {
		t.Errorf("got  %s\nwant %s", m.JSONString(), want)
	}
	defer func() {
		if recover() == nil {
			t.Error("Set with a channel did not panic")
		}
	}()
	m.Set("ch", make(chan int))
}

func TestNewResponseShape(t *testing.T) {
	m := NewResponse(OpDelete, TypeFile, StatusKeyNotFound, "gone")
	want := `{"operation":"DELETE","direction":"RESPONSE","type":"FILE","status":404,"status_msg":"gone"}`
	if m.JSONString() != want {
		t.Errorf("got %s", m.JSONString())
	}
	var back Message
	if err := json.Unmarshal([]byte(want), &back); err != nil || back.JSONString() != want {
		t.Errorf("UnmarshalJSON: %v %s", err, back.JSONString())
	}
	out, err := json.Marshal(m)
	if err != nil || string(out) != want {
		t.Errorf("MarshalJSON: %v %s", err, out)
	}
	if mp := m.Map(); mp["status"] != json.Number("404") || mp["operation"] != "DELETE" {
		t.Errorf("Map = %v", mp)
	}
}

func TestParseMessageErrors(t *testing.T) {
	for _, in := range []string{``, ` `, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{a:1}`, `{"a":1}x`, `[]`, `"s"`, `{"a":01}`, `{"a":tru}`} {
		if _, err := ParseMessage([]byte(in)); err == nil {
			t.Errorf("ParseMessage(%q) accepted", in)
		}
	}
	var m Message
	if err := m.UnmarshalJSON([]byte(`[1]`)); err == nil {
		t.Error("UnmarshalJSON accepted an array")
	}
}

func TestPlanArithmetic(t *testing.T) {
	cases := []struct{ size, bs, total, last int64 }{
		{1, 20480, 1, 1}, {20480, 20480, 1, 20480}, {20481, 20480, 2, 1}, {50000, 20480, 3, 9040},
		{40960, 20480, 2, 20480}, {1 << 32, 65536, 65536, 65536}, {0, 20480, 0, 0}, {5, 0, 0, 0},
	}
	for _, c := range cases {
		if got := TotalBlocks(c.size, c.bs); got != c.total {
			t.Errorf("TotalBlocks(%d, %d) = %d, want %d", c.size, c.bs, got, c.total)
		}
		if c.total > 0 {
			if got := BlockLen(c.size, c.bs, c.total-1); got != c.last {
				t.Errorf("last BlockLen(%d, %d) = %d, want %d", c.size, c.bs, got, c.last)
			}
			var sum int64
			for i := range c.total {
				if c.total > 100 {
					sum = c.size
					break
				}
				sum += BlockLen(c.size, c.bs, i)
			}
			if sum != c.size {
				t.Errorf("blocks of %d sum to %d", c.size, sum)
			}
		}
		if BlockLen(c.size, c.bs, -1) != 0 || BlockLen(c.size, c.bs, c.total) != 0 {
			t.Errorf("BlockLen outside the plan is not 0")
		}
	}
}

func TestVocabulary(t *testing.T) {
	for _, op := range RequestOperations() {
		if !op.Valid() {
			t.Errorf("%s not valid", op)
		}
	}
	for _, op := range []Operation{OpError, Op3Body, "save", ""} {
		if op.Valid() {
			t.Errorf("%q valid", op)
		}
	}
	for _, ty := range []Type{TypeFile, TypeData, TypeAuth} {
		if !ty.Valid() {
			t.Errorf("%s not valid", ty)
		}
	}
	if TypeError.Valid() || TypeDangerous.Valid() || Type("file").Valid() {
		t.Error("response-only or lower-case type valid")
	}
	if len(ReservedFields()) != 14 {
		t.Errorf("%d reserved fields", len(ReservedFields()))
	}
	for _, s := range []Status{StatusOK, Status3Body, StatusCompulsory, StatusPasswordError, StatusKeyExists, StatusTokenError,
		StatusKeyNotFound, StatusBlockIndexRange, StatusBlockSize, StatusWrongDirection, StatusWrongOperation,
		StatusTypeNotAllowed, StatusFieldMissing, StatusTooLarge, StatusTooManyRequests, StatusInternalError, StatusServiceBusy} {
		if s.Text() == "Unknown status" {
			t.Errorf("%d has no text", s)
		}
		if s.IsClientError() != (s >= 400 && s < 500) {
			t.Errorf("%d IsClientError", s)
		}
	}
	if Status(499).Text() != "Unknown status" {
		t.Error("499 has a text")
	}
}

func TestRequirementsCatalogue(t *testing.T) {
	reqs := Requirements()
	reqs[0].ID = "CHANGED"
	if Requirements()[0].ID == "CHANGED" {
		t.Error("Requirements returns the catalogue itself")
	}
	r, ok := Lookup("FILE-UPLOAD-7")
	if !ok || r.Level != SHOULD || r.Section != "9.2" || r.SectionPrefix() != "FILE-UPLOAD" {
		t.Errorf("Lookup: %+v %v", r, ok)
	}
	if _, ok := Lookup("NOPE-1"); ok {
		t.Error("Lookup found NOPE-1")
	}
	prefixes := SectionPrefixes()
	if len(prefixes) < 10 || prefixes[0] > prefixes[1] {
		t.Errorf("SectionPrefixes = %v", prefixes)
	}
	for _, r := range Requirements() {
		if r.Text == "" || (r.Subject != Server && r.Subject != Client) {
			t.Errorf("%s incomplete", r.ID)
		}
		switch r.Level {
		case MUST, SHOULD, MAY:
		default:
			t.Errorf("%s has level %q", r.ID, r.Level)
		}
	}
}
