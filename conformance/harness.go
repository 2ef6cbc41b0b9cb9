package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	gomegatypes "github.com/onsi/gomega/types"

	"github.com/stepkit/stepkit/spec"
)

// abortCase unwinds a case body after a finding that ends it (a broken MUST,
// an ERROR). T.run recovers it.
type abortCase struct{}

// T is what a case body works with: connections, users, keys, and the checks
// that turn observations into findings. Checks against a MUST end the case
// when they fail; checks against a SHOULD or MAY record and go on.
type T struct {
	ctx     context.Context
	cfg     Config
	c       *Case
	res     *result
	log     *wireLog
	conns   []*Conn
	cleanup []func()
	user    Creds
	other   *Creds
	pre     *preflight // the run's preflight, when the case runs in a suite
	judge   *silenceJudge
}

func newT(ctx context.Context, cfg Config, c *Case, res *result) *T {
	t := &T{ctx: ctx, cfg: cfg, c: c, res: res, log: res.log}
	if cfg.courseLogin() {
		t.user = randomUser()
	} else {
		t.user = Creds{User: cfg.User, Password: cfg.Password}
	}
	return t
}

// run executes body, turning an abort or a panic into the case's result,
// then runs the cleanups and closes every connection.
func (t *T) run(body func(*T)) {
	defer t.finish()
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(abortCase); ok {
				return
			}
			t.res.add(Finding{Outcome: Error, Message: fmt.Sprintf("the case itself failed: %v", v)})
		}
	}()
	body(t)
}

func (t *T) finish() {
	for i := len(t.cleanup) - 1; i >= 0; i-- {
		func() {
			defer func() { _ = recover() }()
			t.cleanup[i]()
		}()
	}
	for _, c := range t.conns {
		_ = c.Close()
	}
}

// Defer runs f when the case ends, whatever its outcome; cases use it to
// delete what they created. Findings inside f are ignored.
func (t *T) Defer(f func()) { t.cleanup = append(t.cleanup, f) }

// Sleep waits for d, or ends the case when it runs out of time first.
func (t *T) Sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-t.ctx.Done():
		t.abortError(fmt.Sprintf("the case ran out of time while waiting %v", d))
	}
}

// Config is the run's configuration.
func (t *T) Config() Config { return t.cfg }

// Note adds a line to the case's report without changing its outcome.
func (t *T) Note(format string, args ...any) { t.res.note(fmt.Sprintf(format, args...)) }

// Key returns a fresh random key for this case.
func (t *T) Key() string { return "k-" + randomHex(6) }

// User is the case's user.
func (t *T) User() Creds { return t.user }

// OtherUser is a second user, distinct from User.
func (t *T) OtherUser() Creds {
	if t.other == nil {
		var o Creds
		switch {
		case t.cfg.User2 != "":
			o = Creds{User: t.cfg.User2, Password: t.cfg.Password2}
		default:
			o = randomUser()
		}
		t.other = &o
	}
	return *t.other
}

// ---- connections

// Dial opens a fresh connection. Failing to connect is an ERROR: the case
// cannot run.
func (t *T) Dial() *Conn {
	c, err := t.dial("tcp", t.cfg.Target)
	if err != nil {
		t.abortError(err.Error())
	}
	return c
}

// dial opens a connection to addr over network ("tcp", "tcp4") and
// returns the error for the case to judge.
func (t *T) dial(network, addr string) (*Conn, error) {
	if t.ctx.Err() != nil {
		t.abortError("the case ran out of time before connecting")
	}
	c, err := dialConnNet(t.ctx, network, addr, len(t.conns)+1, t.cfg.ReadTimeout, t.log)
	if err != nil {
		return nil, err
	}
	c.judge = t.judge
	c.note = t.res.note
	c.unconfirmed = t.res.markUnconfirmed
	c.firm = t.res.markFirm
	t.conns = append(t.conns, c)
	// A case that runs out of time must not stay blocked in a read.
	stop := context.AfterFunc(t.ctx, func() { _ = c.Close() })
	t.Defer(func() { stop() })
	return c, nil
}

// Session is a connection with a logged-in user.
type Session struct {
	*Conn
	t     *T
	Creds Creds
	Token string
	// Login is the LOGIN exchange that opened the session: what the
	// server advertised in its answer (EXT-6) is read from it.
	Login *Reply
}

// Login opens a connection and logs the case's user in.
func (t *T) Login() *Session { return t.LoginAs(t.user) }

// LoginAs opens a connection and logs u in. A login that fails is a broken
// LOGIN-5 (or LOGIN-6 under the course rule).
func (t *T) LoginAs(u Creds) *Session {
	c := t.Dial()
	return t.LoginOn(c, u)
}

// LoginOn logs u in on an open connection.
func (t *T) LoginOn(c *Conn, u Creds) *Session {
	req := spec.NewRequest(spec.OpLogin, spec.TypeAuth)
	req.Set(spec.FieldUsername, u.User)
	req.Set(spec.FieldPassword, u.Password)
	return t.loggedIn(c, u, t.DoOn(c, req, "LOGIN-5"))
}

// loggedIn judges r, the answer to u's LOGIN on c, and returns the session.
func (t *T) loggedIn(c *Conn, u Creds, r *Reply) *Session {
	if u.Course && !t.cfg.courseLogin() && r.Status() != spec.StatusOK {
		// A made-up user on a server with real accounts: the run lacks a
		// second account, which is no fault of the server.
		t.abortError(fmt.Sprintf("this case needs a second user and the server refused a made-up one (status %s): give --user2 and --password2", statusText(r.Status())))
	}
	req5 := "LOGIN-5"
	if u.Course {
		req5 = "LOGIN-6"
	}
	t.Status(r, req5, spec.StatusOK)
	tok, err := r.Resp.Token()
	if err != nil || tok == "" {
		t.Fail(r, "LOGIN-5", "the LOGIN response has no usable token", "a non-empty string token")
	}
	return &Session{Conn: c, t: t, Creds: u, Token: tok, Login: r}
}

// Req builds a request carrying the session's token.
func (s *Session) Req(op spec.Operation, typ spec.Type) *spec.Message {
	m := spec.NewRequest(op, typ)
	m.Set(spec.FieldToken, s.Token)
	return m
}

// KeyReq builds a request with the token and a key.
func (s *Session) KeyReq(op spec.Operation, typ spec.Type, key string) *spec.Message {
	m := s.Req(op, typ)
	m.Set(spec.FieldKey, key)
	return m
}

// Do sends m and returns its response; see T.DoOn.
func (s *Session) Do(m *spec.Message, req string) *Reply { return s.t.DoOn(s.Conn, m, req) }

// Reply is one request and what came back for it.
type Reply struct {
	Conn *Conn
	Req  *spec.Message // nil when raw bytes were sent
	Raw  []byte
	Resp *spec.Message // nil when Err is set
	Err  error
	Took time.Duration
	// Evidence stands in for the response when a check is about something
	// else the server gave (a token, a file's content).
	Evidence string
}

// Status is the response's status, or -1 when it has none.
func (r *Reply) Status() spec.Status {
	if r.Resp == nil {
		return -1
	}
	s, ok := r.Resp.Status()
	if !ok {
		return -1
	}
	return s
}

func (r *Reply) sent() string {
	switch {
	case r == nil:
		return ""
	case r.Req != nil:
		s := r.Req.JSONString()
		if n := len(r.Req.Binary); n > 0 {
			s += fmt.Sprintf(" + %d binary bytes", n)
		}
		return s
	case r.Raw != nil:
		return "raw bytes:\n" + hexDump(r.Raw, 128)
	}
	return ""
}

func (r *Reply) received() string {
	switch {
	case r == nil:
		return ""
	case r.Evidence != "":
		return r.Evidence
	case r.Resp != nil:
		s := r.Resp.JSONString()
		if n := len(r.Resp.Binary); n > 0 {
			s += fmt.Sprintf(" + %d binary bytes", n)
		}
		return s
	case r.Err != nil:
		return "(" + r.Err.Error() + ")"
	}
	return ""
}

// Send writes m without waiting for an answer (pipelining).
func (t *T) Send(c *Conn, m *spec.Message) {
	if err := c.WriteMessage(m); err != nil {
		t.transportFailure(&Reply{Conn: c, Req: m, Err: err}, "")
	}
}

// SendRaw writes raw bytes without waiting for an answer.
func (t *T) SendRaw(c *Conn, b []byte, note string) {
	if err := c.WriteRaw(b, note); err != nil {
		t.transportFailure(&Reply{Conn: c, Raw: b, Err: err}, "")
	}
}

// Try sends m and reads one response; unlike DoOn it returns silence, a
// closed connection or an unreadable frame in Reply.Err for the case to judge.
func (t *T) Try(c *Conn, m *spec.Message) *Reply {
	start := time.Now()
	if err := c.WriteMessage(m); err != nil {
		return &Reply{Conn: c, Req: m, Err: err, Took: time.Since(start)}
	}
	resp, err := c.ReadMessage()
	return &Reply{Conn: c, Req: m, Resp: resp, Err: err, Took: time.Since(start)}
}

// TryRaw sends raw bytes and reads one response, as Try.
func (t *T) TryRaw(c *Conn, b []byte, note string) *Reply {
	start := time.Now()
	if err := c.WriteRaw(b, note); err != nil {
		return &Reply{Conn: c, Raw: b, Err: err, Took: time.Since(start)}
	}
	resp, err := c.ReadMessage()
	return &Reply{Conn: c, Raw: b, Resp: resp, Err: err, Took: time.Since(start)}
}

// Read reads the next response for a request sent earlier with Send.
func (t *T) Read(c *Conn, sent *spec.Message, req string) *Reply {
	resp, err := c.ReadMessage()
	r := &Reply{Conn: c, Req: sent, Resp: resp, Err: err}
	if err != nil {
		t.transportFailure(r, req)
	}
	return r
}

// DoOn sends m on c and returns its response. No response — silence, a
// closed connection, bytes that are not a frame — fails req (the
// requirement the case checks) and REQ-6, and ends the case.
func (t *T) DoOn(c *Conn, m *spec.Message, req string) *Reply {
	r := t.Try(c, m)
	if r.Err != nil {
		t.transportFailure(r, req)
	}
	return r
}

// DoRaw sends raw bytes on c and returns the response, as DoOn.
func (t *T) DoRaw(c *Conn, b []byte, note, req string) *Reply {
	r := t.TryRaw(c, b, note)
	if r.Err != nil {
		t.transportFailure(r, req)
	}
	return r
}

func (t *T) transportFailure(r *Reply, req string) {
	if t.ctx.Err() != nil {
		t.abortError(fmt.Sprintf("the case ran out of time (%v)", t.cfg.CaseTimeout))
	}
	if req == "" {
		req = t.c.Reqs[0]
	}
	msg, reqs := describeNoAnswer(r.Err)
	var fe *spec.FrameError
	if errors.As(r.Err, &fe) {
		// A frame that cannot be read is the framing's fault, not the
		// operation's: blame the framing requirement alone.
		t.Fail(r, reqs[0], msg, "a well-formed STEP frame")
	}
	if errors.Is(r.Err, ErrSilent) && r.Conn != nil && r.Conn.answered == 0 && t.openConns() > 1 {
		// A server that serves one connection at a time is silent on the
		// second one: name the requirement that is really at stake.
		msg += " (another connection of this case was open: a server serving one connection at a time stalls here)"
		reqs = append(reqs, "CONN-3")
	}
	for _, extra := range reqs {
		if extra != req {
			t.record(r, extra, msg, "exactly one response to the request", false)
		}
	}
	t.Fail(r, req, msg, "a response")
	// The case ends here whatever req's level: a SHOULD or MAY recorded
	// above does not end it by itself, and judging a response that never
	// came would only add findings about a status that is not there.
	panic(abortCase{})
}

func (t *T) openConns() int {
	n := 0
	for _, c := range t.conns {
		if !c.closed.Load() {
			n++
		}
	}
	return n
}

// describeNoAnswer explains a read that gave no frame and names the
// requirements that silence or a hang-up breaks besides the case's own.
func describeNoAnswer(err error) (string, []string) {
	var fe *spec.FrameError
	switch {
	case errors.Is(err, ErrSilent):
		return "the server did not answer: " + err.Error(), []string{"REQ-6"}
	case errors.Is(err, ErrClosed):
		return "the server closed the connection instead of answering", []string{"REQ-6"}
	case errors.Is(err, spec.ErrCharCountLength):
		return "the server's JSON length counts characters, not bytes: " + err.Error(), []string{"FRAME-2"}
	case errors.As(err, &fe):
		return "the server's answer is not a valid STEP frame: " + fe.Error(), []string{"FRAME-1"}
	}
	return "the exchange failed: " + err.Error(), []string{"REQ-6"}
}

// ---- checks

// record adds a finding against req for r. end says whether a broken MUST
// ends the case.
func (t *T) record(r *Reply, req, msg, expected string, end bool) {
	rq, ok := spec.Lookup(req)
	if !ok {
		panic(fmt.Sprintf("conformance: case %s cites unknown requirement %s", t.c.ID, req))
	}
	f := Finding{Outcome: outcomeFor(rq.Level), Requirement: rq.ID, Level: string(rq.Level), Text: rq.Text,
		Message: msg, Expected: expected, Sent: r.sent(), Received: r.received()}
	if r != nil && r.Err != nil && r.Conn != nil {
		// The exchange already holds the bytes; repeat them where they decide.
		var fe *spec.FrameError
		if errors.As(r.Err, &fe) {
			for _, e := range t.log.snapshot() {
				if e.Conn == r.Conn.id && e.Hex != "" && e.Dir == "note" {
					f.ReceivedHex = e.Hex
				}
			}
		}
	}
	t.res.add(f)
	if end && f.Outcome == Fail {
		panic(abortCase{})
	}
}

// Fail records a broken requirement. For a MUST it ends the case.
func (t *T) Fail(r *Reply, req, msg, expected string) { t.record(r, req, msg, expected, true) }

// FailTerms records req as FAILed whatever its level, and ends the case:
// for the MUST an optional requirement carries (a server that advertises
// an extension must keep to it, EXT-6), where the requirement's MAY level
// would make an ordinary finding merely INFORMATIONAL.
func (t *T) FailTerms(r *Reply, req, msg, expected string) {
	rq, ok := spec.Lookup(req)
	if !ok {
		panic(fmt.Sprintf("conformance: case %s cites unknown requirement %s", t.c.ID, req))
	}
	t.res.add(Finding{Outcome: Fail, Requirement: rq.ID, Level: string(rq.Level), Text: rq.Text,
		Message: msg, Expected: expected, Sent: r.sent(), Received: r.received()})
	panic(abortCase{})
}

// Check records a finding against req when ok is false and reports ok.
func (t *T) Check(r *Reply, req string, ok bool, msg, expected string) bool {
	if !ok {
		t.record(r, req, msg, expected, true)
	}
	return ok
}

// Expect checks actual against a Gomega matcher under req.
func (t *T) Expect(r *Reply, req string, actual any, m gomegatypes.GomegaMatcher, what string) bool {
	ok, err := m.Match(actual)
	if err != nil {
		t.record(r, req, what+": "+err.Error(), "", true)
		return false
	}
	if !ok {
		t.record(r, req, what, strings.TrimSpace(m.FailureMessage(actual)), true)
	}
	return ok
}

// Info records an INFORMATIONAL observation about req.
func (t *T) Info(r *Reply, req, msg string) {
	rq, _ := spec.Lookup(req)
	t.res.add(Finding{Outcome: Informational, Requirement: rq.ID, Level: string(rq.Level), Text: rq.Text,
		Message: msg, Sent: r.sent(), Received: r.received()})
}

// NotApplicable records that the case could not judge req against this
// server (an INFORMATIONAL finding) and ends the case.
func (t *T) NotApplicable(req, msg string) {
	t.Info(nil, req, "not applicable: "+msg)
	panic(abortCase{})
}

func (t *T) abortError(msg string) {
	t.res.add(Finding{Outcome: Error, Message: msg})
	panic(abortCase{})
}

// Status checks that r's status is exactly want, under req.
func (t *T) Status(r *Reply, req string, want spec.Status) bool {
	got := r.Status()
	return t.Check(r, req, got == want, fmt.Sprintf("status %s, want %d", statusText(got), want),
		fmt.Sprintf("status %d (%s)", want, want.Text()))
}

// Refused checks that r refuses the request: a 4xx status under must (a
// MUST, usually), and the preferred code under should when it is given.
func (t *T) Refused(r *Reply, must string, should string, preferred spec.Status) bool {
	got := r.Status()
	if !t.Check(r, must, got.IsClientError(), fmt.Sprintf("status %s, want a 4xx refusal", statusText(got)), "a 4xx status") {
		return false
	}
	if should != "" && got != preferred {
		t.Check(r, should, false, fmt.Sprintf("status %d, the preferred code is %d", got, preferred),
			fmt.Sprintf("status %d (%s)", preferred, preferred.Text()))
	}
	return true
}

func statusText(s spec.Status) string {
	if s == -1 {
		return "missing or not an integer"
	}
	return fmt.Sprint(int(s))
}

// Field checks that r's response has field with the JSON value of want.
func (t *T) Field(r *Reply, req, field string, want any) bool {
	wantRaw, err := json.Marshal(want)
	if err != nil {
		panic(err)
	}
	raw, ok := r.Resp.Raw(field)
	if !ok {
		return t.Check(r, req, false, fmt.Sprintf("the response has no %q field", field), fmt.Sprintf("%q: %s", field, wantRaw))
	}
	return t.Check(r, req, jsonEqual(raw, wantRaw), fmt.Sprintf("%q is %s, want %s", field, raw, wantRaw), fmt.Sprintf("%q: %s", field, wantRaw))
}

// HasString checks that r's response carries field as a non-empty string
// and returns it.
func (t *T) HasString(r *Reply, req, field string) string {
	s, err := r.Resp.String(field)
	t.Check(r, req, err == nil && s != "", fmt.Sprintf("the response's %q is not a non-empty string (%v)", field, errOr(err, "empty")), fmt.Sprintf("%q: a non-empty string", field))
	return s
}

// HasInt checks that r's response carries field as an integer and returns it.
func (t *T) HasInt(r *Reply, req, field string) int64 {
	n, err := r.Resp.Int(field)
	t.Check(r, req, err == nil, fmt.Sprintf("the response's %q is not an integer (%v)", field, err), fmt.Sprintf("%q: an integer", field))
	return n
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

// jsonEqual compares two JSON values semantically.
func jsonEqual(a, b []byte) bool {
	var x, y any
	da := json.NewDecoder(bytes.NewReader(a))
	da.UseNumber()
	db := json.NewDecoder(bytes.NewReader(b))
	db.UseNumber()
	if da.Decode(&x) != nil || db.Decode(&y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
