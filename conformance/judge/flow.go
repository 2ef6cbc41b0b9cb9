package judge

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stepkit/stepkit/spec"
)

// Sizes of the files the cases upload. The course flow's file is a few
// hundred KiB plus an odd number of bytes, so that its last block is short.
const (
	courseSize = 300<<10 + 777
	blk        = spec.DefaultBlockSize
)

// withFile sets the case's file: size bytes under a name.
func withFile(r *caseRun, name string, size int) {
	r.name = name
	r.data = fileData(size, uint64(size)*31+uint64(len(name)))
}

func caseList() []*Case {
	return []*Case{
		{
			Reqs:  []string{"CLIENT-5", "CLIENT-8", "TOKEN-5", "CLIENT-1"},
			Title: "the course flow: LOGIN with the course password, FILE SAVE, every block with the token; the file stored whole with the right MD5",
			setup: func(r *caseRun) { withFile(r, "report.bin", courseSize) },
			judge: func(r *caseRun) { r.checkUpload() },
		},
		{
			Reqs:  []string{"CLIENT-1", "CLIENT-5"},
			Title: "a plan with block_size 12800: the client cuts its blocks as the plan says",
			setup: func(r *caseRun) { withFile(r, "plan12800.bin", 100<<10+333); r.b.blockSize = 12800 },
			judge: func(r *caseRun) { r.checkUpload() },
		},
		{
			Reqs:  []string{"CLIENT-1", "CLIENT-5"},
			Title: "a plan whose one block is larger than the file (block_size 65536)",
			setup: func(r *caseRun) { withFile(r, "oneblock.bin", 40001); r.b.blockSize = spec.MaxBlockSize },
			judge: func(r *caseRun) { r.checkUpload() },
		},
		{
			Reqs:  []string{"CLIENT-1", "CLIENT-5"},
			Title: "a file of exactly one block (20480 bytes): one UPLOAD, no empty second block",
			setup: func(r *caseRun) { withFile(r, "exact.bin", blk) },
			judge: func(r *caseRun) { r.checkUpload() },
		},
		{
			Reqs:  []string{"CLIENT-1", "CLIENT-5"},
			Title: "an empty file: FILE SAVE of size 0, a plan of 0 blocks, no UPLOAD",
			setup: func(r *caseRun) { withFile(r, "empty.bin", 0) },
			judge: func(r *caseRun) { r.checkUpload() },
		},
		{
			Reqs:  []string{"CLIENT-3", "FRAME-4"},
			Title: "every response cut into pieces (inside the header, inside the JSON), 100 ms apart",
			setup: func(r *caseRun) { withFile(r, "segments.bin", 2*blk+99); r.b.segment = true },
			judge: func(r *caseRun) { r.checkUpload("CLIENT-3", "FRAME-4") },
		},
		{
			Reqs:  []string{"CLIENT-3", "FRAME-5", "CLIENT-4"},
			Title: "pipelining advertised at LOGIN: responses to requests already waiting arrive in one write",
			setup: func(r *caseRun) {
				withFile(r, "pipelined.bin", 8*blk-5)
				// The first block's response waits for the next block of a
				// client that pipelines, so that it meets a shared write.
				r.b.advertise, r.b.coalesce, r.b.hold = true, true, time.Second
			},
			judge: judgeCoalesced,
		},
		{
			Reqs:  []string{"CLIENT-4", "CLIENT-5"},
			Title: "pipelining not advertised: no block sent before the previous block's response (the first is held 1 s)",
			setup: func(r *caseRun) { withFile(r, "oneatatime.bin", 4*blk-1); r.b.hold = time.Second },
			judge: judgePipelining,
		},
		{
			Reqs:  []string{"CLIENT-2"},
			Title: "the server reports a wrong md5 when the file completes: the client reports the mismatch",
			setup: setupWrongMD5,
			judge: judgeWrongMD5,
		},
		{
			Reqs:  []string{"CLIENT-6"},
			Title: "LOGIN refused with 401: the client stops or reports, and claims no success",
			setup: func(r *caseRun) {
				withFile(r, "refused-login.bin", blk+1)
				r.b.answer = func(q *request) *spec.Message {
					if q.is(spec.OpLogin, spec.TypeAuth) {
						return spec.NewResponse(spec.OpLogin, spec.TypeAuth, spec.StatusPasswordError, "Password error for login.")
					}
					return nil
				}
			},
			judge: func(r *caseRun) {
				r.judgeRefusal("401", func(q *request) bool { return q.is(spec.OpLogin, spec.TypeAuth) },
					func(q *request) bool { return !q.is(spec.OpLogin, spec.TypeAuth) && q.op() != spec.OpBye })
			},
		},
		{
			Reqs:  []string{"CLIENT-6"},
			Title: "FILE SAVE refused with 402 (the key exists): no block is sent, no success claimed",
			setup: func(r *caseRun) {
				withFile(r, "refused-save.bin", blk+2)
				r.b.answer = func(q *request) *spec.Message {
					if q.is(spec.OpSave, spec.TypeFile) {
						m := spec.NewResponse(spec.OpSave, spec.TypeFile, spec.StatusKeyExists, "The key already exists.")
						if k, err := q.msg.Key(); err == nil {
							m.Set(spec.FieldKey, k)
						}
						return m
					}
					return nil
				}
			},
			judge: func(r *caseRun) {
				r.judgeRefusal("402", func(q *request) bool { return q.is(spec.OpSave, spec.TypeFile) },
					func(q *request) bool { return q.is(spec.OpUpload, spec.TypeFile) })
			},
		},
		{
			Reqs:  []string{"CLIENT-6"},
			Title: "an UPLOAD refused mid-way with 406: the client stops, retries or reports, and claims no success",
			setup: func(r *caseRun) {
				withFile(r, "refused-block.bin", 4*blk-3)
				refused := false
				r.b.answer = func(q *request) *spec.Message {
					if idx, err := q.msg.BlockIndex(); err == nil && q.is(spec.OpUpload, spec.TypeFile) && idx == 1 && !refused {
						refused = true
						m := spec.NewResponse(spec.OpUpload, spec.TypeFile, spec.StatusBlockSize, "The block is refused.")
						k, _ := q.msg.Key()
						return m.Set(spec.FieldKey, k).Set(spec.FieldBlockIndex, idx)
					}
					return nil
				}
			},
			judge: func(r *caseRun) {
				if r.storedWhole() {
					r.note("the client sent block 1 again and the file completed")
					return
				}
				r.judgeRefusal("406", func(q *request) bool {
					idx, _ := q.msg.BlockIndex()
					return q.is(spec.OpUpload, spec.TypeFile) && idx == 1
				}, func(q *request) bool { return q.is(spec.OpUpload, spec.TypeFile) })
			},
		},
		{
			Reqs:  []string{"CLIENT-7", "CLIENT-6"},
			Title: "a request never answered (UPLOAD of block 1): the client gives up within its time limit and claims no success",
			setup: func(r *caseRun) {
				withFile(r, "unanswered.bin", 3*blk-7)
				r.b.silent = func(q *request) bool {
					idx, err := q.msg.BlockIndex()
					return err == nil && q.is(spec.OpUpload, spec.TypeFile) && idx == 1
				}
			},
			judge: judgeHang,
		},
		{
			Reqs:  []string{"CLIENT-1", "CLIENT-2"},
			Title: "download, where the template has {dir}: the file fetched back into {dir} whole, following a download plan of block_size 12800",
			needs: []string{"{dir}"},
			setup: func(r *caseRun) { withFile(r, "roundtrip.bin", 50<<10+17); r.b.blockSize = 12800 },
			judge: judgeDownload,
		},
		{
			Reqs:  []string{"BYE-1", "CLIENT-5"},
			Title: "BYE left unanswered, as the course's reference server leaves it: the client does not wait for an answer",
			setup: func(r *caseRun) {
				withFile(r, "bye.bin", blk+3)
				r.b.silent = func(q *request) bool { return q.op() == spec.OpBye }
			},
			judge: judgeBye,
		},
		{
			Reqs:  []string{"FRAME-2", "FRAME-9", "CLIENT-3"},
			Title: "non-ASCII text in the username and the file name: JSON lengths in bytes, text unchanged",
			setup: func(r *caseRun) {
				withFile(r, "données-ü.bin", blk+5)
				r.user = "zoë-" + r.user[1:]
			},
			judge: judgeNonASCII,
		},
		{
			Reqs:  []string{"TOKEN-5", "CLIENT-5"},
			Title: "a valid token whose time part is not the client's now (the server's clock reads 2021-09-01 08:00:00): the client sends it back unchanged and uploads",
			setup: func(r *caseRun) { withFile(r, "old-token.bin", blk+13); r.b.clock = staleClock },
			judge: judgeStaleToken,
		},
	}
}

// ---- the upload, as the server saw it

// checkUpload judges the whole upload of the case's file: the LOGIN, the
// token on every request, the FILE SAVE, every block against the plan, and
// the file the server completed. blame, when given, names the requirements
// the case is about: a broken flow is then held against them, since the
// case differs from the course flow only in what it is about.
func (r *caseRun) checkUpload(blame ...string) {
	reqs := r.srv.requests()
	r.srv.mu.Lock()
	bad := append([]badFrame(nil), r.srv.bad...)
	r.srv.mu.Unlock()
	for _, b := range bad {
		req, expected := "FRAME-1", "an 8-byte header, then exactly that much JSON and binary"
		if errors.Is(b.err, spec.ErrNotJSON) || errors.Is(b.err, spec.ErrNotObject) {
			req, expected = "FRAME-3", "one JSON object, UTF-8 (json.dumps, not str of a dict)"
		}
		msg := fmt.Sprintf("on connection %d the client sent a frame that cannot be read: %v", b.conn, b.err)
		if b.header != nil {
			r.failHex(req, msg, expected, b.snippet, b.header)
			panic(abortCase{})
		}
		r.fail(req, msg, expected, b.snippet)
	}
	fail := func(req, msg, expected, sent string) {
		if len(blame) > 0 {
			for _, b := range blame {
				rq, _ := spec.Lookup(b)
				if rq.Level != spec.MUST {
					r.fail(b, msg, expected, sent)
				}
			}
			for _, b := range blame {
				if rq, _ := spec.Lookup(b); rq.Level == spec.MUST {
					r.fail(b, msg, expected, sent)
				}
			}
			panic(abortCase{})
		}
		r.fail(req, msg, expected, sent)
	}
	if len(reqs) == 0 {
		r.neverConnected()
		fail("CLIENT-5", "the client sent no request"+r.connectedNote(), "LOGIN, FILE SAVE, then every block of the plan", "")
	}
	var login *request
	tokens := map[string]bool{}
	var badPassword *request
	loginAt := -1
	for i, q := range reqs {
		if !q.is(spec.OpLogin, spec.TypeAuth) {
			continue
		}
		u, _ := q.msg.Username()
		p, _ := q.msg.Password()
		if p != coursePassword(u) {
			badPassword = q
		}
		if q.status() == spec.StatusOK {
			login = q
			if loginAt < 0 {
				loginAt = i
			}
			if t, err := q.resp.Token(); err == nil {
				tokens[t] = true
			}
		}
	}
	if login == nil {
		if badPassword != nil {
			u, _ := badPassword.msg.Username()
			p, _ := badPassword.msg.Password()
			fail("CLIENT-8", fmt.Sprintf("the LOGIN's password is %q, the course rule gives %q", p, coursePassword(u)),
				fmt.Sprintf("password = MD5 hex of %q", u), describe(badPassword))
		}
		fail("CLIENT-5", "the client never logged in", "a LOGIN before FILE SAVE", firstRequests(reqs))
	}
	user, _ := login.msg.Username()
	if r.user != "" && user != r.user {
		r.note("the client logged in as %q, not as the {user} it was given (%q)", user, r.user)
	}
	for _, q := range reqs[loginAt+1:] {
		if q.is(spec.OpLogin, spec.TypeAuth) || q.op() == spec.OpBye {
			continue
		}
		tok, err := q.msg.Token()
		if err != nil || !tokens[tok] {
			fail("TOKEN-5", fmt.Sprintf("a %s %s request carries the token %q, not one the server issued", q.op(), q.typ(), tok),
				"the token of the LOGIN response, unchanged", describe(q))
		}
	}
	var save *request
	var saves []*request
	for _, q := range reqs {
		if q.is(spec.OpSave, spec.TypeFile) {
			saves = append(saves, q)
			if sz, err := q.msg.Size(); err == nil && sz == int64(len(r.data)) && q.status() == spec.StatusOK {
				save = q
			}
		}
	}
	if save == nil {
		if len(saves) > 0 {
			// The FILE SAVE meant for the file: the one naming it, else the last.
			q := saves[len(saves)-1]
			for _, s := range saves {
				if k, _ := s.msg.Key(); k == r.name {
					q = s
				}
			}
			sz, _ := q.msg.Raw(spec.FieldSize)
			if q.status() != spec.StatusOK {
				fail("CLIENT-5", fmt.Sprintf("the FILE SAVE was refused (status %d)", q.status()), "a FILE SAVE the server accepts", describe(q))
			}
			fail("CLIENT-5", fmt.Sprintf("FILE SAVE announced size %s, the file has %d bytes", sz, len(r.data)),
				fmt.Sprintf("\"size\": %d", len(r.data)), describe(q))
		}
		fail("CLIENT-5", "the client sent no FILE SAVE for the file", "FILE SAVE with the file's size", firstRequests(reqs))
	}
	key, _ := save.resp.Key()
	bs, _ := save.resp.BlockSize()
	total, _ := save.resp.TotalBlock()
	size := int64(len(r.data))
	sent := map[int64]bool{}
	after := false
	for _, q := range reqs {
		if q == save {
			after = true
			continue
		}
		if !after || !q.is(spec.OpUpload, spec.TypeFile) {
			continue
		}
		if k, _ := q.msg.Key(); k != key {
			continue
		}
		idx, err := q.msg.BlockIndex()
		if err != nil || idx < 0 || idx >= total {
			fail("CLIENT-1", fmt.Sprintf("an UPLOAD names block_index %s; the plan has total_block %d", rawField(q, spec.FieldBlockIndex), total),
				fmt.Sprintf("block_index 0 to %d", total-1), describe(q))
		}
		want := spec.BlockLen(size, bs, idx)
		if int64(q.binLen) != want {
			fail("CLIENT-1", fmt.Sprintf("block %d has %d bytes; the plan's block_size %d makes it %d", idx, q.binLen, bs, want),
				fmt.Sprintf("%d bytes (block_size %d, file size %d)", want, bs, size), describe(q))
		}
		off := idx * bs
		if want := r.data[off : off+want]; !q.dropped && !bytes.Equal(q.msg.Binary, want) {
			i := 0
			for i < len(want) && q.msg.Binary[i] == want[i] {
				i++
			}
			from := i &^ 15
			to := min(from+32, len(want))
			msg := fmt.Sprintf("block %d does not hold the file's bytes at offset %d: they differ from byte %d of the block on (shown from byte %d; the file has % x there)",
				idx, off, i, from, want[from:to])
			if len(blame) == 0 {
				r.failHex("CLIENT-5", msg, "the file's bytes at block_index × block_size", describe(q), q.msg.Binary[from:to])
				panic(abortCase{})
			}
			fail("CLIENT-5", msg, "the file's bytes at block_index × block_size", describe(q))
		}
		sent[idx] = true
	}
	var missing []string
	for i := int64(0); i < total; i++ {
		if !sent[i] {
			missing = append(missing, strconv.FormatInt(i, 10))
		}
	}
	if len(missing) > 0 {
		fail("CLIENT-5", fmt.Sprintf("the client never sent block %s of the plan (total_block %d)", shortList(missing), total),
			"every block 0 to total_block−1", "")
	}
	gotSize, gotMD5, err := r.stored(user, key)
	if err != nil {
		fail("CLIENT-5", fmt.Sprintf("the server holds no complete file under %q: %v", key, err), "the file completed, MD5 "+md5hex(r.data), "")
	}
	if gotSize != size || gotMD5 != md5hex(r.data) {
		fail("CLIENT-5", fmt.Sprintf("the server completed %q with %d bytes, MD5 %s", key, gotSize, gotMD5),
			fmt.Sprintf("%d bytes, MD5 %s", size, md5hex(r.data)), "")
	}
	if r.run != nil && r.run.ExitCode != 0 {
		r.note("the file was stored whole, yet the client ended with %s", r.run.Exit)
	}
}

// staleClock is the judging server's clock in the TOKEN-5 case: a fixed
// moment long past, so that the tokens it issues (which course-mode
// servers accept for ever, TOKEN-11) never carry the client's now, on any
// run. A client that treats the token as opaque cannot tell.
func staleClock() time.Time { return time.Date(2021, time.September, 1, 8, 0, 0, 0, time.Local) }

// judgeStaleToken judges a client given a token it cannot rebuild from its
// own clock. TOKEN-5 asks it to send the token back unchanged whatever the
// token holds: stopping after the LOGIN, sending another token, or printing
// a line that calls the token wrong FAILs TOKEN-5. The rest is judged as
// the course flow.
func judgeStaleToken(r *caseRun) {
	reqs := r.srv.requests()
	r.srv.mu.Lock()
	nbad := len(r.srv.bad)
	r.srv.mu.Unlock()
	login := -1
	issued := map[string]bool{}
	for i, q := range reqs {
		if q.is(spec.OpLogin, spec.TypeAuth) && q.status() == spec.StatusOK {
			if login < 0 {
				login = i
			}
			if t, err := q.resp.Token(); err == nil {
				issued[t] = true
			}
		}
	}
	if login < 0 || nbad > 0 {
		// No login, or a frame that cannot be read: judged, and named, as
		// in the course flow.
		r.checkUpload()
		return
	}
	lq := reqs[login]
	tok, _ := lq.resp.Token()
	exchange := describe(lq) + "\nanswered: " + lq.resp.JSONString()
	expected := "the token sent back unchanged in FILE SAVE and every UPLOAD, whatever time it carries"
	var next *request
	for _, q := range reqs[login+1:] {
		if !q.is(spec.OpLogin, spec.TypeAuth) && q.op() != spec.OpBye {
			next = q
			break
		}
	}
	if next == nil {
		how := fmt.Sprintf("it stopped (%s)", r.run.Exit)
		if r.run.TimedOut {
			how = fmt.Sprintf("it was still running at the case's limit of %v", r.o.Timeout)
		}
		msg := fmt.Sprintf("the client sent nothing after the LOGIN response whose token is %s (valid on this server, but not stamped with the client's now): %s",
			tokenShown(tok), how)
		if l := r.lastWords(); l != "" {
			msg += fmt.Sprintf("; its last words: %q", l)
		}
		r.fail("TOKEN-5", msg, expected, exchange)
	}
	for _, q := range reqs[login+1:] {
		if q.is(spec.OpLogin, spec.TypeAuth) || q.op() == spec.OpBye {
			continue
		}
		if t, err := q.msg.Token(); err != nil || !issued[t] {
			sent := "no token"
			if q.msg.Has(spec.FieldToken) {
				sent = "the token " + tokenShown(rawField(q, spec.FieldToken))
			}
			r.fail("TOKEN-5", fmt.Sprintf("a %s %s request carries %s in place of the one issued, %s", q.op(), q.typ(), sent, tokenShown(tok)),
				expected, describe(q))
		}
	}
	// A verdict on the token in the output is judged before the upload:
	// a client that gives up on the token later than the LOGIN has broken
	// TOKEN-5, not the course flow.
	for _, line := range strings.Split(r.output(), "\n") {
		if strings.Contains(strings.ToLower(line), "token") && failureWords().MatchString(line) {
			r.fail("TOKEN-5", fmt.Sprintf("the client sent the token back, yet printed %q (%s): it judged the token by what it holds", strings.TrimSpace(line), r.run.Exit),
				"no verdict on the token's contents", exchange)
		}
	}
	r.checkUpload()
}

// tokenShown is a token as a finding shows it: as sent, and decoded when it
// is base64 of printable text.
func tokenShown(tok string) string {
	t := strings.Trim(tok, `"`)
	b, err := base64.StdEncoding.DecodeString(t)
	if err != nil || !utf8.Valid(b) || strings.ContainsFunc(string(b), func(c rune) bool { return !unicode.IsPrint(c) }) {
		return strconv.Quote(t)
	}
	return fmt.Sprintf("%q (%s)", t, b)
}

// lastWords is the client's last line of output, on stderr or else stdout.
func (r *caseRun) lastWords() string {
	if r.run == nil {
		return ""
	}
	if l := lastLine(r.run.Stderr); l != "" {
		return l
	}
	return lastLine(r.run.Stdout)
}

// neverConnected ends the case with an ERROR when the client never
// connected: like a server that cannot be reached, a client that cannot
// run (a missing module, a wrong template) is not judged, and every case
// says so the same way.
func (r *caseRun) neverConnected() {
	if r.run == nil || r.srv.nconn > 0 {
		return
	}
	msg := fmt.Sprintf("the client never connected to the judge (%s)", r.run.Exit)
	if l := r.lastWords(); l != "" {
		msg += fmt.Sprintf("; its last words: %q", l)
	}
	r.errorf("%s", msg)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func (r *caseRun) connectedNote() string {
	if r.run == nil {
		return ""
	}
	if r.srv.nconn == 0 {
		return fmt.Sprintf(": it never connected (%s)", r.run.Exit)
	}
	return fmt.Sprintf(" (%s)", r.run.Exit)
}

func rawField(q *request, f string) string {
	raw, ok := q.msg.Raw(f)
	if !ok {
		return "(none)"
	}
	return string(raw)
}

func firstRequests(reqs []*request) string {
	var b strings.Builder
	for i, q := range reqs {
		if i == 3 {
			fmt.Fprintf(&b, "... (%d requests in all)", len(reqs))
			break
		}
		b.WriteString(describe(q) + "\n")
	}
	return b.String()
}

func shortList(ss []string) string {
	if len(ss) > 8 {
		return strings.Join(ss[:8], ", ") + fmt.Sprintf(" ... (%d blocks)", len(ss))
	}
	return strings.Join(ss, ", ")
}

// stored asks the judging server, as user, for the plan of key: the size
// and MD5 of the completed file.
func (r *caseRun) stored(user, key string) (int64, string, error) {
	c, err := net.DialTimeout("tcp", r.srv.backend, 5*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	rd := spec.NewReader(c, spec.Limits{})
	do := func(m *spec.Message) (*spec.Message, error) {
		b, err := spec.EncodeFrame(m)
		if err != nil {
			return nil, err
		}
		if _, err := c.Write(b); err != nil {
			return nil, err
		}
		return rd.ReadMessage()
	}
	login := spec.NewRequest(spec.OpLogin, spec.TypeAuth).Set(spec.FieldUsername, user).Set(spec.FieldPassword, coursePassword(user))
	resp, err := do(login)
	if err != nil {
		return 0, "", err
	}
	tok, _ := resp.Token()
	resp, err = do(spec.NewRequest(spec.OpGet, spec.TypeFile).Set(spec.FieldToken, tok).Set(spec.FieldKey, key))
	if err != nil {
		return 0, "", err
	}
	if st, _ := resp.Status(); st != spec.StatusOK {
		return 0, "", fmt.Errorf("FILE GET answered %d %q", st, resp.StatusMsg())
	}
	size, _ := resp.Size()
	sum, _ := resp.MD5()
	return size, sum, nil
}

// storedWhole reports whether the server completed the case's file under
// the key of a FILE SAVE the client sent.
func (r *caseRun) storedWhole() bool {
	for _, q := range r.srv.requests() {
		if !q.is(spec.OpSave, spec.TypeFile) || q.status() != spec.StatusOK {
			continue
		}
		key, _ := q.resp.Key()
		for _, l := range r.srv.requests() {
			if l.is(spec.OpLogin, spec.TypeAuth) && l.status() == spec.StatusOK {
				u, _ := l.msg.Username()
				if size, sum, err := r.stored(u, key); err == nil && size == int64(len(r.data)) && sum == md5hex(r.data) {
					return true
				}
			}
		}
	}
	return false
}

// judgeBye judges a client whose BYE the judge leaves unanswered: one
// still running at the limit after its BYE was waiting for the answer.
func judgeBye(r *caseRun) {
	r.checkUpload()
	var bye *request
	for _, q := range r.srv.requests() {
		if q.op() == spec.OpBye {
			bye = q
		}
	}
	switch {
	case bye == nil:
		r.note("the client closed the connection without BYE, which is as correct")
	case r.run.TimedOut:
		r.fail("BYE-1", fmt.Sprintf("the client sent BYE and was still running at the case's limit of %v: it waits for an answer BYE need not get", r.o.Timeout),
			"close after BYE without reading", describe(bye))
	}
}

func judgePipelining(r *caseRun) {
	for _, q := range r.srv.requests() {
		if q.pipelined {
			r.fail("CLIENT-4", fmt.Sprintf("the client sent block %s before the response to its previous request, on a server that did not advertise pipelining", rawField(q, spec.FieldBlockIndex)),
				"one request in flight while a block is sent, until its response comes", describe(q))
			break
		}
	}
	r.checkUpload()
}

func judgeCoalesced(r *caseRun) {
	r.checkUpload("FRAME-5", "CLIENT-3")
	merged := false
	for _, e := range r.srv.exchange() {
		if strings.HasPrefix(e.Note, "the judge writes the last") {
			merged = true
		}
	}
	if !merged {
		r.info("FRAME-5", "the client never had two requests waiting, so no two responses shared a write")
	}
}

// judgeDownload judges what a client does beyond the upload: fetching the
// file back (FILE GET, then every DOWNLOAD of the plan) into {dir}.
func judgeDownload(r *caseRun) {
	r.checkUpload()
	var get *request
	for _, q := range r.srv.requests() {
		if q.is(spec.OpGet, spec.TypeFile) && q.status() == spec.StatusOK {
			get = q
		}
	}
	if get == nil {
		r.info("CLIENT-1", "the client does not download: it sent no FILE GET")
		return
	}
	key, _ := get.resp.Key()
	total, _ := get.resp.TotalBlock()
	asked := map[int64]bool{}
	for _, q := range r.srv.requests() {
		if !q.is(spec.OpDownload, spec.TypeFile) {
			continue
		}
		if k, _ := q.msg.Key(); k != key {
			continue
		}
		idx, err := q.msg.BlockIndex()
		if err != nil || idx < 0 || idx >= total {
			r.fail("CLIENT-1", fmt.Sprintf("a DOWNLOAD names block_index %s; the download plan has total_block %d", rawField(q, spec.FieldBlockIndex), total),
				fmt.Sprintf("block_index 0 to %d", total-1), describe(q))
		}
		asked[idx] = true
	}
	var missing []string
	for i := int64(0); i < total; i++ {
		if !asked[i] {
			missing = append(missing, strconv.FormatInt(i, 10))
		}
	}
	if len(missing) > 0 {
		r.fail("CLIENT-1", fmt.Sprintf("the client never asked for block %s of the download plan (total_block %d, block_size 12800)", shortList(missing), total),
			"every block of the download plan", describe(get))
	}
	entries, _ := os.ReadDir(r.dlDir)
	var found []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(r.dlDir, e.Name()))
		if err != nil {
			continue
		}
		if bytes.Equal(b, r.data) {
			r.note("the file came back whole as {dir}/%s", e.Name())
			return
		}
		found = append(found, fmt.Sprintf("%s (%d bytes, MD5 %s)", e.Name(), len(b), md5hex(b)))
	}
	r.fail("CLIENT-2", fmt.Sprintf("no file in {dir} holds the downloaded file; found: %s", orNone(found)),
		fmt.Sprintf("a file of %d bytes, MD5 %s", len(r.data), md5hex(r.data)), "")
}

func orNone(ss []string) string {
	if len(ss) == 0 {
		return "nothing"
	}
	return strings.Join(ss, ", ")
}

func judgeNonASCII(r *caseRun) {
	nonASCII := false
	for _, q := range r.srv.requests() {
		if q.charCount {
			r.failHex("CLIENT-3", fmt.Sprintf("the frame's JSON length is the JSON's length in characters (%d bytes of UTF-8)", q.jsonBytes),
				fmt.Sprintf("a JSON length of %d", q.jsonBytes), describe(q), q.header)
			r.failHex("FRAME-2", fmt.Sprintf("the frame's JSON length counts characters: the header announces %d, the JSON text is %d bytes", lenOf(q.header), q.jsonBytes),
				fmt.Sprintf("a JSON length of %d", q.jsonBytes), describe(q), q.header)
			panic(abortCase{})
		}
		if hasNonASCII(q.msg.JSONString()) {
			nonASCII = true
		}
	}
	if r.user != "" {
		for _, q := range r.srv.requests() {
			if q.is(spec.OpLogin, spec.TypeAuth) {
				if u, _ := q.msg.Username(); u != r.user {
					r.fail("FRAME-9", fmt.Sprintf("the LOGIN's username is %q, the client was given %q", u, r.user),
						fmt.Sprintf("\"username\": %q", r.user), describe(q))
				}
			}
		}
	}
	r.checkUpload()
	if !nonASCII {
		r.note("no request carried non-ASCII text (the client was given the file name %q)", r.name)
	}
}

func lenOf(h []byte) uint32 {
	if len(h) < 4 {
		return 0
	}
	return uint32(h[0])<<24 | uint32(h[1])<<16 | uint32(h[2])<<8 | uint32(h[3])
}

func hasNonASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}
