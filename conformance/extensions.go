package conformance

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/stepkit/stepkit/spec"
)

// STEP.md appendix B: optional extensions. A server without them is still
// conformant, so these cases pass or are INFORMATIONAL, never FAIL, unless
// the run says the server has the extension or the server advertises it
// (EXT-6).
func extensionCases(r *registrar) {
	r.Describe("B. Extensions", func() {
		r.Case(reqs("EXT-1"), "a quota, when the server has one, is answered 413", func(t *T) {
			q := t.Config().Quota
			if q <= 0 {
				t.NotApplicable("EXT-1", "no quota given for this run (--quota)")
			}
			s := t.Login()
			key := t.Key()
			m := s.KeyReq(spec.OpSave, spec.TypeFile, key).Set(spec.FieldSize, q+1)
			rep := s.Do(m, "EXT-1")
			t.deleteLater(s, spec.TypeFile, key)
			// The run says the server has a quota: its 413 is a MUST.
			if st := rep.Status(); st != spec.StatusTooLarge {
				t.FailTerms(rep, "EXT-1", fmt.Sprintf("a plan one byte past the quota the run was given (%d bytes) got status %s", q, statusText(st)), "status 413 (Payload Too Large)")
			}
		})

		r.Case(reqs("EXT-2"), "a burst of requests is either served or answered 429, never dropped", func(t *T) {
			s := t.Login()
			limited := 0
			for i := 0; i < 100; i++ {
				m := s.KeyReq(spec.OpGet, spec.TypeData, t.Key())
				t.Send(s.Conn, m)
			}
			for i := 0; i < 100; i++ {
				rep := t.Read(s.Conn, nil, "EXT-2")
				st := rep.Status()
				if st == spec.StatusTooManyRequests {
					limited++
					continue
				}
				t.Check(rep, "EXT-2", st == spec.StatusKeyNotFound, fmt.Sprintf("status %s", statusText(st)), "404 (or 429 when rate limited)")
			}
			if limited == 0 {
				t.Info(nil, "EXT-2", "no rate limit seen in a burst of 100 requests")
			} else {
				t.Note("%d of 100 requests were rate limited with 429", limited)
			}
		})

		r.Case(reqs("EXT-3"), "one connection past the limit gets an ERROR/503 frame and is closed", func(t *T) {
			max := t.Config().MaxConns
			if max <= 0 {
				t.NotApplicable("EXT-3", "the server's connection limit is not known for this run (--max-conns)")
			}
			var held []*Session
			for i := 0; i < max; i++ {
				held = append(held, t.holdLogin())
			}
			// The next case must find the server below its limit again.
			t.Defer(func() {
				for _, s := range held {
					s.Conn.Close()
				}
				t.waitBelowLimit()
			})
			c := t.Dial()
			resp, err := c.ReadMessage()
			rep := &Reply{Conn: c, Resp: resp, Err: err}
			// The run says the server has a connection limit: its 503
			// and the close are MUSTs.
			if err != nil {
				t.FailTerms(rep, "EXT-3", fmt.Sprintf("no frame on connection %d, past the limit of %d the run was given: %v", max+1, max, err), "ERROR/503, then the connection closed")
			}
			if st := rep.Status(); st != spec.StatusServiceBusy {
				t.FailTerms(rep, "EXT-3", fmt.Sprintf("status %s on the connection past the limit", statusText(st)), "ERROR/503, then the connection closed")
			}
			if closed, _ := c.expectClose(t.Config().ReadTimeout); !closed {
				t.FailTerms(rep, "EXT-3", "the connection past the limit stayed open after the 503", "the connection closed after the 503")
			}
		})

		r.Case(reqs("EXT-4"), "with real accounts, the course login rule does not open an account", func(t *T) {
			if t.User().Course {
				t.NotApplicable("EXT-4", "the run uses the course login rule (no --user)")
			}
			c := t.Dial()
			u := randomUser()
			rep := t.DoOn(c, loginReq(spec.FieldUsername, u.User, spec.FieldPassword, u.Password), "EXT-4")
			t.Check(rep, "EXT-4", rep.Status() == spec.StatusPasswordError, fmt.Sprintf("a made-up user logged in with MD5(username): status %s", statusText(rep.Status())), "status 401")
		})

		r.Case(reqs("EXT-5"), "a DATA SAVE whose JSON length counts characters is recovered and served, or not (either is conformant)", func(t *T) {
			s := t.Login()
			key := t.Key()
			value := "été 北京 🙂"
			m := s.KeyReq(spec.OpSave, spec.TypeData, key).Set("note", value)
			js := m.AppendJSON(nil)
			b := append(spec.Header(uint32(utf8.RuneCount(js)), 0), js...)
			rep := t.TryRaw(s.Conn, b, fmt.Sprintf("a DATA SAVE whose JSON length counts %d characters, not %d bytes (the reference's bug)", utf8.RuneCount(js), len(js)))
			switch {
			case rep.Err != nil:
				t.Info(rep, "EXT-5", "not recovered: "+rep.Err.Error())
			case rep.Status() != spec.StatusOK:
				t.Info(rep, "EXT-5", fmt.Sprintf("not recovered: answered with status %s", statusText(rep.Status())))
			default:
				t.deleteLater(s, spec.TypeData, key)
				// Recovered: the document is stored as sent and the
				// connection is still in step.
				g := t.Try(s.Conn, s.KeyReq(spec.OpGet, spec.TypeData, key))
				switch {
				case g.Err != nil:
					t.Info(g, "EXT-5", "the SAVE was answered 200, but the connection is out of step after it: "+g.Err.Error())
				case !stringIs(g, "note", value):
					t.Info(g, "EXT-5", fmt.Sprintf("the SAVE was answered 200, but the document holds note %s, not the %q sent", rawOf(g, "note"), value))
				default:
					t.Note("the frame was recovered and served; the connection stayed in step")
				}
			}
			t.stillServes()
		})

		r.TimedCase(reqs("EXT-6"), "a server advertising \"pipelining\" at LOGIN serves a window of UPLOADs cut anywhere: every answer 200, in order, the right md5", func(t *T) {
			s := t.Login()
			if ok, why := advertisesPipelining(s.Login); !ok {
				t.Info(s.Login, "EXT-6", "not advertised: "+why)
				return
			}
			t.Note("the LOGIN response advertises pipelining: a window of %d UPLOADs follows, cut inside headers, JSON and blocks", pipelineWindow)
			probe := s.PlanUpload(t.Key(), 1)
			data := randomBytes(int(probe.BlockSize*(pipelineWindow-1) + probe.BlockSize/2 + 1))
			p := s.PlanUpload(t.Key(), int64(len(data)))
			var stream []byte
			var cuts []int
			var sent []*spec.Message
			for i := int64(0); i < p.TotalBlock; i++ {
				m, f := uploadFrame(t, s, p, data, i)
				start := len(stream)
				stream = append(stream, f...)
				sent = append(sent, m)
				switch i {
				case 1:
					cuts = append(cuts, start+3) // inside the header
				case 2:
					cuts = append(cuts, start+spec.HeaderLen+10) // inside the JSON
				}
				// Inside the block: its rest goes out with the start of
				// the next request.
				cuts = append(cuts, len(stream)-len(m.Binary)+min(100, len(m.Binary)/2))
			}
			t.sendInPieces(s.Conn, stream, cuts, pipelinePause, fmt.Sprintf("%d pipelined UPLOADs", len(sent)))
			for i, m := range sent {
				resp, err := s.Conn.ReadMessage()
				rep := &Reply{Conn: s.Conn, Req: m, Resp: resp, Err: err}
				if err != nil {
					msg, extra := describeNoAnswer(err)
					for _, id := range extra {
						t.record(rep, id, msg, "exactly one response to the request", false)
					}
					t.FailTerms(rep, "EXT-6", fmt.Sprintf("the server advertised pipelining, but block %d of the window got no answer: %s", i, msg), "a response to every pipelined request")
				}
				if st := rep.Status(); st != spec.StatusOK {
					why := ""
					if st == spec.StatusBlockSize {
						why = ": the server read past a block's announced length into the next request (STEP.md A.23)"
					}
					t.FailTerms(rep, "EXT-6", fmt.Sprintf("the server advertised pipelining, but block %d of the window was answered with status %s%s", i, statusText(st), why), "status 200 for every block")
				}
				if got, err := rep.Resp.BlockIndex(); err != nil || got != int64(i) {
					t.FailTerms(rep, "EXT-6", fmt.Sprintf("the answer to block %d names block_index %s", i, rawOf(rep, spec.FieldBlockIndex)), fmt.Sprintf("block_index %d: answers in the order of the requests", i))
				}
				if i == len(sent)-1 {
					want := md5hex(data)
					if got, err := rep.Resp.MD5(); err != nil || !equalFoldHex(got, want) {
						t.FailTerms(rep, "EXT-6", fmt.Sprintf("the upload completed with md5 %s, but the file sent hashes to %s: the blocks were not stored as sent", rawOf(rep, spec.FieldMD5), want), "md5 "+want)
					}
				}
			}
		})

		r.Case(reqs("EXT-7"), "a server advertising \"max_block_size\" at LOGIN plans and serves the block_size a client asks for, up to it", func(t *T) {
			s := t.Login()
			raw, ok := s.Login.Resp.Raw(spec.FieldMaxBlockSize)
			if !ok {
				t.Info(s.Login, "EXT-7", fmt.Sprintf("not advertised: the LOGIN response has no %q field", spec.FieldMaxBlockSize))
				return
			}
			adv, err := s.Login.Resp.Int(spec.FieldMaxBlockSize)
			if err != nil || adv < 1 {
				t.FailTerms(s.Login, "EXT-7", fmt.Sprintf("%q is %s", spec.FieldMaxBlockSize, raw), "a positive integer")
			}
			t.Note("the LOGIN response advertises max_block_size %d", adv)
			// Sizes unlike the course's 20480, so that a server ignoring
			// the request is seen.
			up, down := min(adv, 30000), min(adv, 25000)
			key := t.Key()
			data := randomBytes(int(2*up + 17))
			m := s.KeyReq(spec.OpSave, spec.TypeFile, key).Set(spec.FieldSize, len(data)).Set(spec.FieldBlockSize, up)
			rep := s.Do(m, "EXT-7")
			t.deleteLater(s, spec.TypeFile, key)
			if st := rep.Status(); st != spec.StatusOK {
				t.FailTerms(rep, "EXT-7", fmt.Sprintf("FILE SAVE asking for block_size %d got status %s", up, statusText(st)), "status 200")
			}
			p := Plan{Key: key, Size: int64(len(data)), BlockSize: up, TotalBlock: spec.TotalBlocks(int64(len(data)), up)}
			if bs, err := rep.Resp.BlockSize(); err != nil || bs != up {
				t.FailTerms(rep, "EXT-7", fmt.Sprintf("FILE SAVE asking for block_size %d was planned with block_size %s", up, rawOf(rep, spec.FieldBlockSize)), fmt.Sprintf("block_size %d", up))
			}
			if n, err := rep.Resp.TotalBlock(); err != nil || n != p.TotalBlock {
				t.FailTerms(rep, "EXT-7", fmt.Sprintf("the plan has total_block %s", rawOf(rep, spec.FieldTotalBlock)), fmt.Sprintf("total_block %d", p.TotalBlock))
			}
			var last *Reply
			for i := int64(0); i < p.TotalBlock; i++ {
				last = s.UploadBlock(p, data, i, "EXT-7")
				if st := last.Status(); st != spec.StatusOK {
					t.FailTerms(last, "EXT-7", fmt.Sprintf("block %d of %d bytes under the plan asked for got status %s", i, p.BlockLen(i), statusText(st)), "status 200")
				}
			}
			if got, err := last.Resp.MD5(); err != nil || !equalFoldHex(got, md5hex(data)) {
				t.FailTerms(last, "EXT-7", fmt.Sprintf("the upload completed with md5 %s", rawOf(last, spec.FieldMD5)), "md5 "+md5hex(data))
			}

			g := s.Do(s.KeyReq(spec.OpGet, spec.TypeFile, key).Set(spec.FieldBlockSize, down), "EXT-7")
			if bs, err := g.Resp.BlockSize(); g.Status() != spec.StatusOK || err != nil || bs != down {
				t.FailTerms(g, "EXT-7", fmt.Sprintf("FILE GET asking for block_size %d: status %s, block_size %s", down, statusText(g.Status()), rawOf(g, spec.FieldBlockSize)), fmt.Sprintf("status 200, block_size %d", down))
			}
			d := s.Do(s.KeyReq(spec.OpDownload, spec.TypeFile, key).Set(spec.FieldBlockIndex, 1).Set(spec.FieldBlockSize, down), "EXT-7")
			if want := data[down:min(2*down, int64(len(data)))]; d.Status() != spec.StatusOK || string(d.Resp.Binary) != string(want) {
				t.FailTerms(d, "EXT-7", fmt.Sprintf("FILE DOWNLOAD of block 1 with block_size %d: status %s, %d bytes that are not bytes %d..%d of the file", down, statusText(d.Status()), len(d.Resp.Binary), down, down+int64(len(want))), fmt.Sprintf("status 200 and bytes %d..%d", down, down+int64(len(want))))
			}
			if adv < 1<<31 {
				o := s.Do(s.KeyReq(spec.OpGet, spec.TypeFile, key).Set(spec.FieldBlockSize, adv+1), "EXT-7")
				if bs, err := o.Resp.BlockSize(); o.Status() != spec.StatusOK || err != nil || bs != adv {
					t.FailTerms(o, "EXT-7", fmt.Sprintf("FILE GET asking for block_size %d, one more than advertised: status %s, block_size %s", adv+1, statusText(o.Status()), rawOf(o, spec.FieldBlockSize)), fmt.Sprintf("status 200, block_size %d (the maximum)", adv))
				}
			}
			t.Note("plans followed the block_size asked for: %d for the upload, %d for the download", up, down)
		})
	})
}

// The EXT-6 window: blocks in flight at once, and the pause between the
// pieces they are cut into (one cut in each block, more in the first
// frames; a bad server needs to be caught once, not at every cut).
const (
	pipelineWindow = 5
	pipelinePause  = 20 * time.Millisecond
)

// advertisesPipelining reports whether a LOGIN response advertises
// pipelining, and if not, what it carries instead.
func advertisesPipelining(login *Reply) (bool, string) {
	if login == nil || login.Resp == nil {
		return false, "no LOGIN response"
	}
	raw, ok := login.Resp.Raw(spec.FieldPipelining)
	switch {
	case !ok:
		return false, fmt.Sprintf("the LOGIN response has no %q field", spec.FieldPipelining)
	case string(raw) == "true":
		return true, ""
	}
	return false, fmt.Sprintf("the LOGIN response's %q is %s, and only true advertises it", spec.FieldPipelining, raw)
}

// stringIs reports whether r's response has field as the string want.
func stringIs(r *Reply, field, want string) bool {
	got, err := r.Resp.String(field)
	return err == nil && got == want
}

// waitBelowLimit waits, for up to the read timeout, until a new connection
// is served with something other than 503: a server notices closed
// connections a moment after the client closes them.
// holdLogin logs a user in on a new connection, for EXT-3 to hold. A
// server at its limit answers a new connection 503 at once, and the
// connections of the run's earlier cases may still be closing on its
// side: a 503 is tried again, for the read timeout (a second at least),
// before the LOGIN is judged.
func (t *T) holdLogin() *Session {
	deadline := time.Now().Add(max(t.cfg.ReadTimeout, time.Second))
	for {
		u := randomOr(t)
		c := t.Dial()
		r := t.DoOn(c, loginReq(spec.FieldUsername, u.User, spec.FieldPassword, u.Password), "LOGIN-5")
		if r.Status() == spec.StatusServiceBusy && time.Now().Before(deadline) {
			c.Close()
			time.Sleep(20 * time.Millisecond)
			continue
		}
		return t.loggedIn(c, u, r)
	}
}

func (t *T) waitBelowLimit() {
	deadline := time.Now().Add(t.cfg.ReadTimeout)
	for time.Now().Before(deadline) {
		c, err := dialConn(t.ctx, t.cfg.Target, 0, t.cfg.ReadTimeout, &wireLog{start: time.Now()})
		if err != nil {
			return
		}
		u := randomOr(t)
		_ = c.WriteMessage(loginReq(spec.FieldUsername, u.User, spec.FieldPassword, u.Password))
		m, err := c.ReadMessage()
		c.Close()
		if err == nil {
			if st, _ := m.Status(); st != spec.StatusServiceBusy {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}
