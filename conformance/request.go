package conformance

import (
	"encoding/base64"
	"fmt"
	"regexp"

	"github.com/stepkit/stepkit/spec"
)

// rawRequest builds a message from name/value pairs, in order.
func rawRequest(fields ...any) *spec.Message {
	m := spec.NewMessage()
	for i := 0; i+1 < len(fields); i += 2 {
		m.Set(fields[i].(string), fields[i+1])
	}
	return m
}

// STEP.md section 4: request checks.
func requestCases(r *registrar) {
	r.Describe("4. Request checks", func() {
		for _, missing := range []string{spec.FieldOperation, spec.FieldDirection, spec.FieldType} {
			missing := missing
			r.Case(reqs("REQ-1", "CONN-1"), fmt.Sprintf("a request without %s is answered 400 with operation ERROR", missing), func(t *T) {
				s := t.Login()
				m := s.KeyReq(spec.OpGet, spec.TypeData, t.Key())
				m.Delete(missing)
				rep := s.Do(m, "REQ-1")
				t.Status(rep, "REQ-1", spec.StatusCompulsory)
				t.Check(rep, "REQ-1", rep.Resp.Operation() == spec.OpError, fmt.Sprintf("operation %q", rep.Resp.Operation()), `operation "ERROR"`)
				// The connection stays usable.
				t.Status(s.Do(s.KeyReq(spec.OpGet, spec.TypeData, t.Key()), "CONN-1"), "CONN-1", spec.StatusKeyNotFound)
			})
		}

		r.Case(reqs("REQ-11", "REQ-1"), "the status_msg of a missing-field refusal names the field", func(t *T) {
			s := t.Login()
			all := []string{spec.FieldOperation, spec.FieldDirection, spec.FieldType}
			for _, missing := range all {
				m := s.KeyReq(spec.OpGet, spec.TypeData, t.Key())
				m.Delete(missing)
				rep := s.Do(m, "REQ-1")
				t.Status(rep, "REQ-1", spec.StatusCompulsory)
				msg := rep.Resp.StatusMsg()
				named := 0
				for _, f := range all {
					if namesField(msg, f) {
						named++
					}
				}
				// A message naming all three fields does not say which one
				// is missing.
				t.Check(rep, "REQ-11", namesField(msg, missing) && named < len(all),
					fmt.Sprintf("without %s, status_msg is %q", missing, msg), fmt.Sprintf("a status_msg naming %q", missing))
			}
		})

		for _, dir := range []string{"RESPONSE", "SIDEWAYS"} {
			dir := dir
			r.Case(reqs("REQ-2"), fmt.Sprintf("direction %q is answered 407", dir), func(t *T) {
				s := t.Login()
				m := s.KeyReq(spec.OpGet, spec.TypeData, t.Key())
				m.Set(spec.FieldDirection, dir)
				t.Status(s.Do(m, "REQ-2"), "REQ-2", spec.StatusWrongDirection)
			})
		}

		for _, op := range []any{"FETCH", "login", 5} {
			op := op
			r.Case(reqs("REQ-3"), fmt.Sprintf("operation %v is answered 408", jsonOf(op)), func(t *T) {
				s := t.Login()
				m := s.KeyReq(spec.OpGet, spec.TypeData, t.Key())
				m.Set(spec.FieldOperation, op)
				t.Status(s.Do(m, "REQ-3"), "REQ-3", spec.StatusWrongOperation)
			})
		}

		for _, typ := range []any{"IMAGE", "file"} {
			typ := typ
			r.Case(reqs("REQ-4"), fmt.Sprintf("type %v is answered 409", jsonOf(typ)), func(t *T) {
				s := t.Login()
				m := s.KeyReq(spec.OpGet, spec.TypeData, t.Key())
				m.Set(spec.FieldType, typ)
				t.Status(s.Do(m, "REQ-4"), "REQ-4", spec.StatusTypeNotAllowed)
			})
		}

		r.Case(reqs("REQ-5"), "the checks apply in order: missing field, direction, operation, type, then the token", func(t *T) {
			c := t.Dial()
			steps := []struct {
				m    *spec.Message
				want spec.Status
			}{
				{rawRequest("operation", "NOPE", "direction", "SIDEWAYS"), spec.StatusCompulsory},
				{rawRequest("operation", "NOPE", "direction", "SIDEWAYS", "type", "NOPE"), spec.StatusWrongDirection},
				{rawRequest("operation", "NOPE", "direction", "REQUEST", "type", "NOPE"), spec.StatusWrongOperation},
				{rawRequest("operation", "GET", "direction", "REQUEST", "type", "NOPE", "key", "k"), spec.StatusTypeNotAllowed},
			}
			for _, st := range steps {
				t.Status(t.DoOn(c, st.m, "REQ-5"), "REQ-5", st.want)
			}
		})

		r.Case(reqs("REQ-6"), "requests the reference leaves unanswered each get exactly one response", func(t *T) {
			s := t.Login()
			key := t.Key()
			list := []*spec.Message{
				s.Req(spec.OpSave, spec.TypeAuth),
				s.KeyReq(spec.OpUpload, spec.TypeData, key),
				s.Req(spec.OpGet, spec.TypeFile),
				rawRequest("operation", "GET", "direction", "REQUEST", "type", "DATA", "key", key, "token", "%%%not base64%%%"),
			}
			up := s.KeyReq(spec.OpUpload, spec.TypeFile, key)
			up.Set(spec.FieldBlockIndex, "0")
			list = append(list, up)
			for _, m := range list {
				rep := s.Do(m, "REQ-6")
				t.Check(rep, "REQ-6", rep.Status() != -1, "the response has no integer status", "a response with a status")
			}
			// One response each: the next request's answer is its own.
			g := s.Do(s.KeyReq(spec.OpGet, spec.TypeData, t.Key()), "REQ-6")
			t.Status(g, "REQ-6", spec.StatusKeyNotFound)
		})

		for _, op := range []spec.Operation{spec.OpSave, spec.OpGet, spec.OpDelete} {
			op := op
			r.Case(reqs("REQ-7", "REQ-8", "CONN-1"), fmt.Sprintf("type AUTH with operation %s is refused (409 preferred)", op), func(t *T) {
				s := t.Login()
				m := s.KeyReq(op, spec.TypeAuth, t.Key())
				rep := s.Do(m, "REQ-7")
				t.Refused(rep, "REQ-7", "REQ-8", spec.StatusTypeNotAllowed)
				t.Status(s.Do(s.KeyReq(spec.OpGet, spec.TypeData, t.Key()), "CONN-1"), "CONN-1", spec.StatusKeyNotFound)
			})
		}

		wrongTypes := []struct {
			what string
			make func(s *Session, key string) *spec.Message
		}{
			{"a string block_index in UPLOAD", func(s *Session, key string) *spec.Message {
				m := s.KeyReq(spec.OpUpload, spec.TypeFile, key)
				m.Set(spec.FieldBlockIndex, "0")
				m.Binary = []byte("abc")
				return m
			}},
			{"a negative size in FILE SAVE", func(s *Session, key string) *spec.Message {
				return s.KeyReq(spec.OpSave, spec.TypeFile, key).Set(spec.FieldSize, -5)
			}},
			{"a fractional size in FILE SAVE", func(s *Session, key string) *spec.Message {
				return s.KeyReq(spec.OpSave, spec.TypeFile, key).SetRaw(spec.FieldSize, []byte("1.5"))
			}},
			{"a string size in FILE SAVE", func(s *Session, key string) *spec.Message {
				return s.KeyReq(spec.OpSave, spec.TypeFile, key).Set(spec.FieldSize, "100")
			}},
			{"a numeric key in DATA GET", func(s *Session, key string) *spec.Message {
				return s.Req(spec.OpGet, spec.TypeData).Set(spec.FieldKey, 12345)
			}},
			{"a numeric key in FILE SAVE", func(s *Session, key string) *spec.Message {
				return s.Req(spec.OpSave, spec.TypeFile).Set(spec.FieldKey, 7).Set(spec.FieldSize, 10)
			}},
			{"a fractional block_index in DOWNLOAD", func(s *Session, key string) *spec.Message {
				return s.KeyReq(spec.OpDownload, spec.TypeFile, key).SetRaw(spec.FieldBlockIndex, []byte("0.5"))
			}},
		}
		for _, wt := range wrongTypes {
			wt := wt
			r.Case(reqs("REQ-9", "REQ-10"), wt.what+" is refused (410 preferred) and the connection stays usable", func(t *T) {
				s := t.Login()
				key := t.Key()
				if wt.what == "a string block_index in UPLOAD" || wt.what == "a fractional block_index in DOWNLOAD" {
					data := []byte("abc")
					if wt.what == "a string block_index in UPLOAD" {
						s.PlanUpload(key, 3)
					} else {
						s.UploadAll(key, data)
					}
				}
				rep := s.Do(wt.make(s, key), "REQ-9")
				t.Refused(rep, "REQ-9", "REQ-10", spec.StatusFieldMissing)
				t.Status(s.Do(s.KeyReq(spec.OpGet, spec.TypeData, t.Key()), "REQ-9"), "REQ-9", spec.StatusKeyNotFound)
			})
		}
	})
}

// namesField reports whether msg names field as a word of its own, in any
// case ("Compulsory field type is missing", "missing 'TYPE'").
func namesField(msg, field string) bool {
	return regexp.MustCompile(`(?i)(^|[^a-z_])` + regexp.QuoteMeta(field) + `($|[^a-z_])`).MatchString(msg)
}

func jsonOf(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}

// STEP.md section 5: the easter egg.
func earthCases(r *registrar) {
	r.Describe("5. Easter egg", func() {
		r.Case(reqs("EARTH-1"), "direction EARTH is answered 3BODY/333/DANGEROUS", func(t *T) {
			c := t.Dial()
			m := rawRequest("operation", "LOGIN", "direction", "EARTH", "type", "AUTH")
			rep := t.Try(c, m)
			if rep.Err != nil {
				t.Info(rep, "EARTH-1", "no easter egg: "+rep.Err.Error())
				return
			}
			ok := rep.Status() == spec.Status3Body && rep.Resp.Operation() == spec.Op3Body && rep.Resp.Type() == spec.TypeDangerous &&
				rep.Resp.StatusMsg() == "DO NOT ANSWER! DO NOT ANSWER! DO NOT ANSWER!"
			t.Check(rep, "EARTH-1", ok, "the answer is not the reference's easter egg", `3BODY / 333 / DANGEROUS / "DO NOT ANSWER! DO NOT ANSWER! DO NOT ANSWER!"`)
		})
	})
}

var b64 = base64.StdEncoding
