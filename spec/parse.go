package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// parseObject replaces m's fields with those of the JSON object b.
//
// encoding/json's Decoder.Token costs several allocations per field, and a
// frame parser runs once per request. This one checks the grammar exactly as
// encoding/json does (FuzzReader compares the two) in a single pass, and
// records each field as it goes. The values are sub-slices of one copy of b,
// capped so that appending to one cannot overwrite the next.
func (m *Message) parseObject(b []byte) error {
	s := scanner{b: b}
	s.skipSpace()
	if s.i >= len(b) || b[s.i] != '{' {
		if s.value(0) && s.end() {
			return errNotObject
		}
		return syntaxError(b)
	}
	// The values are sub-slices of one copy of b, kept in the arena,
	// whose memory a message read into again is reused.
	own := append(m.arena[:0], b...)
	m.arena = own
	s.b = own
	if m.fields == nil {
		// A field has a colon: their count bounds the fields, and sizing
		// the slice to it saves a third of a message's memory.
		m.fields = make([]field, 0, min(max(bytes.Count(b, []byte{':'}), 1), 32))
	} else {
		clear(m.fields)
		m.fields = m.fields[:0]
	}
	m.index = nil
	s.i++
	s.skipSpace()
	if s.i < len(own) && own[s.i] == '}' {
		s.i++
		if !s.end() {
			return syntaxError(b)
		}
		return nil
	}
	for {
		ks := s.i
		escaped, ok := s.str()
		if !ok {
			return syntaxError(b)
		}
		ke := s.i
		s.skipSpace()
		if s.i >= len(own) || own[s.i] != ':' {
			return syntaxError(b)
		}
		s.i++
		s.skipSpace()
		vs := s.i
		if !s.value(1) {
			return syntaxError(b)
		}
		ve := s.i
		name, err := decodeName(own[ks:ke], escaped)
		if err != nil {
			return err
		}
		m.SetRaw(name, own[vs:ve:ve])
		s.skipSpace()
		if s.i >= len(own) {
			return syntaxError(b)
		}
		switch own[s.i] {
		case ',':
			s.i++
			s.skipSpace()
		case '}':
			s.i++
			if !s.end() {
				return syntaxError(b)
			}
			return nil
		default:
			return syntaxError(b)
		}
	}
}

// syntaxError returns encoding/json's description of what is wrong with b,
// which carries the offset of the error.
func syntaxError(b []byte) error {
	var raw json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	return errors.New("invalid JSON")
}

// maxDepth is encoding/json's limit on nested arrays and objects.
const maxDepth = 10000

// scanner checks JSON text against the grammar of RFC 8259 as
// encoding/json applies it: bytes inside strings are not checked for UTF-8
// (the frame parser does that first), control characters are refused.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// end reports whether only whitespace is left.
func (s *scanner) end() bool {
	s.skipSpace()
	return s.i == len(s.b)
}

// value checks the value at s.i, nested depth containers deep, and moves
// past it.
func (s *scanner) value(depth int) bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return false
}

func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

func (s *scanner) digits() int {
	n := 0
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

func (s *scanner) number() bool {
	if s.b[s.i] == '-' {
		s.i++
	}
	if s.i >= len(s.b) {
		return false
	}
	if s.b[s.i] == '0' {
		s.i++
	} else if s.digits() == 0 {
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return false
		}
	}
	return true
}

// str checks the string at s.i and moves past its closing quote. escaped
// reports whether it holds a backslash escape.
func (s *scanner) str() (escaped, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false, false
	}
	for i := s.i + 1; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			s.i = i + 1
			return escaped, true
		case c < 0x20:
			return false, false
		case c == '\\':
			escaped = true
			i++
			if i >= len(s.b) {
				return false, false
			}
			switch s.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(s.b)-i <= 4 {
					return false, false
				}
				for _, h := range s.b[i+1 : i+5] {
					if !isHex(h) {
						return false, false
					}
				}
				i += 4
			default:
				return false, false
			}
		}
	}
	return false, false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (s *scanner) object(depth int) bool {
	if depth > maxDepth {
		return false
	}
	s.i++ // '{'
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return true
	}
	for {
		if _, ok := s.str(); !ok {
			return false
		}
		s.skipSpace()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.skipSpace()
		if !s.value(depth) {
			return false
		}
		s.skipSpace()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.skipSpace()
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

func (s *scanner) array(depth int) bool {
	if depth > maxDepth {
		return false
	}
	s.i++ // '['
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return true
	}
	for {
		if !s.value(depth) {
			return false
		}
		s.skipSpace()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.skipSpace()
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// decodeName decodes an object key (a JSON string, quotes included).
func decodeName(q []byte, escaped bool) (string, error) {
	if !escaped {
		if in := q[1 : len(q)-1]; utf8.Valid(in) {
			return internField(in), nil
		}
	}
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return "", err
	}
	return s, nil
}

// internField returns b as a string, without allocating for the field
// names and values STEP defines.
func internField(b []byte) string {
	switch string(b) {
	case FieldOperation:
		return FieldOperation
	case FieldDirection:
		return FieldDirection
	case FieldType:
		return FieldType
	case FieldUsername:
		return FieldUsername
	case FieldPassword:
		return FieldPassword
	case FieldToken:
		return FieldToken
	case FieldKey:
		return FieldKey
	case FieldSize:
		return FieldSize
	case FieldTotalBlock:
		return FieldTotalBlock
	case FieldBlockSize:
		return FieldBlockSize
	case FieldBlockIndex:
		return FieldBlockIndex
	case FieldMD5:
		return FieldMD5
	case FieldStatus:
		return FieldStatus
	case FieldStatusMsg:
		return FieldStatusMsg
	case string(OpSave):
		return string(OpSave)
	case string(OpDelete):
		return string(OpDelete)
	case string(OpGet):
		return string(OpGet)
	case string(OpUpload):
		return string(OpUpload)
	case string(OpDownload):
		return string(OpDownload)
	case string(OpBye):
		return string(OpBye)
	case string(OpLogin):
		return string(OpLogin)
	case string(OpError):
		return string(OpError)
	case string(TypeFile):
		return string(TypeFile)
	case string(TypeData):
		return string(TypeData)
	case string(TypeAuth):
		return string(TypeAuth)
	case string(DirRequest):
		return string(DirRequest)
	case string(DirResponse):
		return string(DirResponse)
	}
	return string(b)
}
