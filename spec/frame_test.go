package spec

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	m := NewRequest(OpUpload, TypeFile).Set(FieldKey, "报告.pdf").Set(FieldBlockIndex, 3)
	m.Binary = []byte("block")
	var buf bytes.Buffer
	if err := NewWriter(&buf).WriteMessage(m); err != nil {
		t.Fatal(err)
	}
	got, err := NewReader(&buf, Limits{}).ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := got.Key(); k != "报告.pdf" {
		t.Fatalf("key = %q", k)
	}
	if i, _ := got.BlockIndex(); i != 3 {
		t.Fatalf("index = %d", i)
	}
	if string(got.Binary) != "block" {
		t.Fatalf("binary = %q", got.Binary)
	}
	if got.JSONString() != m.JSONString() {
		t.Fatalf("json %s != %s", got.JSONString(), m.JSONString())
	}
}

func TestCharCountLengthRecovered(t *testing.T) {
	text := []byte(`{"operation":"SAVE","key":"报告"}`)
	chars := len([]rune(string(text)))
	frame := append(Header(uint32(chars), 3), text...)
	frame = append(frame, "bin"...)
	next, _ := EncodeFrame(NewRequest(OpBye, TypeAuth))
	r := NewReader(bytes.NewReader(append(frame, next...)), Limits{})
	_, err := r.ReadMessage()
	var fe *FrameError
	if !errors.As(err, &fe) || !errors.Is(err, ErrCharCountLength) {
		t.Fatalf("err = %v", err)
	}
	if k, _ := fe.Recovered.Key(); k != "报告" || string(fe.Recovered.Binary) != "bin" {
		t.Fatalf("recovered %s %q", fe.Recovered.JSONString(), fe.Recovered.Binary)
	}
	m, err := r.ReadMessage()
	if err != nil || m.Operation() != OpBye {
		t.Fatalf("next frame: %v %v", m, err)
	}
	if _, err := r.ReadMessage(); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
}

// TestFrameBuffered says a frame is buffered only once every byte of it is.
func TestFrameBuffered(t *testing.T) {
	m := NewRequest(OpUpload, TypeFile).Set(FieldKey, "k").Set(FieldBlockIndex, 0)
	m.Binary = bytes.Repeat([]byte("b"), 1000)
	frame, err := EncodeFrame(m)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	r := NewReader(pr, Limits{})
	if r.FrameBuffered() {
		t.Fatal("nothing sent, yet a frame is buffered")
	}
	// Two frames and the header of a third arrive in one write.
	go pw.Write(append(append(append([]byte{}, frame...), frame...), frame[:HeaderLen+3]...))
	if _, err := r.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if !r.FrameBuffered() {
		t.Fatal("the second frame is buffered whole, FrameBuffered says no")
	}
	if _, err := r.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if r.FrameBuffered() {
		t.Fatal("only part of the third frame is buffered, FrameBuffered says yes")
	}
	pw.Close()
}
