package conformance

import (
	"errors"
	"fmt"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// STEP.md section 2: framing.
func frameCases(r *registrar) {
	r.Describe("2. Framing", func() {
		r.Case(reqs("FRAME-1", "FRAME-3", "FRAME-7"), "a LOGIN frame with exact lengths is answered with one well-formed frame", func(t *T) {
			c := t.Dial()
			u := t.User()
			js := fmt.Sprintf(`{"operation":"LOGIN","direction":"REQUEST","type":"AUTH","username":%q,"password":%q}`, u.User, u.Password)
			rep := t.DoRaw(c, spec.RawFrame([]byte(js), nil), "LOGIN as one frame, binary length 0", "FRAME-1")
			t.Check(rep, "FRAME-7", len(rep.Resp.Binary) == 0, fmt.Sprintf("the LOGIN response carries %d binary bytes", len(rep.Resp.Binary)), "binary length 0")
			t.Status(rep, "FRAME-1", spec.StatusOK)
		})

		r.Case(reqs("FRAME-2", "FRAME-9"), "non-ASCII text travels with byte lengths both ways (DATA SAVE and GET)", func(t *T) {
			s := t.Login()
			key := t.Key() + "-文件-ü"
			value := "été 北京 ∑ 🙂"
			s.SaveData(key, "note", value)
			g := s.Do(s.KeyReq(spec.OpGet, spec.TypeData, key), "FRAME-2")
			t.Status(g, "FRAME-9", spec.StatusOK)
			t.Field(g, "FRAME-9", "note", value)
			t.Field(g, "FRAME-9", spec.FieldKey, key)
		})

		r.Case(reqs("FRAME-4"), "a request split across segments, the header itself in two pieces, is served", func(t *T) {
			c := t.Dial()
			u := t.User()
			req := spec.NewRequest(spec.OpLogin, spec.TypeAuth)
			req.Set(spec.FieldUsername, u.User)
			req.Set(spec.FieldPassword, u.Password)
			b, _ := spec.EncodeFrame(req)
			cuts := []int{3, 8, 8 + 10, len(b)}
			prev := 0
			for _, cut := range cuts {
				t.SendRaw(c, b[prev:cut], fmt.Sprintf("bytes %d..%d of a LOGIN frame", prev, cut))
				prev = cut
				time.Sleep(15 * time.Millisecond)
			}
			rep := t.Read(c, req, "FRAME-4")
			t.Status(rep, "FRAME-4", spec.StatusOK)
		})

		r.Case(reqs("FRAME-5"), "two requests in one segment get two responses, in order", func(t *T) {
			s := t.Login()
			key := t.Key()
			save := s.KeyReq(spec.OpSave, spec.TypeData, key)
			save.Set("n", 1)
			get := s.KeyReq(spec.OpGet, spec.TypeData, key)
			b1, _ := spec.EncodeFrame(save)
			b2, _ := spec.EncodeFrame(get)
			t.SendRaw(s.Conn, append(b1, b2...), "DATA SAVE and DATA GET in one write")
			t.deleteLater(s, spec.TypeData, key)
			r1 := t.Read(s.Conn, save, "FRAME-5")
			t.Status(r1, "FRAME-5", spec.StatusOK)
			r2 := t.Read(s.Conn, get, "FRAME-5")
			t.Status(r2, "FRAME-5", spec.StatusOK)
			t.Field(r2, "FRAME-5", "n", 1)
		})

		r.TimedCase(reqs("FRAME-6"), "a response arrives whole in the first read", func(t *T) {
			c := t.Dial()
			u := t.User()
			req := spec.NewRequest(spec.OpLogin, spec.TypeAuth)
			req.Set(spec.FieldUsername, u.User)
			req.Set(spec.FieldPassword, u.Password)
			t.Send(c, req)
			n, first, err := c.readOnce()
			rep := &Reply{Conn: c, Req: req}
			if err != nil {
				rep.Err = err
				t.transportFailure(rep, "FRAME-6")
			}
			m, used, derr := spec.DecodeFrame(first, spec.Limits{})
			rep.Resp = m
			if derr != nil {
				t.Check(rep, "FRAME-6", false, fmt.Sprintf("the first read returned %d bytes, not a whole frame (%v)", n, derr), "the whole response in one read")
				return
			}
			t.Check(rep, "FRAME-6", used == n, fmt.Sprintf("the first read returned %d bytes for a %d-byte frame", n, used), "one frame per read")
		})

		r.Case(reqs("FRAME-8"), "a block of exactly the announced block_size is accepted", func(t *T) {
			s := t.Login()
			p := s.PlanUpload(t.Key(), 1)
			// Plan another key for one whole block plus one byte, now that
			// the block size is known.
			size := p.BlockSize + 1
			data := randomBytes(int(size))
			p = s.PlanUpload(t.Key(), size)
			rep := s.UploadBlock(p, data, 0, "FRAME-8")
			t.Status(rep, "FRAME-8", spec.StatusOK)
			rep = s.UploadBlock(p, data, 1, "FRAME-8")
			t.Status(rep, "FRAME-8", spec.StatusOK)
			t.CompletedMD5(rep, md5hex(data))
		})

		r.Case(reqs("FRAME-10", "ROBUST-1"), "a header announcing 4 GiB of JSON, and no body, is answered or closed at once, not waited on", func(t *T) {
			c := t.Dial()
			oversizedHeader(t, c, spec.Header(0xFFFFFFF0, 0), "a header announcing 4294967280 bytes of JSON, and nothing after it")
		})

		r.Case(reqs("FRAME-10", "ROBUST-1"), "an UPLOAD announcing 4 GiB of binary, none sent, is answered or closed at once, not waited on", func(t *T) {
			s := t.Login()
			js := s.KeyReq(spec.OpUpload, spec.TypeFile, t.Key()).Set(spec.FieldBlockIndex, 0).AppendJSON(nil)
			b := append(spec.Header(uint32(len(js)), 0xFFFFFFF0), js...)
			oversizedHeader(t, s.Conn, b, "an UPLOAD announcing 4294967280 binary bytes, none sent")
		})

		r.Case(reqs("FRAME-9"), "a non-ASCII username logs in and a non-ASCII file key round-trips", func(t *T) {
			u := t.User()
			if u.Course {
				name := "ü-用户-" + randomHex(3)
				u = Creds{User: name, Password: coursePassword(name), Course: true}
			}
			s := t.LoginAs(u)
			key := "résumé 文件 " + randomHex(3)
			data := randomBytes(100)
			s.UploadAll(key, data)
			g := s.GetPlan(key, "FRAME-9")
			t.Status(g, "FRAME-9", spec.StatusOK)
			t.Field(g, "FRAME-9", spec.FieldKey, key)
		})
	})
}

// oversizedHeader sends b, a frame whose header announces far more than
// any sane limit, and nothing more, and judges FRAME-10: a server that
// checks the lengths before waiting for the body answers (ROBUST-3 prefers
// 413) or closes the connection, at once. Silence for the whole read
// timeout, while the server answers a LOGIN on a new connection, can only
// mean that it is waiting for the body it announced; the course's
// reference does exactly that (STEP.md A.2), which FRAME-10 forbids, so it
// is a FAIL here, while ROBUST-3's cases judge the 413 itself.
func oversizedHeader(t *T, c *Conn, b []byte, note string) {
	rep := t.TryRaw(c, b, note)
	switch {
	case rep.Err == nil:
		t.Note("answered with status %s", statusText(rep.Status()))
	case errors.Is(rep.Err, ErrClosed):
		t.Note("the connection was closed without an answer (ROBUST-3 prefers a 413 first)")
	case errors.Is(rep.Err, ErrSilent):
		// Rule out a server that is simply slow or gone: it must still
		// answer at once on a new connection (ROBUST-1).
		t.stillServes()
		t.Check(rep, "FRAME-10", false,
			fmt.Sprintf("neither an answer nor a close within %v, while a LOGIN on a new connection was answered at once: the server is waiting for (or allocating) the body the header announced", t.Config().ReadTimeout),
			"the lengths checked against the server's limits at once: an answer (413 preferred, ROBUST-3) or a close")
	default:
		// Something came back, even if not a valid frame: the server did
		// not wait for the body. FRAME-1 is judged elsewhere.
		t.Note("answered with bytes that are not a valid STEP frame: %v", rep.Err)
	}
	t.stillServes()
}

// readOnce performs a single read of up to 64 KiB under the read timeout.
func (c *Conn) readOnce() (int, []byte, error) {
	if err := c.startWait(c.readTimeout); err != nil {
		return 0, nil, err
	}
	buf := make([]byte, 64<<10)
	n, err := patientReader{c}.Read(buf)
	c.broken = true // the frame reader no longer sees these bytes
	if n > 0 {
		c.log.add(Event{Conn: c.id, Dir: "recv", Note: fmt.Sprintf("first read: %d bytes", n), Hex: hexDump(buf[:n], 256)})
		return n, buf[:n], nil
	}
	if err == nil {
		err = ErrSilent
	}
	return 0, nil, normalizeReadErr(err)
}
