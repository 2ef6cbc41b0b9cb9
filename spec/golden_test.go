package spec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// The golden frames are written by fixtures/frames/gen
// (go run ./fixtures/frames/gen) from ordered field lists, independently of
// this package's encoder.
const goldenDir = "../fixtures/frames"

type golden struct {
	name string
	data []byte // the frame
	json string // what its JSON part decodes to
}

func loadGolden(t testing.TB, dir string) []golden {
	t.Helper()
	bins, err := filepath.Glob(filepath.Join(goldenDir, dir, "*.bin"))
	if err != nil {
		t.Fatal(err)
	}
	var out []golden
	for _, b := range bins {
		data, err := os.ReadFile(b)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(strings.TrimSuffix(b, ".bin") + ".json")
		if err != nil {
			t.Fatalf("%s has no .json: %v", b, err)
		}
		out = append(out, golden{name: filepath.Base(b), data: data, json: strings.TrimSuffix(string(want), "\n")})
	}
	return out
}

// binaryPart is the frame's binary part, read off the header directly.
func binaryPart(frame []byte) []byte {
	blen := binary.BigEndian.Uint32(frame[4:8])
	return frame[len(frame)-int(blen):]
}

func TestGoldenFrames(t *testing.T) {
	frames := loadGolden(t, "")
	if len(frames) < 100 {
		t.Fatalf("only %d golden frames in %s; run go run ./fixtures/frames/gen", len(frames), goldenDir)
	}
	for _, g := range frames {
		t.Run(g.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(g.data), Limits{})
			m, err := r.ReadMessage()
			if err != nil {
				t.Fatalf("ReadMessage: %v", err)
			}
			if got := m.JSONString(); got != g.json {
				t.Errorf("decoded JSON\n got %s\nwant %s", got, g.json)
			}
			if !bytes.Equal(m.Binary, binaryPart(g.data)) {
				t.Errorf("binary part: got %d bytes, want %d", len(m.Binary), len(binaryPart(g.data)))
			}
			if _, err := r.ReadMessage(); err != io.EOF {
				t.Errorf("after the frame: %v, want io.EOF", err)
			}
			if r.Offset() != int64(len(g.data)) {
				t.Errorf("Offset = %d, want %d", r.Offset(), len(g.data))
			}

			dm, n, err := DecodeFrame(g.data, Limits{})
			if err != nil || n != len(g.data) {
				t.Fatalf("DecodeFrame: n=%d err=%v", n, err)
			}
			if dm.JSONString() != g.json || !bytes.Equal(dm.Binary, m.Binary) {
				t.Errorf("DecodeFrame decoded %s", dm.JSONString())
			}

			// Re-encoding writes the canonical JSON with byte lengths; for
			// frames already written that way it gives the same bytes.
			enc, err := EncodeFrame(m)
			if err != nil {
				t.Fatal(err)
			}
			want := RawFrame([]byte(g.json), binaryPart(g.data))
			if !bytes.Equal(enc, want) {
				t.Errorf("re-encoded frame differs:\n got %q\nwant %q", enc[:min(len(enc), 200)], want[:min(len(want), 200)])
			}
			jlen := binary.BigEndian.Uint32(g.data[0:4])
			if string(g.data[8:8+jlen]) == g.json && !bytes.Equal(enc, g.data) {
				t.Errorf("compact frame does not re-encode to its own bytes")
			}

			// The obviously correct parser agrees on names and values.
			names, vals, err := tokenParse(g.data[8 : 8+jlen])
			if err != nil {
				t.Fatalf("tokenParse: %v", err)
			}
			if strings.Join(names, "\x00") != strings.Join(m.Fields(), "\x00") {
				t.Errorf("fields %q, tokenParse says %q", m.Fields(), names)
			}
			for _, k := range names {
				if raw, _ := m.Raw(k); string(raw) != vals[k] {
					t.Errorf("field %q = %s, tokenParse says %s", k, raw, vals[k])
				}
			}
		})
	}
}

// TestGoldenStream reads every golden frame from one stream, delivered one
// byte per Read and then in one piece: frames split across reads and
// several frames per read both come out whole and in order (FRAME-4,
// FRAME-5).
func TestGoldenStream(t *testing.T) {
	frames := loadGolden(t, "")
	var stream []byte
	for _, g := range frames {
		stream = append(stream, g.data...)
	}
	for name, src := range map[string]io.Reader{
		"one byte per read": iotest.OneByteReader(bytes.NewReader(stream)),
		"one piece":         bytes.NewReader(stream),
		"half reads":        iotest.HalfReader(bytes.NewReader(stream)),
	} {
		t.Run(name, func(t *testing.T) {
			r := NewReader(src, Limits{})
			for _, g := range frames {
				m, err := r.ReadMessage()
				if err != nil {
					t.Fatalf("%s: %v", g.name, err)
				}
				if m.JSONString() != g.json {
					t.Fatalf("%s: decoded %s", g.name, m.JSONString())
				}
			}
			if _, err := r.ReadMessage(); err != io.EOF {
				t.Fatalf("end of stream: %v", err)
			}
		})
	}
}

// TestGoldenCharCount checks the frames written with the reference's
// character-count JSON length: the Reader and DecodeFrame both recover the
// message the sender meant and stay in step with the stream.
func TestGoldenCharCount(t *testing.T) {
	frames := loadGolden(t, "charcount")
	if len(frames) < 3 {
		t.Fatalf("only %d character-count frames", len(frames))
	}
	next, _ := EncodeFrame(NewRequest(OpBye, TypeAuth))
	for _, g := range frames {
		t.Run(g.name, func(t *testing.T) {
			jlen := int(binary.BigEndian.Uint32(g.data[0:4]))
			textLen := len(g.data) - HeaderLen - len(binaryPart(g.data))
			if jlen >= textLen {
				t.Fatalf("fixture's JSON length %d is not short of the %d-byte text", jlen, textLen)
			}
			r := NewReader(bytes.NewReader(append(append([]byte(nil), g.data...), next...)), Limits{})
			_, err := r.ReadMessage()
			var fe *FrameError
			if !errors.As(err, &fe) || !errors.Is(err, ErrCharCountLength) {
				t.Fatalf("err = %v, want ErrCharCountLength", err)
			}
			if !fe.Resumable() || fe.Recovered == nil {
				t.Fatalf("not recovered: %+v", fe)
			}
			if got := fe.Recovered.JSONString(); got != g.json {
				t.Errorf("recovered %s\nwant %s", got, g.json)
			}
			if !bytes.Equal(fe.Recovered.Binary, binaryPart(g.data)) {
				t.Errorf("recovered binary %q", fe.Recovered.Binary)
			}
			if fe.JSONLen != uint32(jlen) || fe.ActualJSONLen != textLen {
				t.Errorf("lengths: header %d, actual %d", fe.JSONLen, fe.ActualJSONLen)
			}
			if !strings.Contains(fe.Error(), "characters") {
				t.Errorf("error does not explain itself: %v", fe)
			}
			m, err := r.ReadMessage()
			if err != nil || m.Operation() != OpBye {
				t.Fatalf("next frame: %v, %v", m, err)
			}
			if _, err := r.ReadMessage(); err != io.EOF {
				t.Fatalf("want EOF, got %v", err)
			}

			_, n, err := DecodeFrame(g.data, Limits{})
			if !errors.As(err, &fe) || !errors.Is(err, ErrCharCountLength) || n != len(g.data) {
				t.Fatalf("DecodeFrame: n=%d/%d err=%v", n, len(g.data), err)
			}
			if fe.Recovered.JSONString() != g.json {
				t.Errorf("DecodeFrame recovered %s", fe.Recovered.JSONString())
			}
		})
	}
}

var errorsByName = map[string]error{
	"ErrTruncatedHeader": ErrTruncatedHeader,
	"ErrTruncatedBody":   ErrTruncatedBody,
	"ErrJSONTooLarge":    ErrJSONTooLarge,
	"ErrBinaryTooLarge":  ErrBinaryTooLarge,
	"ErrNotJSON":         ErrNotJSON,
	"ErrNotObject":       ErrNotObject,
	"ErrInvalidUTF8":     ErrInvalidUTF8,
}

// TestGoldenBad checks the malformed frames: each gives its typed error
// from the Reader and from DecodeFrame.
func TestGoldenBad(t *testing.T) {
	bins, _ := filepath.Glob(filepath.Join(goldenDir, "bad", "*.bin"))
	if len(bins) < len(errorsByName) {
		t.Fatalf("only %d malformed frames", len(bins))
	}
	for _, b := range bins {
		t.Run(filepath.Base(b), func(t *testing.T) {
			data, _ := os.ReadFile(b)
			name, err := os.ReadFile(strings.TrimSuffix(b, ".bin") + ".err")
			if err != nil {
				t.Fatal(err)
			}
			want, ok := errorsByName[strings.TrimSpace(string(name))]
			if !ok {
				t.Fatalf("unknown error name %q", name)
			}
			_, err = NewReader(bytes.NewReader(data), Limits{}).ReadMessage()
			var fe *FrameError
			if !errors.Is(err, want) || !errors.As(err, &fe) {
				t.Errorf("Reader: %v, want %v", err, want)
			}
			_, _, err = DecodeFrame(data, Limits{})
			if !errors.Is(err, want) {
				t.Errorf("DecodeFrame: %v, want %v", err, want)
			}
		})
	}
}

// TestGoldenUpToDate regenerates the fixtures into a temporary directory
// and compares: the committed frames are exactly what the generator writes.
func TestGoldenUpToDate(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("go", "run", "../fixtures/frames/gen", "-out", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generator: %v\n%s", err, out)
	}
	want := map[string][]byte{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			want[rel], _ = os.ReadFile(path)
		}
		return nil
	})
	got := map[string][]byte{}
	filepath.WalkDir(goldenDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "gen" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(goldenDir, path)
			got[rel], _ = os.ReadFile(path)
		}
		return nil
	})
	if len(want) == 0 {
		t.Fatal("the generator wrote nothing")
	}
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s is missing from fixtures/frames; run go generate ./spec", name)
		} else if !bytes.Equal(g, w) {
			t.Errorf("%s differs from what the generator writes; run go generate ./spec", name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s is not written by the generator", name)
		}
	}
}
