package spec

import (
	"encoding/json"
	"errors"
)

// parseObject replaces m's fields with those of the JSON object b.
//
// encoding/json's Decoder.Token costs several allocations per field; a frame
// parser runs once per request, so this one validates b with json.Valid
// (which does not allocate) and then walks the now known-good text by hand.
// The values are sub-slices of a single copy of b, capped so that appending
// to one cannot overwrite the next.
func (m *Message) parseObject(b []byte) error {
	if !json.Valid(b) {
		var raw json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			return err // a *json.SyntaxError, with its offset
		}
		return errors.New("invalid JSON")
	}
	i := skipSpace(b, 0)
	if b[i] != '{' {
		return errNotObject
	}
	own := make([]byte, len(b))
	copy(own, b)
	if m.fields == nil {
		m.fields = make([]field, 0, 10)
	} else {
		clear(m.fields)
		m.fields = m.fields[:0]
	}
	m.index = nil
	i = skipSpace(own, i+1)
	if own[i] == '}' {
		return nil
	}
	for {
		end := endOfString(own, i)
		name, err := decodeName(own[i:end])
		if err != nil {
			return err
		}
		i = skipSpace(own, end) // at ':'
		i = skipSpace(own, i+1) // at the value
		vend := endOfValue(own, i)
		m.SetRaw(name, own[i:vend:vend])
		i = skipSpace(own, vend) // at ',' or '}'
		if own[i] == '}' {
			return nil
		}
		i = skipSpace(own, i+1)
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// endOfString returns the index just past the JSON string starting at b[i].
func endOfString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// endOfValue returns the index just past the JSON value starting at b[i].
func endOfValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return endOfString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = endOfString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j
		}
		j++
	}
	return j
}

// decodeName decodes an object key (a JSON string, quotes included).
func decodeName(q []byte) (string, error) {
	if s, ok := plainString(q); ok {
		return s, nil
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
