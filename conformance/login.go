package conformance

import (
	"fmt"
	"strings"

	"github.com/stepkit/stepkit/spec"
)

func loginReq(fields ...any) *spec.Message {
	m := spec.NewRequest(spec.OpLogin, spec.TypeAuth)
	for i := 0; i+1 < len(fields); i += 2 {
		m.Set(fields[i].(string), fields[i+1])
	}
	return m
}

// noToken checks that a refused LOGIN carries no token.
func (t *T) noToken(rep *Reply, req string) {
	tok, err := rep.Resp.Token()
	t.Check(rep, req, err != nil || tok == "", "a refused LOGIN returned a token", "no token")
}

// STEP.md section 6: login.
func loginCases(r *registrar) {
	r.Describe("6. Login", func() {
		r.Case(reqs("LOGIN-1"), "LOGIN with type DATA is answered 409", func(t *T) {
			c := t.Dial()
			u := t.User()
			m := loginReq(spec.FieldUsername, u.User, spec.FieldPassword, u.Password)
			m.Set(spec.FieldType, string(spec.TypeData))
			rep := t.DoOn(c, m, "LOGIN-1")
			t.Status(rep, "LOGIN-1", spec.StatusTypeNotAllowed)
			t.noToken(rep, "LOGIN-1")
		})

		r.Case(reqs("LOGIN-2"), "LOGIN without username is answered 410", func(t *T) {
			c := t.Dial()
			rep := t.DoOn(c, loginReq(spec.FieldPassword, t.User().Password), "LOGIN-2")
			t.Status(rep, "LOGIN-2", spec.StatusFieldMissing)
			t.noToken(rep, "LOGIN-2")
		})

		r.Case(reqs("LOGIN-3"), "LOGIN without password is answered 410", func(t *T) {
			c := t.Dial()
			rep := t.DoOn(c, loginReq(spec.FieldUsername, t.User().User), "LOGIN-3")
			t.Status(rep, "LOGIN-3", spec.StatusFieldMissing)
			t.noToken(rep, "LOGIN-3")
		})

		r.Case(reqs("LOGIN-4"), "LOGIN with a wrong password is answered 401 without a token", func(t *T) {
			c := t.Dial()
			u := t.User()
			wrong := coursePassword(u.User + "x")
			if !u.Course {
				wrong = u.Password + "-wrong"
			}
			rep := t.DoOn(c, loginReq(spec.FieldUsername, u.User, spec.FieldPassword, wrong), "LOGIN-4")
			t.Status(rep, "LOGIN-4", spec.StatusPasswordError)
			t.noToken(rep, "LOGIN-4")
		})

		r.Case(reqs("LOGIN-5"), "a successful LOGIN is answered 200 with a non-empty string token that works", func(t *T) {
			c := t.Dial()
			u := t.User()
			rep := t.DoOn(c, loginReq(spec.FieldUsername, u.User, spec.FieldPassword, u.Password), "LOGIN-5")
			t.Status(rep, "LOGIN-5", spec.StatusOK)
			tok := t.HasString(rep, "LOGIN-5", spec.FieldToken)
			s := &Session{Conn: c, t: t, Creds: u, Token: tok}
			g := s.Do(s.KeyReq(spec.OpGet, spec.TypeData, t.Key()), "LOGIN-5")
			t.Check(g, "LOGIN-5", g.Status() != spec.StatusTokenError, "the token LOGIN returned is refused with 403", "the token accepted")
		})

		r.Case(reqs("LOGIN-6"), "under the course rule the MD5 password is accepted in lower and upper case, and only it", func(t *T) {
			if !t.User().Course {
				t.NotApplicable("LOGIN-6", "the run uses real accounts (--user)")
			}
			u := t.User()
			c := t.Dial()
			for _, pw := range []string{u.Password, strings.ToUpper(u.Password)} {
				rep := t.DoOn(c, loginReq(spec.FieldUsername, u.User, spec.FieldPassword, pw), "LOGIN-6")
				t.Status(rep, "LOGIN-6", spec.StatusOK)
			}
			rep := t.DoOn(c, loginReq(spec.FieldUsername, u.User, spec.FieldPassword, coursePassword(u.User+u.User)), "LOGIN-6")
			t.Status(rep, "LOGIN-6", spec.StatusPasswordError)
		})

		r.Case(reqs("LOGIN-7"), "an empty username is refused with 410", func(t *T) {
			c := t.Dial()
			rep := t.DoOn(c, loginReq(spec.FieldUsername, "", spec.FieldPassword, coursePassword("")), "LOGIN-7")
			t.Status(rep, "LOGIN-7", spec.StatusFieldMissing)
		})

		for _, v := range []struct {
			field string
			value any
		}{{spec.FieldUsername, 12345}, {spec.FieldPassword, 12345}, {spec.FieldUsername, []string{"a"}}, {spec.FieldPassword, nil}} {
			v := v
			r.Case(reqs("LOGIN-8"), fmt.Sprintf("a %s that is %s is refused with a 4xx status", v.field, jsonKind(v.value)), func(t *T) {
				c := t.Dial()
				u := t.User()
				m := loginReq(spec.FieldUsername, u.User, spec.FieldPassword, u.Password)
				m.Set(v.field, v.value)
				rep := t.DoOn(c, m, "LOGIN-8")
				t.Refused(rep, "LOGIN-8", "", 0)
				t.noToken(rep, "LOGIN-8")
				// The connection is still served.
				t.LoginOn(c, u)
			})
		}
	})
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case int, int64, float64:
		return "a number"
	case []string, []any:
		return "an array"
	}
	return "a " + fmt.Sprintf("%T", v)
}
