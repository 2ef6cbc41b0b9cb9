package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Message is one STEP message: an ordered JSON object and an optional binary
// part. Unknown fields are kept, in their original order and bytes, so that a
// server can return a stored DATA document as it was saved and a decoder can
// show everything a peer sent. The zero value is an empty message.
type Message struct {
	fields []field
	// index maps a name to its position in fields once a message has more
	// fields than a linear search handles well (large DATA documents).
	index  map[string]int
	Binary []byte
	// arena holds the values Set encodes, one after another, so that a
	// message built field by field costs a few allocations, not one per
	// field. A value is a capped sub-slice: it outlives any growth of the
	// arena, and nothing appended later can overwrite it.
	arena []byte
}

type field struct {
	name string
	val  json.RawMessage
}

// indexThreshold is the field count above which a Message keeps an index.
const indexThreshold = 16

// ErrFieldMissing is returned by the typed accessors for an absent field.
var ErrFieldMissing = errors.New("field is missing")

// FieldTypeError is returned by the typed accessors when a field is present
// but its JSON value is not of the kind STEP defines for it.
type FieldTypeError struct {
	Field string
	Want  string          // e.g. "string", "integer", "non-negative integer"
	Got   json.RawMessage // the value as sent
}

func (e *FieldTypeError) Error() string {
	got := string(e.Got)
	if len(got) > 40 {
		got = got[:37] + "..."
	}
	article := "a"
	if e.Want != "" && strings.ContainsRune("aeiou", rune(e.Want[0])) {
		article = "an"
	}
	return fmt.Sprintf("field %q must be %s %s, got %s", e.Field, article, e.Want, got)
}

// NewMessage returns an empty message.
func NewMessage() *Message {
	return &Message{}
}

// NewRequest returns a request of the given operation and type.
func NewRequest(op Operation, t Type) *Message {
	m := &Message{fields: make([]field, 0, 8), arena: make([]byte, 0, 192)}
	m.Set(FieldOperation, string(op))
	m.Set(FieldDirection, string(DirRequest))
	m.Set(FieldType, string(t))
	return m
}

// NewResponse returns a response with the five fields every response carries.
func NewResponse(op Operation, t Type, s Status, msg string) *Message {
	m := &Message{fields: make([]field, 0, 10), arena: make([]byte, 0, 192)}
	return m.initResponse(op, t, s, msg)
}

// ResetRequest empties m, keeping its memory, and makes it a request as
// NewRequest does, for a client that sends a stream of requests with one
// Message. Values taken from m before are not valid afterwards.
func (m *Message) ResetRequest(op Operation, t Type) *Message {
	clear(m.fields)
	m.fields, m.index, m.Binary, m.arena = m.fields[:0], nil, nil, m.arena[:0]
	m.SetString(FieldOperation, string(op))
	m.SetString(FieldDirection, string(DirRequest))
	return m.SetString(FieldType, string(t))
}

// ResetResponse empties m, keeping its memory, and makes it a response as
// NewResponse does: a server can answer every request of a stream with
// one Message, without allocating. Values taken from m before are not
// valid afterwards.
func (m *Message) ResetResponse(op Operation, t Type, s Status, msg string) *Message {
	clear(m.fields)
	m.fields, m.index, m.Binary, m.arena = m.fields[:0], nil, nil, m.arena[:0]
	return m.initResponse(op, t, s, msg)
}

func (m *Message) initResponse(op Operation, t Type, s Status, msg string) *Message {
	m.SetString(FieldOperation, string(op))
	m.SetString(FieldDirection, string(DirResponse))
	m.SetString(FieldType, string(t))
	m.SetInt(FieldStatus, int64(s))
	m.SetString(FieldStatusMsg, msg)
	return m
}

// find returns the position of field, or -1.
func (m *Message) find(name string) int {
	if m.index != nil {
		if i, ok := m.index[name]; ok {
			return i
		}
		return -1
	}
	for i := range m.fields {
		if m.fields[i].name == name {
			return i
		}
	}
	return -1
}

func (m *Message) reindex() {
	if len(m.fields) <= indexThreshold {
		m.index = nil
		return
	}
	m.index = make(map[string]int, len(m.fields))
	for i, f := range m.fields {
		m.index[f.name] = i
	}
}

// Fields returns the field names in order.
func (m *Message) Fields() []string {
	out := make([]string, len(m.fields))
	for i, f := range m.fields {
		out[i] = f.name
	}
	return out
}

// Len is the number of fields.
func (m *Message) Len() int { return len(m.fields) }

// Has reports whether field is present.
func (m *Message) Has(field string) bool { return m.find(field) >= 0 }

// Raw returns the JSON value of field as sent.
func (m *Message) Raw(field string) (json.RawMessage, bool) {
	if i := m.find(field); i >= 0 {
		return m.fields[i].val, true
	}
	return nil, false
}

// SetRaw sets field to an already encoded JSON value. A field that exists
// keeps its position.
func (m *Message) SetRaw(name string, raw json.RawMessage) *Message {
	if i := m.find(name); i >= 0 {
		m.fields[i].val = raw
		return m
	}
	m.fields = append(m.fields, field{name: name, val: raw})
	if m.index != nil {
		m.index[name] = len(m.fields) - 1
	} else if len(m.fields) > indexThreshold {
		m.reindex()
	}
	return m
}

// Set sets field to v encoded as JSON. Values that cannot be encoded (for
// example a channel) are a programming error and panic.
func (m *Message) Set(field string, v any) *Message {
	start := len(m.arena)
	switch x := v.(type) {
	case string:
		m.arena = appendJSONString(m.arena, x)
	case int:
		m.arena = strconv.AppendInt(m.arena, int64(x), 10)
	case int64:
		m.arena = strconv.AppendInt(m.arena, x, 10)
	case Status:
		m.arena = strconv.AppendInt(m.arena, int64(x), 10)
	case json.RawMessage:
		return m.SetRaw(field, x)
	default:
		raw, err := marshalNoEscape(v)
		if err != nil {
			panic(fmt.Sprintf("spec: field %q: %v", field, err))
		}
		return m.SetRaw(field, raw)
	}
	end := len(m.arena)
	return m.SetRaw(field, m.arena[start:end:end])
}

// SetString sets field to the JSON string s; unlike Set it takes no
// interface value, so a string that is not a constant costs no allocation.
func (m *Message) SetString(field, s string) *Message {
	start := len(m.arena)
	m.arena = appendJSONString(m.arena, s)
	end := len(m.arena)
	return m.SetRaw(field, m.arena[start:end:end])
}

// SetInt sets field to the JSON integer n, as SetString does for strings.
func (m *Message) SetInt(field string, n int64) *Message {
	start := len(m.arena)
	m.arena = strconv.AppendInt(m.arena, n, 10)
	end := len(m.arena)
	return m.SetRaw(field, m.arena[start:end:end])
}

// Delete removes field.
func (m *Message) Delete(field string) {
	i := m.find(field)
	if i < 0 {
		return
	}
	m.fields = append(m.fields[:i], m.fields[i+1:]...)
	if m.index != nil {
		m.reindex()
	}
}

// Clone returns a deep copy that shares no memory with m.
func (m *Message) Clone() *Message {
	n := 0
	for _, f := range m.fields {
		n += len(f.val)
	}
	buf := make([]byte, 0, n)
	c := &Message{fields: make([]field, len(m.fields))}
	for i, f := range m.fields {
		start := len(buf)
		buf = append(buf, f.val...)
		c.fields[i] = field{name: f.name, val: buf[start:len(buf):len(buf)]}
	}
	c.reindex()
	if m.Binary != nil {
		c.Binary = append([]byte(nil), m.Binary...)
	}
	return c
}

// WithoutBinary returns a copy of m without its binary part, for keeping
// a request's fields once the buffer its binary part lies in is reused.
// Unlike Clone it copies only the list of fields and shares the values'
// bytes, which setting a field on either message leaves alone (a value set
// is appended to the arena, never written in place). So the values stay
// valid as long as m's do: for a message ReadMessageInto reuses, until the
// next read into it; Clone keeps them for good.
func (m *Message) WithoutBinary() *Message {
	a := len(m.arena)
	c := &Message{fields: append([]field(nil), m.fields...), arena: m.arena[:a:a]}
	c.reindex()
	return c
}

// String returns field's value if it is a JSON string.
func (m *Message) String(field string) (string, error) {
	raw, ok := m.Raw(field)
	if !ok {
		return "", ErrFieldMissing
	}
	if s, ok := plainString(raw); ok {
		return s, nil
	}
	if len(raw) == 0 || raw[0] != '"' {
		return "", &FieldTypeError{Field: field, Want: "string", Got: raw}
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &FieldTypeError{Field: field, Want: "string", Got: raw}
	}
	return s, nil
}

// plainString decodes a JSON string without escapes, the common case,
// without going through encoding/json.
func plainString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	in := raw[1 : len(raw)-1]
	for _, c := range in {
		if c < 0x20 || c == '"' || c == '\\' {
			return "", false
		}
	}
	if !utf8.Valid(in) {
		return "", false
	}
	return internField(in), true
}

// Int returns field's value if it is a JSON integer (no fraction, no
// exponent) that fits in an int64.
func (m *Message) Int(field string) (int64, error) {
	raw, ok := m.Raw(field)
	if !ok {
		return 0, ErrFieldMissing
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, &FieldTypeError{Field: field, Want: "integer", Got: raw}
	}
	return n, nil
}

// NonNegInt is Int for fields that may not be negative.
func (m *Message) NonNegInt(field string) (int64, error) {
	n, err := m.Int(field)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		raw, _ := m.Raw(field)
		return 0, &FieldTypeError{Field: field, Want: "non-negative integer", Got: raw}
	}
	return n, nil
}

// str returns field's string value, or "" when it is absent or not a string.
func (m *Message) str(field string) string {
	s, _ := m.String(field)
	return s
}

// Operation is the operation field ("" when absent or not a string).
func (m *Message) Operation() Operation { return Operation(m.str(FieldOperation)) }

// Direction is the direction field ("" when absent or not a string).
func (m *Message) Direction() Direction { return Direction(m.str(FieldDirection)) }

// Type is the type field ("" when absent or not a string).
func (m *Message) Type() Type { return Type(m.str(FieldType)) }

// StatusMsg is the status_msg field ("" when absent or not a string).
func (m *Message) StatusMsg() string { return m.str(FieldStatusMsg) }

// Status is the status field; ok is false when it is absent or not an integer.
func (m *Message) Status() (s Status, ok bool) {
	n, err := m.Int(FieldStatus)
	if err != nil || n < math.MinInt32 || n > math.MaxInt32 {
		return 0, false
	}
	return Status(n), true
}

// Key is the key field.
func (m *Message) Key() (string, error) { return m.String(FieldKey) }

// Token is the token field.
func (m *Message) Token() (string, error) { return m.String(FieldToken) }

// Username is the username field.
func (m *Message) Username() (string, error) { return m.String(FieldUsername) }

// Password is the password field.
func (m *Message) Password() (string, error) { return m.String(FieldPassword) }

// MD5 is the md5 field.
func (m *Message) MD5() (string, error) { return m.String(FieldMD5) }

// Size is the size field.
func (m *Message) Size() (int64, error) { return m.NonNegInt(FieldSize) }

// BlockIndex is the block_index field. A negative index is returned as
// sent: its status differs from that of a value of the wrong type.
func (m *Message) BlockIndex() (int64, error) { return m.Int(FieldBlockIndex) }

// BlockSize is the block_size field.
func (m *Message) BlockSize() (int64, error) { return m.NonNegInt(FieldBlockSize) }

// TotalBlock is the total_block field.
func (m *Message) TotalBlock() (int64, error) { return m.NonNegInt(FieldTotalBlock) }

// MarshalJSON writes the fields in order.
func (m *Message) MarshalJSON() ([]byte, error) {
	return m.AppendJSON(nil), nil
}

// AppendJSON appends the JSON object to dst, fields in order.
func (m *Message) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	for i, f := range m.fields {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, f.name)
		dst = append(dst, ':')
		dst = append(dst, f.val...)
	}
	return append(dst, '}')
}

// UnmarshalJSON parses a JSON object, keeping the order of its fields. A
// repeated field keeps its first position and its last value, as most JSON
// parsers do.
func (m *Message) UnmarshalJSON(b []byte) error {
	return m.parseObject(b)
}

var errNotObject = errors.New("JSON value is not an object")

// ParseMessage parses a JSON object into a new Message.
func ParseMessage(b []byte) (*Message, error) {
	m := NewMessage()
	if err := m.parseObject(b); err != nil {
		return nil, err
	}
	return m, nil
}

// Map returns the fields decoded into Go values (numbers as json.Number),
// for printing and tests.
func (m *Message) Map() map[string]any {
	out := make(map[string]any, len(m.fields))
	for _, f := range m.fields {
		dec := json.NewDecoder(bytes.NewReader(f.val))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err == nil {
			out[f.name] = v
		}
	}
	return out
}

// JSONString is the JSON part as text.
func (m *Message) JSONString() string { return string(m.AppendJSON(nil)) }

func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// appendJSONString appends s as a JSON string. Non-ASCII text is written as
// UTF-8, like the reference server (json.dumps with ensure_ascii=False).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
