package conformance

import (
	"fmt"
	"strings"

	"github.com/stepkit/stepkit/spec"
)

// STEP.md section 10: keys and isolation.
func keyCases(r *registrar) {
	r.Describe("10. Keys and isolation", func() {
		r.Case(reqs("KEY-1"), "DATA keys with spaces, non-ASCII text, dots and 255 bytes are accepted", func(t *T) {
			s := t.Login()
			long := "L" + randomHex(4)
			long += strings.Repeat("x", 255-len(long))
			for _, key := range []string{
				"with space " + randomHex(3),
				"ünïcødé-文件-" + randomHex(3),
				".hidden-" + randomHex(3),
				"..." + randomHex(3),
				"a..b-" + randomHex(3),
				long,
			} {
				rep := s.Do(s.KeyReq(spec.OpSave, spec.TypeData, key).Set("v", key), "KEY-1")
				if !t.Status(rep, "KEY-1", spec.StatusOK) {
					continue
				}
				t.deleteLater(s, spec.TypeData, key)
				g := s.Do(s.KeyReq(spec.OpGet, spec.TypeData, key), "KEY-1")
				t.Status(g, "KEY-1", spec.StatusOK)
				t.Field(g, "KEY-1", "v", key)
			}
		})

		r.Case(reqs("KEY-1"), "a FILE key with spaces and non-ASCII text uploads and downloads", func(t *T) {
			s := t.Login()
			key := "my file ü 文件 " + randomHex(3)
			data := randomBytes(40)
			s.UploadAll(key, data)
			s.VerifyStored(key, data, "KEY-1")
		})

		bad := []string{"a/b", "a\\b", "a\x00b", "a\x01b", "tab\tkey", "del\x7f", ".", "..", "../x", "..\\x", "/abs"}
		for _, typ := range []spec.Type{spec.TypeData, spec.TypeFile} {
			typ := typ
			r.Case(reqs("KEY-2", "KEY-3"), fmt.Sprintf("%s keys with '/', '\\', NUL, control characters, \".\" or \"..\" are refused (410 preferred)", typ), func(t *T) {
				s := t.Login()
				for _, key := range bad {
					m := s.KeyReq(spec.OpSave, typ, key)
					if typ == spec.TypeFile {
						m.Set(spec.FieldSize, 3)
					} else {
						m.Set("v", 1)
					}
					rep := s.Do(m, "KEY-2")
					if rep.Status() == spec.StatusOK {
						t.deleteLater(s, typ, key)
					}
					if !t.Refused(rep, "KEY-2", "KEY-3", spec.StatusFieldMissing) {
						continue
					}
					g := s.Do(s.KeyReq(spec.OpGet, typ, key), "KEY-2")
					t.Check(g, "KEY-2", g.Status().IsClientError(), fmt.Sprintf("GET of refused key %q got status %s", key, statusText(g.Status())), "a 4xx status")
					d := s.Do(s.KeyReq(spec.OpDelete, typ, key), "KEY-2")
					t.Check(d, "KEY-2", d.Status().IsClientError(), fmt.Sprintf("DELETE of refused key %q got status %s", key, statusText(d.Status())), "a 4xx status")
				}
			})
		}

		// The key's range is 1 to 255 bytes (section 3): refusing a key
		// outside it is REQ-9's MUST, the code KEY-3's SHOULD.
		r.Case(reqs("KEY-3", "REQ-9"), "an empty key and a key of 256 bytes are refused (410 preferred)", func(t *T) {
			s := t.Login()
			for _, key := range []string{"", strings.Repeat("y", 256)} {
				rep := s.Do(s.KeyReq(spec.OpSave, spec.TypeData, key).Set("v", 1), "KEY-3")
				if rep.Status() == spec.StatusOK {
					t.deleteLater(s, spec.TypeData, key)
				}
				t.Refused(rep, "REQ-9", "KEY-3", spec.StatusFieldMissing)
			}
		})

		r.Case(reqs("ISO-1"), "another user's DATA and FILE keys are answered 404", func(t *T) {
			a := t.Login()
			key := t.Key()
			a.SaveData(key, "secret", "A")
			a.UploadAll(key, randomBytes(30))
			b := t.LoginAs(t.OtherUser())
			t.Status(b.Do(b.KeyReq(spec.OpGet, spec.TypeData, key), "ISO-1"), "ISO-1", spec.StatusKeyNotFound)
			t.Status(b.GetPlan(key, "ISO-1"), "ISO-1", spec.StatusKeyNotFound)
			t.Status(b.Download(key, 0, "ISO-1"), "ISO-1", spec.StatusKeyNotFound)
			t.Status(b.Do(b.KeyReq(spec.OpDelete, spec.TypeData, key), "ISO-1"), "ISO-1", spec.StatusKeyNotFound)
			t.Status(b.Do(b.KeyReq(spec.OpDelete, spec.TypeFile, key), "ISO-1"), "ISO-1", spec.StatusKeyNotFound)
			g := a.Do(a.KeyReq(spec.OpGet, spec.TypeData, key), "ISO-1")
			t.Field(g, "ISO-1", "secret", "A")
		})

		r.Case(reqs("ISO-2"), "two users' keys of the same name are separate: save and delete touch only one's", func(t *T) {
			a := t.Login()
			b := t.LoginAs(t.OtherUser())
			key := t.Key()
			a.SaveData(key, "owner", "A")
			b.SaveData(key, "owner", "B")
			da, db := randomBytes(25), randomBytes(35)
			a.UploadAll(key, da)
			b.UploadAll(key, db)
			t.Status(b.Do(b.KeyReq(spec.OpDelete, spec.TypeData, key), "ISO-2"), "ISO-2", spec.StatusOK)
			t.Status(b.Do(b.KeyReq(spec.OpDelete, spec.TypeFile, key), "ISO-2"), "ISO-2", spec.StatusOK)
			g := a.Do(a.KeyReq(spec.OpGet, spec.TypeData, key), "ISO-2")
			t.Status(g, "ISO-2", spec.StatusOK)
			t.Field(g, "ISO-2", "owner", "A")
			a.VerifyStored(key, da, "ISO-2")
		})

		r.Case(reqs("ISO-3"), "keys such as ../OTHER/k never reach another user's storage", func(t *T) {
			a := t.Login()
			b := t.LoginAs(t.OtherUser())
			key := t.Key()
			a.SaveData(key, "secret", "A")
			a.UploadAll(key, randomBytes(30))
			au := a.Creds.User
			paths := []string{
				"../" + au + "/" + key,
				"../../data/" + au + "/" + key,
				"../../file/" + au + "/" + key,
				"..\\" + au + "\\" + key,
			}
			for _, p := range paths {
				for _, typ := range []spec.Type{spec.TypeData, spec.TypeFile} {
					g := b.Do(b.KeyReq(spec.OpGet, typ, p), "ISO-3")
					t.Check(g, "ISO-3", g.Status() != spec.StatusOK, fmt.Sprintf("user %s read %q of user %s", b.Creds.User, p, au), "a 4xx status")
				}
				sv := b.Do(b.KeyReq(spec.OpSave, spec.TypeData, "../"+au+"/planted-"+key).Set("v", "B"), "ISO-3")
				if sv.Status() == spec.StatusOK {
					t.deleteLater(b, spec.TypeData, "../"+au+"/planted-"+key)
				}
				d := b.Do(b.KeyReq(spec.OpDelete, spec.TypeData, p), "ISO-3")
				t.Check(d, "ISO-3", d.Status() != spec.StatusOK, fmt.Sprintf("user %s deleted %q", b.Creds.User, p), "a 4xx status")
			}
			t.Status(a.Do(a.KeyReq(spec.OpGet, spec.TypeData, "planted-"+key), "ISO-3"), "ISO-3", spec.StatusKeyNotFound)
			g := a.Do(a.KeyReq(spec.OpGet, spec.TypeData, key), "ISO-3")
			t.Status(g, "ISO-3", spec.StatusOK)
			t.Field(g, "ISO-3", "secret", "A")
			t.Status(a.GetPlan(key, "ISO-3"), "ISO-3", spec.StatusOK)
		})
	})
}
