package conformance

import (
	"fmt"

	"github.com/stepkit/stepkit/spec"
)

// battery sends one request of every operation and type, successful and
// refused, and returns the replies. echo marks the replies whose operation
// and type must echo the request (not the section 4 errors, not token
// errors).
type batteryReply struct {
	*Reply
	echoOp, echoType bool
}

func battery(t *T, req string) []batteryReply {
	var out []batteryReply
	add := func(r *Reply, op, typ bool) { out = append(out, batteryReply{r, op, typ}) }
	c := t.Dial()
	u := t.User()
	login := spec.NewRequest(spec.OpLogin, spec.TypeAuth)
	login.Set(spec.FieldUsername, u.User)
	login.Set(spec.FieldPassword, u.Password+"0")
	add(t.DoOn(c, login, req), true, true)
	s := t.LoginOn(c, u)
	key, fkey, unknown := t.Key(), t.Key(), t.Key()
	data := randomBytes(10)
	save := s.KeyReq(spec.OpSave, spec.TypeData, key)
	save.Set("v", 1)
	add(s.Do(save, req), true, true)
	add(s.Do(s.KeyReq(spec.OpGet, spec.TypeData, key), req), true, true)
	add(s.Do(s.KeyReq(spec.OpGet, spec.TypeData, unknown), req), true, true)
	add(s.Do(s.KeyReq(spec.OpDelete, spec.TypeData, key), req), true, true)
	add(s.Do(s.KeyReq(spec.OpDelete, spec.TypeData, unknown), req), true, true)
	plan := s.KeyReq(spec.OpSave, spec.TypeFile, fkey)
	plan.Set(spec.FieldSize, len(data))
	add(s.Do(plan, req), true, true)
	t.deleteLater(s, spec.TypeFile, fkey)
	add(s.UploadRaw(fkey, 0, data, req), true, true)
	add(s.GetPlan(fkey, req), true, true)
	add(s.Download(fkey, 0, req), true, true)
	add(s.Download(unknown, 0, req), true, true)
	add(s.Download(fkey, 7, req), true, true)
	add(s.GetPlan(unknown, req), true, true)
	add(s.Do(s.KeyReq(spec.OpDelete, spec.TypeFile, unknown), req), true, true)
	add(s.Do(s.KeyReq(spec.OpDelete, spec.TypeFile, fkey), req), true, true)
	noType := spec.NewMessage()
	noType.Set(spec.FieldOperation, "GET").Set(spec.FieldDirection, "REQUEST").Set(spec.FieldToken, s.Token).Set(spec.FieldKey, key)
	add(s.Do(noType, req), false, false)
	noToken := spec.NewRequest(spec.OpGet, spec.TypeData)
	noToken.Set(spec.FieldKey, key)
	add(s.Do(noToken, req), true, false)
	return out
}

func describeReq(r *Reply) string {
	if r.Req == nil {
		return "raw request"
	}
	return fmt.Sprintf("%s %s", r.Req.Operation(), r.Req.Type())
}

// STEP.md section 3: messages.
func messageCases(r *registrar) {
	r.Describe("3. Messages", func() {
		r.Case(reqs("MSG-1"), "every response carries operation, direction RESPONSE, type, an integer status and a string status_msg", func(t *T) {
			for _, b := range battery(t, "MSG-1") {
				m := b.Resp
				var missing []string
				if op, err := m.String(spec.FieldOperation); err != nil || op == "" {
					missing = append(missing, "operation (a string)")
				}
				if m.Direction() != spec.DirResponse {
					missing = append(missing, `direction "RESPONSE"`)
				}
				if ty, err := m.String(spec.FieldType); err != nil || ty == "" {
					missing = append(missing, "type (a string)")
				}
				if _, ok := m.Status(); !ok {
					missing = append(missing, "status (an integer)")
				}
				if _, err := m.String(spec.FieldStatusMsg); err != nil {
					missing = append(missing, "status_msg (a string)")
				}
				t.Check(b.Reply, "MSG-1", len(missing) == 0, fmt.Sprintf("the response to %s lacks %v", describeReq(b.Reply), missing), "operation, direction, type, status, status_msg")
			}
		})

		r.Case(reqs("MSG-2"), "a response's operation echoes the request's (FILE DELETE and DOWNLOAD errors included)", func(t *T) {
			for _, b := range battery(t, "MSG-2") {
				if !b.echoOp {
					continue
				}
				want := b.Req.Operation()
				t.Check(b.Reply, "MSG-2", b.Resp.Operation() == want, fmt.Sprintf("the response to %s says operation %q", describeReq(b.Reply), b.Resp.Operation()), fmt.Sprintf("operation %q", want))
			}
		})

		r.Case(reqs("MSG-5"), "a response's type echoes the request's", func(t *T) {
			for _, b := range battery(t, "MSG-5") {
				if !b.echoType {
					continue
				}
				want := b.Req.Type()
				t.Check(b.Reply, "MSG-5", b.Resp.Type() == want, fmt.Sprintf("the response to %s says type %q", describeReq(b.Reply), b.Resp.Type()), fmt.Sprintf("type %q", want))
			}
		})

		r.Case(reqs("MSG-4"), "fields beyond those an operation uses are ignored (LOGIN, DATA GET, FILE SAVE, UPLOAD)", func(t *T) {
			c := t.Dial()
			u := t.User()
			login := spec.NewRequest(spec.OpLogin, spec.TypeAuth)
			login.Set(spec.FieldUsername, u.User).Set(spec.FieldPassword, u.Password)
			login.Set("client", "conformance").Set("block_index", 3).Set("extra", map[string]any{"a": []int{1, 2}})
			lr := t.DoOn(c, login, "MSG-4")
			t.Status(lr, "MSG-4", spec.StatusOK)
			tok := t.HasString(lr, "MSG-4", spec.FieldToken)
			s := &Session{Conn: c, t: t, Creds: u, Token: tok}
			key := t.Key()
			s.SaveData(key)
			g := s.KeyReq(spec.OpGet, spec.TypeData, key)
			g.Set(spec.FieldSize, 99).Set(spec.FieldMD5, "x").Set("whatever", true)
			t.Status(s.Do(g, "MSG-4"), "MSG-4", spec.StatusOK)
			fkey := t.Key()
			plan := s.KeyReq(spec.OpSave, spec.TypeFile, fkey)
			plan.Set(spec.FieldSize, 5).Set(spec.FieldBlockIndex, 9).Set(spec.FieldPassword, "p").Set("note", "hi")
			pr := s.Do(plan, "MSG-4")
			t.deleteLater(s, spec.TypeFile, fkey)
			p := t.checkPlan(pr, "MSG-4", fkey, 5)
			up := s.KeyReq(spec.OpUpload, spec.TypeFile, fkey)
			up.Set(spec.FieldBlockIndex, 0).Set(spec.FieldSize, 1234).Set("note", "x")
			up.Binary = []byte("abcde")
			ur := s.Do(up, "MSG-4")
			t.Status(ur, "MSG-4", spec.StatusOK)
			_ = p
		})

		r.Case(reqs("MSG-6"), "refused requests of every kind get a status of 400 or more, never 200, and change nothing", func(t *T) {
			s := t.Login()
			key, fkey, unknown, forged := t.Key(), t.Key(), t.Key(), t.Key()
			s.SaveData(key, "v", "first")
			again := s.KeyReq(spec.OpSave, spec.TypeData, key).Set("v", "second")
			// A well-formed token with a wrong signature: the reference
			// answers it (a token that is not base64 it leaves unanswered,
			// which REQ-6 judges).
			tok, ok := tamperSig(s.Token)
			if !ok {
				tok = flipMiddle(s.Token)
			}
			badToken := rawRequest("operation", "SAVE", "direction", "REQUEST", "type", "DATA", "token", tok, "key", forged, "v", "forged")
			noSize := s.KeyReq(spec.OpSave, spec.TypeFile, fkey)
			t.deleteLater(s, spec.TypeFile, fkey)
			upload := s.KeyReq(spec.OpUpload, spec.TypeFile, fkey).Set(spec.FieldBlockIndex, 0)
			upload.Binary = []byte("never planned")
			refusals := []*spec.Message{
				again,
				s.KeyReq(spec.OpGet, spec.TypeData, unknown),
				s.KeyReq(spec.OpDelete, spec.TypeData, unknown),
				s.Req(spec.OpGet, spec.TypeData),
				badToken,
				noSize,
				upload,
				s.KeyReq(spec.OpGet, spec.TypeFile, unknown),
				s.KeyReq(spec.OpDownload, spec.TypeFile, unknown).Set(spec.FieldBlockIndex, 0),
				s.KeyReq(spec.OpDelete, spec.TypeFile, unknown),
			}
			for _, m := range refusals {
				rep := s.Do(m, "MSG-6")
				st := rep.Status()
				t.Check(rep, "MSG-6", st >= 400, fmt.Sprintf("the refused %s was answered with status %s", describeReq(rep), statusText(st)), "a status of 400 or more")
			}
			// Nothing the refusals touched changed.
			g := s.Do(s.KeyReq(spec.OpGet, spec.TypeData, key), "MSG-6")
			t.Status(g, "MSG-6", spec.StatusOK)
			t.Field(g, "MSG-6", "v", "first")
			g = s.Do(s.KeyReq(spec.OpGet, spec.TypeData, forged), "MSG-6")
			if g.Status() == spec.StatusOK {
				t.deleteLater(s, spec.TypeData, forged)
			}
			t.Check(g, "MSG-6", g.Status() == spec.StatusKeyNotFound, fmt.Sprintf("a SAVE refused for its token left %q behind (GET status %s)", forged, statusText(g.Status())), "GET 404: nothing stored")
			s.notPlanned(fkey, []byte("x"), "MSG-6", "SAVE without size was refused")
			t.Status(s.GetPlan(fkey, "MSG-6"), "MSG-6", spec.StatusKeyNotFound)
		})
	})
}
