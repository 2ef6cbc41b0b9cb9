package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parseAgrees checks parseObject against encoding/json on one input: it
// accepts exactly what json.Valid accepts (and is an object), refuses
// valid non-objects as such, and finds the same fields in the same order
// with the same raw values as a Decoder walking the object token by token.
// (The Decoder itself is no oracle for acceptance: it allows one more level
// of nesting inside an object than json.Valid and json.Unmarshal do.)
func parseAgrees(t *testing.T, b []byte) {
	t.Helper()
	m := NewMessage()
	err := m.parseObject(b)
	valid := json.Valid(b)
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	isObject := valid && len(trimmed) > 0 && trimmed[0] == '{'
	switch {
	case err == nil && !isObject:
		t.Fatalf("parseObject accepts what json.Valid refuses or is not an object: %q", b)
	case err != nil && isObject:
		t.Fatalf("parseObject refuses a valid object (%v): %q", err, b)
	case errors.Is(err, errNotObject) != (valid && !isObject):
		t.Fatalf("not-an-object = %v, but json.Valid = %v: %q", errors.Is(err, errNotObject), valid, b)
	}
	if err != nil {
		return
	}
	names, vals, terr := tokenParse(b)
	if terr != nil {
		t.Fatalf("encoding/json's Decoder refuses a valid object (%v): %q", terr, b)
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

var parseCases = []string{
	`{}`, ` { } `, `{"a":1}`, `{"a":1,"a":2}`, `{"a":[1,{"b":"}"}],"c":null}`,
	`{"s":"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00"}`, `{"\u0061":true,"b":false}`,
	`{"n":-0}`, `{"n":-0.5e+10}`, `{"n":1E-2}`, `{"n":123456789012345678901234567890}`,
	`[]`, `"s"`, `1`, `null`, `true`, ` [ {} ] `,
	``, ` `, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{a:1}`, `{'a':1}`, `{"a":1}x`, `{"a":1}{}`,
	`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":1e}`, `{"a":1e+}`, `{"a":+1}`, `{"a":0x1}`,
	`{"a":tru}`, `{"a":nul}`, `{"a":True}`, `{"a":NaN}`, `{"a":Infinity}`,
	`{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12G4"}`, "{\"a\":\"\x01\"}", "{\"a\":\"tab\there\"}",
	`{"a":"unterminated}`, `{"a":[1,2}`, `{"a":[1,2,]}`, `{"a":{"b":1]}`, `[1,2]]`,
	"{\"a\":1}\x00", "\ufeff{}", "{\"k\":\"\xff\"}", "{\"\xff\":1}",
	"{\"a\"\t:\r\n1\n}", `{"a":1 , "b":2}`, `{"a" :1}`,
}

func TestParseObjectAgreesWithEncodingJSON(t *testing.T) {
	for _, c := range parseCases {
		parseAgrees(t, []byte(c))
	}
}

func TestParseObjectDepth(t *testing.T) {
	for _, depth := range []int{maxDepth - 1, maxDepth, maxDepth + 1} {
		// The object itself is one level; fill the rest with arrays.
		b := `{"a":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
		parseAgrees(t, []byte(b))
		err := NewMessage().parseObject([]byte(b))
		if (err == nil) != (depth <= maxDepth) {
			t.Errorf("depth %d: err = %v", depth, err)
		}
	}
}

// FuzzParseObject compares parseObject with encoding/json on arbitrary
// text. (FuzzReader does the same through frames; this one reaches the
// grammar faster.)
func FuzzParseObject(f *testing.F) {
	for _, c := range parseCases {
		f.Add([]byte(c))
	}
	jsons, _ := filepath.Glob(filepath.Join(goldenDir, "*.json"))
	for _, p := range jsons {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		parseAgrees(t, b)
	})
}

// TestWithoutBinary checks that the copy keeps every field and no binary
// part, that the original keeps its binary part, and that setting a field
// on either afterwards does not show in the other.
func TestWithoutBinary(t *testing.T) {
	for _, nfields := range []int{3, indexThreshold + 4} {
		var b strings.Builder
		b.WriteString(`{"operation":"UPLOAD"`)
		for i := 1; i < nfields; i++ {
			b.WriteString(`,"f` + string(rune('a'+i)) + `":` + strings.Repeat("1", i))
		}
		b.WriteString("}")
		frame := append(header(b.Len(), 4), b.String()...)
		frame = append(frame, "BLOB"...)
		m, _, err := DecodeFrame(frame, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		c := m.WithoutBinary()
		if c.Binary != nil || string(m.Binary) != "BLOB" {
			t.Fatalf("%d fields: copy's binary %q, original's %q", nfields, c.Binary, m.Binary)
		}
		if got, want := c.Fields(), m.Fields(); strings.Join(got, ",") != strings.Join(want, ",") || len(got) != nfields {
			t.Fatalf("%d fields: copy has %v, original %v", nfields, got, want)
		}
		for _, f := range m.Fields() {
			a, _ := m.Raw(f)
			b, _ := c.Raw(f)
			if !bytes.Equal(a, b) {
				t.Fatalf("%d fields: %s is %s in the copy, %s in the original", nfields, f, b, a)
			}
		}
		c.SetInt("fb", 7)
		c.SetString("key", "copy")
		m.SetString("key", "original")
		if k, _ := c.Key(); k != "copy" {
			t.Fatalf("%d fields: copy's key %q after the original set its own", nfields, k)
		}
		if k, _ := m.Key(); k != "original" {
			t.Fatalf("%d fields: original's key %q after the copy set its own", nfields, k)
		}
		if v, _ := m.Raw("fb"); string(v) != "1" {
			t.Fatalf("%d fields: setting the copy's field changed the original", nfields)
		}
	}
}

func header(jlen, blen int) []byte {
	return []byte{byte(jlen >> 24), byte(jlen >> 16), byte(jlen >> 8), byte(jlen), byte(blen >> 24), byte(blen >> 16), byte(blen >> 8), byte(blen)}
}
