package fuzz

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/stepkit/stepkit/spec"
)

// Oracles: what kind of failure a finding is.
const (
	OracleDied         = "died"         // the process ended
	OracleUnresponsive = "unresponsive" // it stopped accepting or answering connections
	OracleSilence      = "silence"      // a request left unanswered
	OracleHangup       = "hangup"       // a request answered by closing the connection
	OracleStatus       = "status"       // a status a MUST forbids
	OracleResponse     = "response"     // a response missing what a MUST requires
	OracleData         = "data"         // stored bytes, MD5 or fields wrong on read-back
	OracleIsolation    = "isolation"    // another user's data reachable
	OracleFrame        = "frame"        // a response that is not a well-formed frame
	OracleMemory       = "memory"       // the process's memory grew past the bound
)

// Violation is one broken requirement seen in a run.
type Violation struct {
	Oracle      string `json:"oracle"`
	Requirement string `json:"requirement"`
	Operation   string `json:"operation"` // TYPE OPERATION of the request, e.g. "FILE UPLOAD"
	Status      int    `json:"status"`    // the status answered; 0 for none
	Step        int    `json:"step"`      // the input's step; -1 for the input as a whole
	Message     string `json:"message"`
	Expected    string `json:"expected,omitempty"`
	Check       Check  `json:"check"`
}

// Key is what makes two violations the same finding: the oracle, the
// operation and the status.
func (v Violation) Key() string { return v.Oracle + " " + v.Operation + " " + strconv.Itoa(v.Status) }

// Check is what a reproducer checks to say the failure showed again.
type Check struct {
	Kind string `json:"kind"` // dead, silence, hangup, status, md5, bytes, fields, value, frame, memory
	Step int    `json:"step"`
	// Statuses a correct server may answer; Any4xx: any 4xx too.
	Statuses []int    `json:"statuses,omitempty"`
	Any4xx   bool     `json:"any_4xx,omitempty"`
	MD5      string   `json:"md5,omitempty"`    // the MD5 of the right bytes
	Field    string   `json:"field,omitempty"`  // the response field that carries them
	Fields   []string `json:"fields,omitempty"` // fields the answer must carry
	// Value is the JSON value Field must have (a DATA document's field).
	Value json.RawMessage `json:"value,omitempty"`
}

type fileState struct {
	size, bs, total int64
	blocks          map[int64][]byte
	done            bool
	data            []byte
}

func (f *fileState) md5() string {
	s := md5.Sum(f.data)
	return hex.EncodeToString(s[:])
}

type userState struct {
	data  map[string]*spec.Message
	files map[string]*fileState
}

// judge is a correct server's model, run along an input's exchanges.
type judge struct {
	users map[int]*userState
	// trusted is false once the model may differ from the server's state:
	// after a request the model cannot predict, a violation, or a request
	// left unanswered. Only silence and the frame checks go on then.
	trusted bool
	out     []Violation
}

func newJudge() *judge {
	j := &judge{users: map[int]*userState{}, trusted: true}
	for i := 1; i <= maxUsers; i++ {
		j.users[i] = &userState{data: map[string]*spec.Message{}, files: map[string]*fileState{}}
	}
	return j
}

// Judge returns the violations of a trace.
func Judge(tr *Trace) []Violation {
	j := newJudge()
	for _, ex := range tr.Exchanges {
		j.exchange(ex)
	}
	return j.out
}

func opName(m *spec.Message) string {
	if m == nil {
		return "FRAME"
	}
	t, o := m.Type(), m.Operation()
	if t == "" {
		t = "-"
	}
	if o == "" {
		o = "-"
	}
	return fmt.Sprintf("%.12s %.12s", t, o)
}

func (j *judge) add(v Violation) {
	j.out = append(j.out, v)
	j.trusted = false
}

func (j *judge) exchange(ex *Exchange) {
	op := opName(ex.Req)
	st := 0
	if ex.Resp != nil {
		if s, ok := ex.Resp.Status(); ok {
			st = int(s)
		}
	}
	switch ex.Outcome {
	case Silence:
		j.add(Violation{Oracle: OracleSilence, Requirement: "REQ-6", Operation: op, Step: ex.Step,
			Message: "the request was never answered: " + ex.Detail, Expected: "exactly one response",
			Check: Check{Kind: "silence", Step: ex.Step}})
		return
	case Hangup:
		if ex.need == needAnswer {
			j.add(Violation{Oracle: OracleHangup, Requirement: "REQ-6", Operation: op, Step: ex.Step,
				Message: "the server closed the connection instead of answering (" + ex.Detail + ")", Expected: "exactly one response",
				Check: Check{Kind: "hangup", Step: ex.Step}})
		}
		j.trusted = false
		return
	case BadFrame:
		j.add(Violation{Oracle: OracleFrame, Requirement: "FRAME-3", Operation: op, Step: ex.Step,
			Message: "the answer is not a well-formed frame: " + ex.Detail, Expected: "a header, then one JSON object of exactly the announced length",
			Check: Check{Kind: "frame", Step: ex.Step}})
		return
	case Answered:
	default:
		if ex.need != needNone || ex.Outcome == NotJudged {
			j.trusted = false
		}
		return
	}
	if ex.charsLen {
		j.add(Violation{Oracle: OracleFrame, Requirement: "FRAME-2", Operation: op, Status: st, Step: ex.Step,
			Message: "the answer's JSON length counts characters, not bytes: " + ex.Detail, Expected: "the JSON length in bytes",
			Check: Check{Kind: "frame", Step: ex.Step}})
		return
	}
	if !j.shape(ex, op, st) {
		return
	}
	if ex.Req == nil {
		return // a frame that does not parse: 400 is a SHOULD (ROBUST-2)
	}
	if j.trusted {
		j.request(ex, op, st)
	}
}

// shape checks MSG-1 on every answer.
func (j *judge) shape(ex *Exchange, op string, st int) bool {
	r := ex.Resp
	var missing []string
	for _, f := range []string{spec.FieldOperation, spec.FieldDirection, spec.FieldType, spec.FieldStatusMsg} {
		if _, err := r.String(f); err != nil {
			missing = append(missing, f+" (a string)")
		}
	}
	if _, err := r.Int(spec.FieldStatus); err != nil {
		missing = append(missing, "status (an integer)")
	}
	if r.Direction() != spec.DirResponse && !contains(missing, "direction (a string)") {
		missing = append(missing, `direction "RESPONSE"`)
	}
	if len(missing) == 0 {
		return true
	}
	j.add(Violation{Oracle: OracleResponse, Requirement: "MSG-1", Operation: op, Status: st, Step: ex.Step,
		Message: "the answer lacks " + strings.Join(missing, ", "), Expected: "operation, direction RESPONSE, type, status and status_msg",
		Check: Check{Kind: "fields", Step: ex.Step, Fields: []string{spec.FieldOperation, spec.FieldDirection, spec.FieldType, spec.FieldStatus, spec.FieldStatusMsg}}})
	return false
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// expectation is what a correct server may answer.
type expectation struct {
	req      string
	statuses []int
	any4xx   bool
	why      string
}

func (e expectation) allows(st int) bool {
	if e.any4xx && st >= 400 && st <= 499 {
		return true
	}
	for _, s := range e.statuses {
		if s == st {
			return true
		}
	}
	return false
}

func (e expectation) String() string {
	var parts []string
	for _, s := range e.statuses {
		parts = append(parts, strconv.Itoa(s))
	}
	if e.any4xx {
		parts = append(parts, "a 4xx")
	}
	return "status " + strings.Join(parts, " or ") + " (" + e.why + ")"
}

func refuse(req, why string, statuses ...int) *expectation {
	return &expectation{req: req, statuses: statuses, any4xx: len(statuses) == 0, why: why}
}

func exact(req, why string, statuses ...int) *expectation {
	return &expectation{req: req, statuses: statuses, why: why}
}

// extension statuses a server may answer to anything it cannot take on
// (Appendix B); the model cannot follow what happened then.
func extensionStatus(st int) bool {
	switch st {
	case 413, 429, 500, 503, 507:
		return true
	}
	return false
}

// request judges an answered, well-formed request against the model.
func (j *judge) request(ex *Exchange, op string, st int) {
	m := ex.Req
	want, user, apply := j.expect(m, ex)
	if want == nil {
		if apply == nil {
			j.trusted = false
		}
		return
	}
	if extensionStatus(st) && !want.allows(st) {
		j.trusted = false
		return
	}
	if !want.allows(st) {
		oracle := OracleStatus
		req := want.req
		if st == 200 && want.allows(404) && j.otherHas(user, m) {
			oracle, req = OracleIsolation, "ISO-1"
		}
		msg := fmt.Sprintf("answered %d", st)
		if st == 200 && !want.allows(200) {
			msg = "answered 200 to a request a correct server refuses"
		}
		j.add(Violation{Oracle: oracle, Requirement: req, Operation: op, Status: st, Step: ex.Step,
			Message: msg, Expected: want.String(),
			Check: Check{Kind: "status", Step: ex.Step, Statuses: want.statuses, Any4xx: want.any4xx}})
		return
	}
	if apply != nil {
		apply(st)
	}
}

// otherHas reports whether another user of the input has m's key.
func (j *judge) otherHas(user int, m *spec.Message) bool {
	key, err := m.Key()
	if err != nil {
		return false
	}
	for i, u := range j.users {
		if i == user {
			continue
		}
		if f, ok := u.files[key]; ok && f.done && m.Type() == spec.TypeFile {
			return true
		}
		if _, ok := u.data[key]; ok && m.Type() == spec.TypeData {
			return true
		}
	}
	return false
}

var sevenOps = map[string]bool{"SAVE": true, "DELETE": true, "GET": true, "UPLOAD": true, "DOWNLOAD": true, "BYE": true, "LOGIN": true}
var threeTypes = map[string]bool{"FILE": true, "DATA": true, "AUTH": true}

// strField returns a field's string value and whether it is a string.
func strField(m *spec.Message, f string) (string, bool) {
	raw, ok := m.Raw(f)
	if !ok {
		return "", false
	}
	var s string
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || t[0] != '"' || json.Unmarshal(t, &s) != nil {
		return "", false
	}
	return s, true
}

// badKey is KEY-2: a key a server must refuse.
func badKey(k string) bool {
	if k == "." || k == ".." {
		return true
	}
	for _, r := range k {
		if r == '/' || r == '\\' || r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

// oddKey is a key a server may refuse (empty, over 255 bytes, not UTF-8).
func oddKey(k string) bool { return k == "" || len(k) > 255 || !isUTF8(k) }

func isUTF8(s string) bool {
	return strings.ToValidUTF8(s, "\uFFFD") == s && !strings.Contains(s, "\uFFFD")
}

// intField returns an integer field; ok is false when it is absent or not
// a JSON integer.
func intField(m *spec.Message, f string) (int64, bool, bool) {
	raw, present := m.Raw(f)
	if !present {
		return 0, false, false
	}
	s := strings.TrimSpace(string(raw))
	n, err := strconv.ParseInt(s, 10, 64)
	return n, true, err == nil
}

// expect returns what a correct server may answer to m, the user it acts
// for, and how the model follows a permitted answer. A nil expectation
// with a non-nil apply means "anything, and the model is unchanged".
func (j *judge) expect(m *spec.Message, ex *Exchange) (*expectation, int, func(int)) {
	noop := func(int) {}
	dir, dirOK := strField(m, spec.FieldDirection)
	if dirOK && dir == "EARTH" {
		return nil, 0, noop
	}
	for _, f := range []string{spec.FieldOperation, spec.FieldDirection, spec.FieldType} {
		if !m.Has(f) {
			return exact("REQ-1", "a compulsory field is missing", 400), 0, noop
		}
	}
	if !dirOK || dir != "REQUEST" {
		return exact("REQ-2", "the direction is not REQUEST", 407), 0, noop
	}
	opS, _ := strField(m, spec.FieldOperation)
	if !sevenOps[opS] {
		return exact("REQ-3", "not a STEP operation", 408), 0, noop
	}
	typS, _ := strField(m, spec.FieldType)
	if !threeTypes[typS] {
		return exact("REQ-4", "not a STEP type", 409), 0, noop
	}
	if opS == "LOGIN" {
		return j.login(m, typS)
	}
	if opS == "BYE" {
		return nil, 0, noop
	}
	if typS == "AUTH" {
		return refuse("REQ-7", "type AUTH with an operation other than LOGIN"), 0, noop
	}
	user, why, tokReq := tokenUser(m, ex)
	if user == 0 {
		return exact(tokReq, why, 403), 0, noop
	}
	u := j.users[user]
	hasKey := m.Has(spec.FieldKey)
	key, keyStr := strField(m, spec.FieldKey)
	if hasKey && !keyStr {
		return refuse("REQ-9", "the key is not a JSON string"), user, noop
	}
	if hasKey && badKey(key) {
		return refuse("KEY-2", "the key holds /, \\, a control character, or is . or .."), user, noop
	}
	odd := hasKey && oddKey(key)
	if typS == "DATA" {
		return j.data(m, ex, opS, u, user, hasKey, key, odd)
	}
	return j.file(m, ex, opS, u, user, hasKey, key, odd)
}

// tokenUser says which user a request's token speaks for (0: none),
// and if none, why and which requirement wants 403.
func tokenUser(m *spec.Message, ex *Exchange) (int, string, string) {
	if !m.Has(spec.FieldToken) {
		return 0, "no token", "TOKEN-1"
	}
	tok, isStr := strField(m, spec.FieldToken)
	if !isStr {
		return 0, "the token is not a JSON string", "TOKEN-9"
	}
	// The token a placeholder user was issued, sent unchanged.
	if u := ex.tokenOf; u > 0 {
		return u, "", ""
	}
	b, err := base64.StdEncoding.DecodeString(tok)
	if err != nil {
		return 0, "the token is not base64", "TOKEN-2"
	}
	if len(strings.Split(string(b), ".")) != 4 {
		return 0, "the token does not decode to four parts", "TOKEN-3"
	}
	return 0, "the token is not one the server issued", "TOKEN-4"
}

func (j *judge) login(m *spec.Message, typ string) (*expectation, int, func(int)) {
	noop := func(int) {}
	if typ != "AUTH" {
		return exact("LOGIN-1", "LOGIN of a type other than AUTH", 409), 0, noop
	}
	if !m.Has(spec.FieldUsername) {
		return exact("LOGIN-2", "no username", 410), 0, noop
	}
	if !m.Has(spec.FieldPassword) {
		return exact("LOGIN-3", "no password", 410), 0, noop
	}
	user, uok := strField(m, spec.FieldUsername)
	pass, pok := strField(m, spec.FieldPassword)
	if !uok || !pok {
		return refuse("LOGIN-8", "a username or password that is not a string"), 0, noop
	}
	unusable := user == "" || badKey(strings.ReplaceAll(user, ".", "_")) || len(user) > 255
	if !strings.EqualFold(pass, coursePassword(user)) {
		if unusable {
			return exact("LOGIN-4", "a wrong password", 401, 410), 0, noop
		}
		return exact("LOGIN-4", "a wrong password", 401), 0, noop
	}
	if unusable || !isPlain(user) {
		return nil, 0, noop
	}
	return exact("LOGIN-6", "the course password of the username", 200), 0, noop
}

// isPlain is a username every server must accept: ASCII letters, digits,
// _ and -, as the course's student numbers are.
func isPlain(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return s != ""
}

func (j *judge) data(m *spec.Message, ex *Exchange, op string, u *userState, user int, hasKey bool, key string, odd bool) (*expectation, int, func(int)) {
	noop := func(int) {}
	switch op {
	case "UPLOAD", "DOWNLOAD":
		return refuse("DATA-OTHER-1", "DATA has no blocks"), user, noop
	}
	if odd {
		return nil, user, nil
	}
	switch op {
	case "SAVE":
		if !hasKey {
			return exact("DATA-SAVE-2", "a new document under a generated key", 200), user, func(int) { j.trusted = false }
		}
		if _, ok := u.data[key]; ok {
			return exact("DATA-SAVE-3", "the key exists", 402), user, noop
		}
		return exact("DATA-SAVE-1", "a new key", 200), user, func(int) { u.data[key] = m }
	case "GET":
		if !hasKey {
			return exact("DATA-GET-3", "no key", 410), user, noop
		}
		doc, ok := u.data[key]
		if !ok {
			return exact("DATA-GET-2", "no such key for this user", 404), user, noop
		}
		return exact("DATA-GET-1", "a stored key", 200), user, func(int) { j.dataGet(ex, doc) }
	case "DELETE":
		if !hasKey {
			return exact("DATA-DELETE-3", "no key", 410), user, noop
		}
		if _, ok := u.data[key]; !ok {
			return exact("DATA-DELETE-2", "no such key", 404), user, noop
		}
		return exact("DATA-DELETE-1", "a stored key", 200), user, func(int) { delete(u.data, key) }
	}
	return nil, user, noop
}

// dataFieldSkip are the fields DATA GET does not have to return as saved.
var dataFieldSkip = map[string]bool{"operation": true, "direction": true, "type": true, "status": true, "status_msg": true, "token": true, "key": true}

func (j *judge) dataGet(ex *Exchange, doc *spec.Message) {
	for _, name := range doc.Fields() {
		if dataFieldSkip[name] {
			continue
		}
		want, _ := doc.Raw(name)
		got, ok := ex.Resp.Raw(name)
		if !ok || !dataEqual(got, want) {
			j.violation(ex, OracleData, "DATA-GET-1", fmt.Sprintf("field %q came back as %s, saved as %s", name, orNone(got, ok), want), "every field as saved", Check{Kind: "value", Field: name, Value: want})
			return
		}
	}
}

func orNone(raw json.RawMessage, ok bool) string {
	if !ok {
		return "nothing"
	}
	return string(raw)
}

func (j *judge) file(m *spec.Message, ex *Exchange, op string, u *userState, user int, hasKey bool, key string, odd bool) (*expectation, int, func(int)) {
	noop := func(int) {}
	if odd {
		return nil, user, nil
	}
	f := u.files[key]
	switch op {
	case "SAVE":
		size, present, isInt := intField(m, spec.FieldSize)
		switch {
		case !present:
			return refuse("FILE-SAVE-4", "no size"), user, noop
		case !isInt || size < 0:
			return refuse("REQ-9", "a size that is not a non-negative integer"), user, noop
		case !hasKey:
			return nil, user, nil
		case f != nil && f.done:
			return exact("FILE-SAVE-3", "the key's upload has completed", 402), user, noop
		case size == 0 || size > 1<<32:
			return nil, user, nil
		case m.Has(spec.FieldBlockSize):
			return nil, user, nil
		}
		req := "FILE-SAVE-1"
		if f != nil {
			req = "FILE-SAVE-6"
		}
		return exact(req, "a plan for a key not completed", 200), user, func(int) { j.plan(ex, u, key, size) }
	case "UPLOAD":
		if !hasKey {
			return exact("FILE-UPLOAD-3", "no key", 410), user, noop
		}
		idx, present, isInt := intField(m, spec.FieldBlockIndex)
		switch {
		case !present:
			return refuse("FILE-UPLOAD-4", "no block_index"), user, noop
		case !isInt:
			return refuse("REQ-9", "a block_index that is not an integer"), user, noop
		case idx < 0:
			return refuse("FILE-UPLOAD-8", "a negative block_index"), user, noop
		case f == nil:
			return refuse("FILE-UPLOAD-11", "no upload planned for the key"), user, noop
		case f.done:
			return refuse("FILE-UPLOAD-13", "the key's upload has completed"), user, noop
		case idx >= f.total:
			return refuse("FILE-UPLOAD-6", "block_index past the last block"), user, noop
		case int64(ex.BinLen) != spec.BlockLen(f.size, f.bs, idx):
			return exact("FILE-UPLOAD-10", fmt.Sprintf("a block of %d bytes where the plan wants %d", ex.BinLen, spec.BlockLen(f.size, f.bs, idx)), 406), user, noop
		}
		req := "FILE-UPLOAD-1"
		if _, again := f.blocks[idx]; again {
			req = "FILE-UPLOAD-15"
		}
		return exact(req, "a planned block", 200), user, func(int) { j.upload(ex, f, idx) }
	case "GET":
		if !hasKey {
			return refuse("FILE-GET-4", "no key"), user, noop
		}
		if m.Has(spec.FieldBlockSize) {
			return nil, user, noop
		}
		if f == nil || !f.done {
			return exact("FILE-GET-2", "no completed file under the key", 404), user, noop
		}
		return exact("FILE-GET-1", "a completed key", 200), user, func(int) { j.getPlan(ex, f) }
	case "DOWNLOAD":
		if !hasKey {
			return refuse("FILE-DOWNLOAD-3", "no key"), user, noop
		}
		idx, present, isInt := intField(m, spec.FieldBlockIndex)
		switch {
		case !present:
			return refuse("FILE-DOWNLOAD-5", "no block_index"), user, noop
		case !isInt:
			return refuse("REQ-9", "a block_index that is not an integer"), user, noop
		case idx < 0:
			return refuse("FILE-DOWNLOAD-9", "a negative block_index"), user, noop
		case m.Has(spec.FieldBlockSize):
			return nil, user, noop
		case f == nil || !f.done:
			return exact("FILE-DOWNLOAD-2", "no completed file under the key", 404), user, noop
		case idx >= f.total:
			return refuse("FILE-DOWNLOAD-7", "block_index past the last block"), user, noop
		}
		return exact("FILE-DOWNLOAD-1", "a block of a completed file", 200), user, func(int) { j.download(ex, f, idx) }
	case "DELETE":
		if !hasKey {
			return refuse("FILE-DELETE-3", "no key"), user, noop
		}
		if f == nil {
			return exact("FILE-DELETE-2", "no such key", 404), user, noop
		}
		if !f.done {
			return &expectation{req: "FILE-DELETE-5", statuses: []int{200}, any4xx: true, why: "an upload in progress is removed"}, user, func(int) { delete(u.files, key) }
		}
		return exact("FILE-DELETE-1", "a completed key", 200), user, func(int) { delete(u.files, key) }
	}
	return nil, user, noop
}

func (j *judge) violation(ex *Exchange, oracle, req, msg, expected string, c Check) {
	st, _ := ex.Resp.Status()
	c.Step = ex.Step
	j.add(Violation{Oracle: oracle, Requirement: req, Operation: opName(ex.Req), Status: int(st), Step: ex.Step, Message: msg, Expected: expected, Check: c})
}

// plan follows an accepted FILE SAVE: the plan is the server's to make,
// within FILE-SAVE-1's bounds.
func (j *judge) plan(ex *Exchange, u *userState, key string, size int64) {
	r := ex.Resp
	bs, _, bsOK := intField(r, spec.FieldBlockSize)
	total, _, tOK := intField(r, spec.FieldTotalBlock)
	rk, kOK := strField(r, spec.FieldKey)
	switch {
	case !bsOK || bs < 1 || bs > spec.MaxBlockSize:
		j.violation(ex, OracleResponse, "FILE-SAVE-1", "the plan's block_size is missing or outside 1..65536", "block_size from 1 to 65536", Check{Kind: "fields", Fields: []string{spec.FieldBlockSize, spec.FieldTotalBlock, spec.FieldKey}})
	case !tOK || total != spec.TotalBlocks(size, bs):
		j.violation(ex, OracleResponse, "FILE-SAVE-1", fmt.Sprintf("total_block is not ceil(%d / %d)", size, bs), fmt.Sprintf("total_block %d", spec.TotalBlocks(size, bs)), Check{Kind: "fields", Fields: []string{spec.FieldTotalBlock}})
	case !kOK || rk != key:
		j.violation(ex, OracleResponse, "FILE-SAVE-1", "the plan does not carry the key", fmt.Sprintf("key %q", key), Check{Kind: "fields", Fields: []string{spec.FieldKey}})
	default:
		u.files[key] = &fileState{size: size, bs: bs, total: total, blocks: map[int64][]byte{}}
	}
}

func (j *judge) upload(ex *Exchange, f *fileState, idx int64) {
	bin := ex.block
	if old, ok := f.blocks[idx]; ok && !bytes.Equal(old, bin) {
		j.trusted = false // which copy counts is the server's choice
		return
	}
	f.blocks[idx] = bin
	if int64(len(f.blocks)) < f.total {
		return
	}
	f.done = true
	f.data = make([]byte, 0, f.size)
	for i := int64(0); i < f.total; i++ {
		f.data = append(f.data, f.blocks[i]...)
	}
	got, err := ex.Resp.MD5()
	if err != nil || !strings.EqualFold(got, f.md5()) {
		j.violation(ex, OracleData, "FILE-UPLOAD-2", fmt.Sprintf("the upload completed with md5 %q, but the blocks sent make %s", got, f.md5()), "md5 "+f.md5(), Check{Kind: "md5", MD5: f.md5(), Field: spec.FieldMD5})
	}
}

func (j *judge) getPlan(ex *Exchange, f *fileState) {
	r := ex.Resp
	got, _ := r.MD5()
	size, _, _ := intField(r, spec.FieldSize)
	bs, _, _ := intField(r, spec.FieldBlockSize)
	total, _, _ := intField(r, spec.FieldTotalBlock)
	switch {
	case !strings.EqualFold(got, f.md5()):
		j.violation(ex, OracleData, "FILE-GET-1", fmt.Sprintf("the download plan says md5 %q, but the file uploaded has %s", got, f.md5()), "md5 "+f.md5(), Check{Kind: "md5", MD5: f.md5(), Field: spec.FieldMD5})
	case size != f.size || bs < 1 || bs > spec.MaxBlockSize || total != spec.TotalBlocks(f.size, bs):
		j.violation(ex, OracleResponse, "FILE-GET-1", fmt.Sprintf("the download plan says size %d, block_size %d, total_block %d for a file of %d bytes", size, bs, total, f.size), fmt.Sprintf("size %d and a consistent plan", f.size), Check{Kind: "fields", Fields: []string{spec.FieldSize, spec.FieldBlockSize, spec.FieldTotalBlock, spec.FieldMD5}})
	default:
		f.bs = bs // the download plan fixes the blocks DOWNLOAD returns
		f.total = total
	}
}

func (j *judge) download(ex *Exchange, f *fileState, idx int64) {
	off := idx * f.bs
	want := f.data[off : off+spec.BlockLen(f.size, f.bs, idx)]
	if !bytes.Equal(ex.RespBin, want) {
		s := md5.Sum(want)
		j.violation(ex, OracleData, "FILE-DOWNLOAD-1", fmt.Sprintf("block %d came back as %d bytes that differ from the %d uploaded", idx, len(ex.RespBin), len(want)), "the bytes uploaded", Check{Kind: "bytes", MD5: hex.EncodeToString(s[:])})
	}
}

// dataEqual compares two JSON values as values.
func dataEqual(a, b json.RawMessage) bool {
	if bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b)) {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// signature is an answer's shape, for coverage: what was asked, the
// status, and the fields the answer carries.
func signature(ex *Exchange) string {
	var b strings.Builder
	b.WriteString(opName(ex.Req))
	b.WriteString(">")
	b.WriteString(ex.Outcome)
	if ex.Resp != nil {
		st, _ := ex.Resp.Status()
		fmt.Fprintf(&b, ":%d:%s", st, ex.Resp.Operation())
		f := ex.Resp.Fields()
		sort.Strings(f)
		b.WriteString(":" + strings.Join(f, ","))
		if len(ex.RespBin) > 0 {
			b.WriteString(":bin")
		}
	}
	return b.String()
}
