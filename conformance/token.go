package conformance

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/onsi/gomega"

	"github.com/stepkit/stepkit/spec"
)

// courseSalt is the fixed salt of the course's token recipe.
const courseSalt = "kjh20)*(1"

// tokenStatus sends a DATA SAVE carrying token (any JSON value, or absent
// when nil) on a fresh connection and returns the reply.
func tokenProbe(t *T, token any, req string) *Reply {
	c := t.Dial()
	m := spec.NewRequest(spec.OpSave, spec.TypeData)
	if token != nil {
		m.Set(spec.FieldToken, token)
	}
	key := t.Key()
	m.Set(spec.FieldKey, key)
	rep := t.DoOn(c, m, req)
	return rep
}

// refusedToken checks a 403 under req.
func refusedToken(t *T, rep *Reply, req string) {
	t.Status(rep, req, spec.StatusTokenError)
}

// STEP.md section 7: tokens.
func tokenCases(r *registrar) {
	r.Describe("7. Tokens", func() {
		r.Case(reqs("TOKEN-1"), "a request without a token is answered 403 with type AUTH", func(t *T) {
			for _, typ := range []spec.Type{spec.TypeData, spec.TypeFile} {
				c := t.Dial()
				m := spec.NewRequest(spec.OpGet, typ)
				m.Set(spec.FieldKey, t.Key())
				rep := t.DoOn(c, m, "TOKEN-1")
				t.Status(rep, "TOKEN-1", spec.StatusTokenError)
				t.Check(rep, "TOKEN-1", rep.Resp.Type() == spec.TypeAuth, fmt.Sprintf("type %q", rep.Resp.Type()), `type "AUTH"`)
			}
		})

		r.Case(reqs("TOKEN-2"), "a token that is not base64 is answered 403", func(t *T) {
			refusedToken(t, tokenProbe(t, "%%% not base64 %%%", "TOKEN-2"), "TOKEN-2")
		})

		for _, parts := range []string{"a.b.c", "a.b.c.d.e", "nodots"} {
			parts := parts
			r.Case(reqs("TOKEN-3"), fmt.Sprintf("a token decoding to %q is answered 403", parts), func(t *T) {
				refusedToken(t, tokenProbe(t, b64.EncodeToString([]byte(parts)), "TOKEN-3"), "TOKEN-3")
			})
		}

		r.Case(reqs("TOKEN-4", "ISO-1"), "a token with another user's name but the original signature is answered 403", func(t *T) {
			victim := t.LoginAs(t.OtherUser())
			key := t.Key()
			victim.SaveData(key, "secret", "victim's")
			s := t.Login()
			forged, ok := tamperUser(s.Token, victim.Creds.User)
			if !ok {
				forged = flipMiddle(s.Token)
			}
			rep := s.Do(rawRequest("operation", "GET", "direction", "REQUEST", "type", "DATA", "key", key, "token", forged), "TOKEN-4")
			if v, err := secretOf(rep); err == nil && v == "victim's" {
				// The forged token read the other user's document.
				t.record(rep, "ISO-1", "a token forged from another user's name read that user's document", "403 (or 404): no other user's data", false)
			}
			refusedToken(t, rep, "TOKEN-4")
		})

		r.Case(reqs("TOKEN-4"), "a token with a changed time but the original signature is answered 403", func(t *T) {
			s := t.Login()
			forged, ok := tamperTime(s.Token)
			if !ok {
				forged = flipMiddle(s.Token)
			}
			refusedToken(t, tokenProbe(t, forged, "TOKEN-4"), "TOKEN-4")
		})

		r.Case(reqs("TOKEN-4"), "a token with a wrong signature is answered 403", func(t *T) {
			s := t.Login()
			forged, ok := tamperSig(s.Token)
			if !ok {
				forged = flipMiddle(s.Token)
			}
			refusedToken(t, tokenProbe(t, forged, "TOKEN-4"), "TOKEN-4")
		})

		r.Case(reqs("TOKEN-6"), "a token works on another connection than the one it was issued on", func(t *T) {
			s := t.Login()
			c := t.Dial()
			other := &Session{Conn: c, t: t, Creds: s.Creds, Token: s.Token}
			key := t.Key()
			rep := other.Do(other.KeyReq(spec.OpSave, spec.TypeData, key), "TOKEN-6")
			t.Status(rep, "TOKEN-6", spec.StatusOK)
			t.deleteLater(other, spec.TypeData, key)
			s.Conn.Close()
			g := other.Do(other.KeyReq(spec.OpGet, spec.TypeData, key), "TOKEN-6")
			t.Status(g, "TOKEN-6", spec.StatusOK)
		})

		r.SlowCase(reqs("TOKEN-7"), "an expired token is answered 403 (servers whose tokens expire)", func(c Config) time.Duration { return c.TokenTTL + time.Second }, func(t *T) {
			ttl := t.Config().TokenTTL
			if ttl <= 0 {
				t.NotApplicable("TOKEN-7", "token expiry not configured for this run (--token-ttl)")
			}
			s := t.Login()
			s.Conn.Close()
			t.Sleep(ttl + time.Second)
			// A fresh connection: the server may close idle ones meanwhile.
			late := &Session{Conn: t.Dial(), t: t, Creds: s.Creds, Token: s.Token}
			rep := late.Do(late.KeyReq(spec.OpGet, spec.TypeData, t.Key()), "TOKEN-7")
			t.Status(rep, "TOKEN-7", spec.StatusTokenError)
		})

		r.Case(reqs("TOKEN-8"), "in course mode the token follows the course recipe", func(t *T) {
			if !t.User().Course {
				t.NotApplicable("TOKEN-8", "the run uses real accounts (--user)")
			}
			s := t.Login()
			raw, err := b64.DecodeString(s.Token)
			rep := &Reply{Evidence: "token " + s.Token}
			if !t.Check(rep, "TOKEN-8", err == nil, "the token is not standard base64: "+errOr(err, ""), "base64(USER.TIME.login.SIG)") {
				return
			}
			p := strings.Split(string(raw), ".")
			if !t.Check(rep, "TOKEN-8", len(p) == 4, fmt.Sprintf("the token decodes to %q, not four parts", raw), "USER.TIME.login.SIG") {
				return
			}
			user := strings.ReplaceAll(s.Creds.User, ".", "_")
			t.Check(rep, "TOKEN-8", p[0] == user, fmt.Sprintf("the user part is %q", p[0]), "the username with '.' made '_': "+user)
			t.Expect(rep, "TOKEN-8", p[1], gomega.MatchRegexp(timeStamp().String()), "the time part is not YYYYmmddHHMMSS")
			t.Check(rep, "TOKEN-8", p[2] == "login", fmt.Sprintf("the third part is %q", p[2]), `"login"`)
			want := md5hex([]byte(p[0] + "." + p[1] + "." + p[2] + courseSalt))
			t.Check(rep, "TOKEN-8", strings.EqualFold(p[3], want), fmt.Sprintf("the signature is %q", p[3]), "md5(USER.TIME.login + salt) = "+want)
		})

		r.Case(reqs("TOKEN-10"), "a request naming another user in its fields still acts on its token's user", func(t *T) {
			victim := t.LoginAs(t.OtherUser())
			key, only := t.Key(), t.Key()
			victim.SaveData(key, "owner", "victim")
			victim.SaveData(only, "owner", "victim")
			s := t.Login()
			as := func(m *spec.Message) *spec.Message {
				return m.Set(spec.FieldUsername, victim.Creds.User).Set("user", victim.Creds.User)
			}
			// The same key for the token's user is new: a 402 means the
			// request went to the victim's keys.
			save := s.Do(as(s.KeyReq(spec.OpSave, spec.TypeData, key).Set("owner", "token's user")), "TOKEN-10")
			if save.Status() == spec.StatusOK {
				t.deleteLater(s, spec.TypeData, key)
			}
			t.Check(save, "TOKEN-10", save.Status() == spec.StatusOK,
				fmt.Sprintf("a SAVE of a key only the other user (named in \"username\") has got status %s", statusText(save.Status())),
				"status 200: the key is new for the token's user")
			g := s.Do(as(s.KeyReq(spec.OpGet, spec.TypeData, key)), "TOKEN-10")
			t.Status(g, "TOKEN-10", spec.StatusOK)
			t.Field(g, "TOKEN-10", "owner", "token's user")
			t.Status(s.Do(as(s.KeyReq(spec.OpGet, spec.TypeData, only)), "TOKEN-10"), "TOKEN-10", spec.StatusKeyNotFound)
			t.Status(s.Do(as(s.KeyReq(spec.OpDelete, spec.TypeData, only)), "TOKEN-10"), "TOKEN-10", spec.StatusKeyNotFound)
			// The other user's documents are as they were.
			for _, k := range []string{key, only} {
				vg := victim.Do(victim.KeyReq(spec.OpGet, spec.TypeData, k), "TOKEN-10")
				t.Status(vg, "TOKEN-10", spec.StatusOK)
				t.Field(vg, "TOKEN-10", "owner", "victim")
			}
		})

		for _, v := range []any{12345, true, map[string]string{"t": "x"}} {
			v := v
			r.Case(reqs("TOKEN-9"), fmt.Sprintf("a token that is %s is answered 403", jsonKind(v)), func(t *T) {
				refusedToken(t, tokenProbe(t, v, "TOKEN-9"), "TOKEN-9")
			})
		}

		r.LateCase(reqs("TOKEN-11"), "in course mode, the run's first token still works at its end, on a new connection", func(c Config) time.Duration { return tokenMinAge }, func(t *T) {
			if !t.User().Course {
				t.NotApplicable("TOKEN-11", "the run uses real accounts (--user), whose tokens may expire (TOKEN-7)")
			}
			if t.pre == nil || t.pre.first.token == "" {
				t.NotApplicable("TOKEN-11", "the run's first LOGIN gave no token to reuse")
			}
			first := t.pre.first
			// The case runs last, so the token is as old as the run; a run
			// of a few cases waits until it is tokenMinAge old.
			if age := time.Since(first.at); age < tokenMinAge {
				t.Sleep(tokenMinAge - age)
			}
			old := &Session{Conn: t.Dial(), t: t, Creds: first.creds, Token: first.token}
			t.Note("reusing the token issued %v ago by the run's first LOGIN", time.Since(first.at).Round(time.Millisecond))
			key := t.Key()
			rep := old.Do(old.KeyReq(spec.OpSave, spec.TypeData, key).Set("v", 1), "TOKEN-11")
			if rep.Status() == spec.StatusOK {
				t.deleteLater(old, spec.TypeData, key)
			}
			if !t.Check(rep, "TOKEN-11", rep.Status() == spec.StatusOK, fmt.Sprintf("a token issued %v ago was answered with status %s", time.Since(first.at).Round(time.Second), statusText(rep.Status())), "status 200: the token is still valid") {
				return
			}
			g := old.Do(old.KeyReq(spec.OpGet, spec.TypeData, key), "TOKEN-11")
			t.Status(g, "TOKEN-11", spec.StatusOK)
		})
	})
}

// secretOf reads the "secret" field a DATA GET response carries.
func secretOf(r *Reply) (string, error) {
	if r.Resp == nil {
		return "", spec.ErrFieldMissing
	}
	return r.Resp.String("secret")
}

// tokenMinAge is the least age at which TOKEN-11 reuses a token: tokens
// carry whole seconds, so a lifetime of a second or less is then seen.
const tokenMinAge = 2 * time.Second

var timeStamp = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\d{14}$`) })

func splitToken(tok string) ([]string, bool) {
	raw, err := b64.DecodeString(tok)
	if err != nil {
		return nil, false
	}
	p := strings.Split(string(raw), ".")
	return p, len(p) == 4
}

func joinToken(p []string) string { return b64.EncodeToString([]byte(strings.Join(p, "."))) }

func tamperUser(tok, user string) (string, bool) {
	p, ok := splitToken(tok)
	if !ok {
		return "", false
	}
	p[0] = strings.ReplaceAll(user, ".", "_")
	return joinToken(p), true
}

func tamperTime(tok string) (string, bool) {
	p, ok := splitToken(tok)
	if !ok || p[1] == "" {
		return "", false
	}
	if timeStamp().MatchString(p[1]) {
		p[1] = "20991231235959"
	} else {
		p[1] += "0"
	}
	return joinToken(p), true
}

func tamperSig(tok string) (string, bool) {
	p, ok := splitToken(tok)
	if !ok || p[3] == "" {
		return "", false
	}
	b := []byte(p[3])
	if b[0] == '0' {
		b[0] = '1'
	} else {
		b[0] = '0'
	}
	p[3] = string(b)
	return joinToken(p), true
}

// flipMiddle changes one character in the middle of an opaque token.
func flipMiddle(tok string) string {
	if tok == "" {
		return "x"
	}
	b := []byte(tok)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
