package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzLimits are small so that the fuzzer reaches the limit checks.
var fuzzLimits = Limits{MaxJSON: 4096, MaxBinary: 1 << 16}

// FuzzReader feeds arbitrary streams to the Reader. Its seed corpus is
// every golden frame under fixtures/frames (good, character-count and
// malformed), alone and concatenated. It checks that the Reader never
// panics, respects its limits, reports only its typed errors, agrees with
// DecodeFrame frame by frame, and that every message it returns
// re-encodes to a frame that decodes to the same JSON and binary.
func FuzzReader(f *testing.F) {
	var all []byte
	err := filepath.WalkDir(goldenDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".bin") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f.Add(data)
		// A stream of several small frames, kept short: large inputs
		// make the fuzzer's minimisation slow.
		if len(data) < 512 && len(all) < 4096 {
			all = append(all, data...)
		}
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	if len(all) == 0 {
		f.Fatal("no golden frames for the seed corpus")
	}
	f.Add(all)

	f.Fuzz(func(t *testing.T, data []byte) {
		// The Reader recovers a character-count frame from bytes already
		// buffered (64 KiB); DecodeFrame sees everything. Keep inputs within
		// one buffer so that the two must agree.
		if len(data) > 32<<10 {
			data = data[:32<<10]
		}
		r := NewReader(bytes.NewReader(data), fuzzLimits)
		off := 0 // where DecodeFrame expects the next frame
		for i := 0; i < 256; i++ {
			start := r.Offset()
			if start != int64(off) {
				t.Fatalf("Reader at %d, DecodeFrame at %d", start, off)
			}
			m, err := r.ReadMessage()
			dm, dn, derr := DecodeFrame(data[off:], fuzzLimits)
			if err == io.EOF {
				if off != len(data) || !errors.Is(derr, ErrTruncatedHeader) {
					t.Fatalf("EOF at %d of %d; DecodeFrame says %v", off, len(data), derr)
				}
				return
			}
			if err != nil {
				var fe *FrameError
				if !errors.As(err, &fe) {
					t.Fatalf("untyped error %v", err)
				}
				checkFrameError(t, fe)
				if !errors.Is(derr, fe.Err) {
					t.Fatalf("Reader: %v; DecodeFrame: %v", err, derr)
				}
				if fe.Err == ErrNotJSON || fe.Err == ErrNotObject {
					text := data[off+HeaderLen : off+HeaderLen+int(fe.JSONLen)]
					if json.Valid(text) != (fe.Err == ErrNotObject) {
						t.Fatalf("%v, but json.Valid says %v: %q", fe.Err, json.Valid(text), text)
					}
				}
				if !fe.Resumable() {
					return
				}
				if int64(dn) != r.Offset()-start {
					t.Fatalf("after %v the Reader consumed %d bytes, DecodeFrame %d", fe.Err, r.Offset()-start, dn)
				}
				if fe.Recovered != nil {
					var dfe *FrameError
					errors.As(derr, &dfe)
					if dfe.Recovered == nil || dfe.Recovered.JSONString() != fe.Recovered.JSONString() ||
						!bytes.Equal(dfe.Recovered.Binary, fe.Recovered.Binary) {
						t.Fatalf("recovered messages differ")
					}
					checkRoundTrip(t, fe.Recovered)
				}
				off += dn
				continue
			}
			if derr != nil || int64(dn) != r.Offset()-start {
				t.Fatalf("Reader read a %d-byte frame; DecodeFrame: n=%d err=%v", r.Offset()-start, dn, derr)
			}
			if dm.JSONString() != m.JSONString() || !bytes.Equal(dm.Binary, m.Binary) {
				t.Fatalf("Reader and DecodeFrame decoded different messages")
			}
			frameJSON := data[off+HeaderLen : off+dn-len(m.Binary)]
			if len(frameJSON) > int(fuzzLimits.MaxJSON) || len(m.Binary) > int(fuzzLimits.MaxBinary) {
				t.Fatalf("frame over the limits accepted: %d+%d", len(frameJSON), len(m.Binary))
			}
			checkAgainstTokens(t, frameJSON, m)
			checkRoundTrip(t, m)
			off += dn
		}
	})
}

func checkFrameError(t *testing.T, fe *FrameError) {
	t.Helper()
	switch fe.Err {
	case ErrTruncatedHeader, ErrTruncatedBody, ErrNotJSON, ErrNotObject, ErrInvalidUTF8, ErrCharCountLength:
	case ErrJSONTooLarge:
		if fe.JSONLen <= fuzzLimits.MaxJSON || fe.Limit != fuzzLimits.MaxJSON {
			t.Fatalf("ErrJSONTooLarge for %d (limit %d)", fe.JSONLen, fe.Limit)
		}
	case ErrBinaryTooLarge:
		if fe.BinaryLen <= fuzzLimits.MaxBinary || fe.Limit != fuzzLimits.MaxBinary {
			t.Fatalf("ErrBinaryTooLarge for %d (limit %d)", fe.BinaryLen, fe.Limit)
		}
	default:
		t.Fatalf("unknown frame error %v", fe.Err)
	}
	if (fe.Err == ErrCharCountLength) != (fe.Recovered != nil) {
		t.Fatalf("%v with Recovered=%v", fe.Err, fe.Recovered != nil)
	}
	if fe.Recovered != nil {
		if fe.ActualJSONLen > int(fuzzLimits.MaxJSON) || len(fe.Recovered.Binary) > int(fuzzLimits.MaxBinary) {
			t.Fatalf("recovered a frame over the limits")
		}
	}
	_ = fe.Error()
}

// checkRoundTrip: a decoded message re-encodes to a frame that decodes to
// the same JSON and binary.
func checkRoundTrip(t *testing.T, m *Message) {
	t.Helper()
	frame, err := EncodeFrame(m)
	if err != nil {
		t.Fatalf("EncodeFrame: %v", err)
	}
	back, n, err := DecodeFrame(frame, Limits{MaxJSON: 1 << 30, MaxBinary: 1 << 30})
	if err != nil || n != len(frame) {
		t.Fatalf("re-encoded frame does not decode: %v\n%q", err, frame)
	}
	if back.JSONString() != m.JSONString() || !bytes.Equal(back.Binary, m.Binary) {
		t.Fatalf("round trip changed the message:\n%s\n%s", m.JSONString(), back.JSONString())
	}
}

// checkAgainstTokens: the fast parser agrees with encoding/json's Decoder
// on the field names, their order and every raw value.
func checkAgainstTokens(t *testing.T, text []byte, m *Message) {
	t.Helper()
	names, vals, err := tokenParse(text)
	if err != nil {
		t.Fatalf("encoding/json refuses what parseObject accepted: %v\n%q", err, text)
	}
	if strings.Join(names, "\x00") != strings.Join(m.Fields(), "\x00") {
		t.Fatalf("fields %q, encoding/json says %q", m.Fields(), names)
	}
	for _, k := range names {
		if raw, _ := m.Raw(k); string(raw) != vals[k] {
			t.Fatalf("field %q = %s, encoding/json says %s", k, raw, vals[k])
		}
	}
}
