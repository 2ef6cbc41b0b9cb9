package conformance

import (
	"fmt"
	"regexp"
	"slices"
	"sync"

	"github.com/onsi/gomega"

	"github.com/stepkit/stepkit/spec"
)

var uuid4 = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
})

// STEP.md section 8: DATA.
func dataCases(r *registrar) {
	r.Describe("8. DATA", func() {
		r.Case(reqs("DATA-SAVE-1"), "SAVE of a new key is answered 200 with the key, and the document is stored", func(t *T) {
			s := t.Login()
			key := t.Key()
			rep := s.SaveData(key, "color", "blue")
			t.Field(rep, "DATA-SAVE-1", spec.FieldKey, key)
			g := s.Do(s.KeyReq(spec.OpGet, spec.TypeData, key), "DATA-SAVE-1")
			t.Status(g, "DATA-SAVE-1", spec.StatusOK)
			t.Field(g, "DATA-SAVE-1", "color", "blue")
		})

		r.Case(reqs("DATA-SAVE-2", "DATA-SAVE-4"), "SAVE without a key stores under a generated key (a UUID4 preferred)", func(t *T) {
			s := t.Login()
			m := s.Req(spec.OpSave, spec.TypeData)
			m.Set("n", 42)
			rep := s.Do(m, "DATA-SAVE-2")
			t.Status(rep, "DATA-SAVE-2", spec.StatusOK)
			key := t.HasString(rep, "DATA-SAVE-2", spec.FieldKey)
			t.deleteLater(s, spec.TypeData, key)
			t.Expect(rep, "DATA-SAVE-4", key, gomega.MatchRegexp(uuid4().String()), "the generated key is not a canonical version 4 UUID")
			g := s.Do(s.KeyReq(spec.OpGet, spec.TypeData, key), "DATA-SAVE-2")
			t.Status(g, "DATA-SAVE-2", spec.StatusOK)
			t.Field(g, "DATA-SAVE-2", "n", 42)
			// Two saves get two keys.
			rep2 := s.Do(s.Req(spec.OpSave, spec.TypeData), "DATA-SAVE-2")
			t.Status(rep2, "DATA-SAVE-2", spec.StatusOK)
			key2 := t.HasString(rep2, "DATA-SAVE-2", spec.FieldKey)
			t.deleteLater(s, spec.TypeData, key2)
			t.Check(rep2, "DATA-SAVE-2", key2 != key, "a second SAVE without key got the same key", "a new key")
		})

		r.Case(reqs("DATA-SAVE-3"), "SAVE of an existing key is answered 402 and the document is unchanged", func(t *T) {
			s := t.Login()
			key := t.Key()
			s.SaveData(key, "v", "first")
			m := s.KeyReq(spec.OpSave, spec.TypeData, key)
			m.Set("v", "second")
			t.Status(s.Do(m, "DATA-SAVE-3"), "DATA-SAVE-3", spec.StatusKeyExists)
			g := s.Do(s.KeyReq(spec.OpGet, spec.TypeData, key), "DATA-SAVE-3")
			t.Status(g, "DATA-SAVE-3", spec.StatusOK)
			t.Field(g, "DATA-SAVE-3", "v", "first")
		})

		r.Case(reqs("DATA-SAVE-5"), "the stored document is the request's values byte for byte, without the token", func(t *T) {
			s := t.Login()
			key := t.Key()
			// Values a decode and re-encode would change.
			values := [][2]string{
				{"zeta", `1.50`}, {"big", `12345678901234567890`}, {"e", `1E3`},
				{"alpha", `"caf\u00e9 \ud83d\ude42"`}, {"tab", `"a\tb\/c"`},
				{"list", `[1,2.0,{"b":null,"a":true}]`},
			}
			m := s.KeyReq(spec.OpSave, spec.TypeData, key)
			for _, v := range values {
				m.SetRaw(v[0], []byte(v[1]))
			}
			// JSON sets no limit on a number's digits; a server that refuses
			// these values does not store the request as sent.
			save := s.Do(m, "DATA-SAVE-5")
			t.deleteLater(s, spec.TypeData, key)
			if !t.Check(save, "DATA-SAVE-5", save.Status() == spec.StatusOK, fmt.Sprintf("the SAVE was answered with status %s", statusText(save.Status())), "status 200: the document stored as sent") {
				return
			}
			g := s.Do(s.KeyReq(spec.OpGet, spec.TypeData, key), "DATA-SAVE-5")
			t.Status(g, "DATA-GET-1", spec.StatusOK)
			raw, stored := g.Resp.Raw(spec.FieldToken)
			t.Check(g, "DATA-SAVE-5", !stored, fmt.Sprintf("the document came back with the SAVE's token (%s): the credential was stored", raw), "no token field: a credential is not data")
			for _, v := range values {
				got, ok := g.Resp.Raw(v[0])
				if !t.Check(g, "DATA-GET-1", ok, fmt.Sprintf("the document came back without %q", v[0]), fmt.Sprintf("%q: %s", v[0], v[1])) {
					continue
				}
				t.Check(g, "DATA-SAVE-5", string(got) == v[1], fmt.Sprintf("%q was saved as %s and comes back as %s", v[0], v[1], got), fmt.Sprintf("%q: %s, byte for byte", v[0], v[1]))
			}
		})

		r.Case(reqs("DATA-GET-1"), "GET returns every field the document was saved with", func(t *T) {
			s := t.Login()
			key := t.Key()
			fields := []any{"s", "text", "i", 7, "f", 2.5, "b", true, "z", nil,
				"list", []any{1, "two", []int{3}}, "obj", map[string]any{"a": map[string]any{"b": "c"}}}
			s.SaveData(key, fields...)
			g := s.Do(s.KeyReq(spec.OpGet, spec.TypeData, key), "DATA-GET-1")
			t.Status(g, "DATA-GET-1", spec.StatusOK)
			for i := 0; i < len(fields); i += 2 {
				t.Field(g, "DATA-GET-1", fields[i].(string), fields[i+1])
			}
		})

		r.Case(reqs("DATA-GET-4"), "GET returns the stored fields in saved order, its own five fields replacing stored ones", func(t *T) {
			s := t.Login()
			key := t.Key()
			m := s.KeyReq(spec.OpSave, spec.TypeData, key)
			m.Set("zz", 1).Set(spec.FieldStatus, "stored status").Set("b", 2).Set(spec.FieldStatusMsg, "stored status_msg").Set("a", 3).Set("m", 4)
			save := s.Do(m, "DATA-GET-4")
			t.deleteLater(s, spec.TypeData, key)
			if !t.Check(save, "DATA-GET-4", save.Status() == spec.StatusOK, fmt.Sprintf("a SAVE of fields named status and status_msg was answered with status %s", statusText(save.Status())), "status 200") {
				return
			}
			g := s.Do(s.KeyReq(spec.OpGet, spec.TypeData, key), "DATA-GET-4")
			// The stored status, operation, direction and type must not
			// come back in place of the response's own.
			st, isInt := g.Resp.Status()
			t.Check(g, "DATA-GET-4", isInt && st == spec.StatusOK, fmt.Sprintf("status is %s", rawOf(g, spec.FieldStatus)), "status 200, the response's own")
			t.Check(g, "DATA-GET-4", g.Resp.StatusMsg() != "stored status_msg", "status_msg is the stored document's, not the response's", "the response's own status_msg")
			t.Check(g, "DATA-GET-4", g.Resp.Operation() == spec.OpGet && g.Resp.Direction() == spec.DirResponse && g.Resp.Type() == spec.TypeData,
				fmt.Sprintf("operation %q, direction %q, type %q", g.Resp.Operation(), g.Resp.Direction(), g.Resp.Type()), `operation "GET", direction "RESPONSE", type "DATA"`)
			want := []string{"zz", "b", "a", "m"}
			var got []string
			for _, f := range g.Resp.Fields() {
				if slices.Contains(want, f) {
					got = append(got, f)
				}
			}
			t.Check(g, "DATA-GET-4", slices.Equal(got, want), fmt.Sprintf("the stored fields come back in the order %v", got), fmt.Sprintf("the order they were saved in: %v", want))
		})

		r.Case(reqs("DATA-GET-2"), "GET of an unknown key is answered 404", func(t *T) {
			s := t.Login()
			t.Status(s.Do(s.KeyReq(spec.OpGet, spec.TypeData, t.Key()), "DATA-GET-2"), "DATA-GET-2", spec.StatusKeyNotFound)
		})

		r.Case(reqs("DATA-GET-3"), "GET without a key is answered 410", func(t *T) {
			s := t.Login()
			t.Status(s.Do(s.Req(spec.OpGet, spec.TypeData), "DATA-GET-3"), "DATA-GET-3", spec.StatusFieldMissing)
		})

		r.Case(reqs("DATA-DELETE-1"), "DELETE of a stored key is answered 200 with the key and removes it", func(t *T) {
			s := t.Login()
			key := t.Key()
			s.SaveData(key, "v", 1)
			d := s.Do(s.KeyReq(spec.OpDelete, spec.TypeData, key), "DATA-DELETE-1")
			t.Status(d, "DATA-DELETE-1", spec.StatusOK)
			t.Field(d, "DATA-DELETE-1", spec.FieldKey, key)
			g := s.Do(s.KeyReq(spec.OpGet, spec.TypeData, key), "DATA-DELETE-1")
			t.Status(g, "DATA-DELETE-1", spec.StatusKeyNotFound)
			// The key is free again.
			s.SaveData(key, "v", 2)
		})

		r.Case(reqs("DATA-DELETE-2"), "DELETE of an unknown key is answered 404", func(t *T) {
			s := t.Login()
			t.Status(s.Do(s.KeyReq(spec.OpDelete, spec.TypeData, t.Key()), "DATA-DELETE-2"), "DATA-DELETE-2", spec.StatusKeyNotFound)
		})

		r.Case(reqs("DATA-DELETE-3"), "DELETE without a key is answered 410", func(t *T) {
			s := t.Login()
			t.Status(s.Do(s.Req(spec.OpDelete, spec.TypeData), "DATA-DELETE-3"), "DATA-DELETE-3", spec.StatusFieldMissing)
		})

		for _, op := range []spec.Operation{spec.OpUpload, spec.OpDownload} {
			op := op
			r.Case(reqs("DATA-OTHER-1", "DATA-OTHER-2"), fmt.Sprintf("DATA %s is refused (408 preferred)", op), func(t *T) {
				s := t.Login()
				key := t.Key()
				s.SaveData(key, "v", 1)
				m := s.KeyReq(op, spec.TypeData, key)
				m.Set(spec.FieldBlockIndex, 0)
				if op == spec.OpUpload {
					m.Binary = []byte("data")
				}
				rep := s.Do(m, "DATA-OTHER-1")
				t.Refused(rep, "DATA-OTHER-1", "DATA-OTHER-2", spec.StatusWrongOperation)
				g := s.Do(s.KeyReq(spec.OpGet, spec.TypeData, key), "DATA-OTHER-1")
				t.Field(g, "DATA-OTHER-1", "v", 1)
			})
		}
	})
}
