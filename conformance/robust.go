package conformance

import (
	"errors"
	"fmt"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// stillServes checks, on a fresh connection, that the server still answers
// a LOGIN after the abuse a case inflicted (ROBUST-1).
func (t *T) stillServes() *Session {
	c := t.Dial()
	u := t.User()
	rep := t.DoOn(c, loginReq(spec.FieldUsername, u.User, spec.FieldPassword, u.Password), "ROBUST-1")
	t.Status(rep, "ROBUST-1", spec.StatusOK)
	tok, _ := rep.Resp.Token()
	return &Session{Conn: c, t: t, Creds: u, Token: tok}
}

// STEP.md section 12: bad input.
func robustCases(r *registrar) {
	r.Describe("12. Bad input", func() {
		malformed := []struct {
			what string
			json []byte
		}{
			{"JSON that does not parse", []byte(`{"operation": "LOGIN", "direction": `)},
			{"JSON that is an array, not an object", []byte(`["LOGIN","REQUEST","AUTH"]`)},
			{"JSON that is not UTF-8", []byte("{\"operation\":\"GET\",\"direction\":\"REQUEST\",\"type\":\"DATA\",\"key\":\"\xff\xfe\"}")},
			{"an empty JSON part", []byte{}},
		}
		for _, mf := range malformed {
			mf := mf
			r.Case(reqs("ROBUST-2", "ROBUST-1"), mf.what+" is answered 400 and the connection stays usable", func(t *T) {
				s := t.Login()
				rep := t.TryRaw(s.Conn, spec.RawFrame(mf.json, nil), mf.what)
				if rep.Err != nil {
					t.Check(rep, "ROBUST-2", false, "no answer to the malformed frame: "+rep.Err.Error(), "ERROR/400, connection open")
				} else {
					t.Check(rep, "ROBUST-2", rep.Status() == spec.StatusCompulsory && rep.Resp.Operation() == spec.OpError,
						fmt.Sprintf("%s %s", rep.Resp.Operation(), statusText(rep.Status())), "operation ERROR, status 400")
					g := t.Try(s.Conn, s.KeyReq(spec.OpGet, spec.TypeData, t.Key()))
					t.Check(g, "ROBUST-2", g.Err == nil && g.Status() == spec.StatusKeyNotFound, "the connection is not usable after the malformed frame", "a DATA GET answered 404 on the same connection")
				}
				t.stillServes()
			})
		}

		r.Case(reqs("ROBUST-3", "ROBUST-1"), "a header announcing 4 GiB of JSON is answered 413 and the connection closed", func(t *T) {
			c := t.Dial()
			rep := t.TryRaw(c, spec.Header(0xFFFFFFF0, 0), "a header announcing 4294967280 bytes of JSON, and nothing after it")
			switch {
			case rep.Err == nil:
				t.Check(rep, "ROBUST-3", rep.Status() == spec.StatusTooLarge, fmt.Sprintf("status %s", statusText(rep.Status())), "status 413, then the connection closed")
				closed, _ := c.expectClose(t.Config().ReadTimeout)
				t.Check(rep, "ROBUST-3", closed, "the connection stayed open after the oversized header", "the connection closed")
			case errors.Is(rep.Err, ErrClosed):
				t.Check(rep, "ROBUST-3", false, "the connection was closed without the 413 answer", "status 413, then the connection closed")
			default:
				t.Check(rep, "ROBUST-3", false, "no answer: "+rep.Err.Error(), "status 413, then the connection closed")
			}
			t.stillServes()
		})

		r.Case(reqs("ROBUST-3", "ROBUST-1"), "a header announcing 4 GiB of binary is answered 413 and the connection closed", func(t *T) {
			s := t.Login()
			js := s.KeyReq(spec.OpUpload, spec.TypeFile, t.Key()).Set(spec.FieldBlockIndex, 0).AppendJSON(nil)
			b := append(spec.Header(uint32(len(js)), 0xFFFFFFF0), js...)
			rep := t.TryRaw(s.Conn, b, "an UPLOAD announcing 4294967280 binary bytes, none sent")
			if rep.Err != nil {
				t.Check(rep, "ROBUST-3", false, "no answer: "+rep.Err.Error(), "status 413, then the connection closed")
			} else {
				t.Check(rep, "ROBUST-3", rep.Status() == spec.StatusTooLarge, fmt.Sprintf("status %s", statusText(rep.Status())), "status 413")
			}
			t.stillServes()
		})

		r.Case(reqs("ROBUST-4", "ROBUST-1"), "a DATA SAVE cut off mid-frame stores nothing", func(t *T) {
			s := t.Login()
			key := t.Key()
			m := s.KeyReq(spec.OpSave, spec.TypeData, key).Set("v", "half")
			b, _ := spec.EncodeFrame(m)
			t.SendRaw(s.Conn, b[:len(b)-5], "a DATA SAVE frame without its last 5 bytes")
			s.Conn.Close()
			n := t.stillServes()
			g := n.Do(n.KeyReq(spec.OpGet, spec.TypeData, key), "ROBUST-4")
			if g.Status() == spec.StatusOK {
				t.deleteLater(n, spec.TypeData, key)
			}
			t.Status(g, "ROBUST-4", spec.StatusKeyNotFound)
		})

		r.Case(reqs("ROBUST-4", "ROBUST-1"), "the last UPLOAD block cut off mid-binary does not complete the file", func(t *T) {
			s := t.Login()
			key := t.Key()
			p, data := threeBlocks(t, s, key)
			for i := int64(0); i < p.TotalBlock-1; i++ {
				t.Status(s.UploadBlock(p, data, i, "ROBUST-4"), "ROBUST-4", spec.StatusOK)
			}
			m := s.KeyReq(spec.OpUpload, spec.TypeFile, key).Set(spec.FieldBlockIndex, p.TotalBlock-1)
			m.Binary = p.Block(data, p.TotalBlock-1)
			b, _ := spec.EncodeFrame(m)
			t.SendRaw(s.Conn, b[:len(b)-len(m.Binary)/2], "the last UPLOAD frame with half of its block")
			s.Conn.Close()
			n := t.stillServes()
			t.Status(n.GetPlan(key, "ROBUST-4"), "ROBUST-4", spec.StatusKeyNotFound)
			// The upload can still be finished.
			last := n.UploadBlock(p, data, p.TotalBlock-1, "ROBUST-4")
			t.Status(last, "ROBUST-4", spec.StatusOK)
			t.CompletedMD5(last, md5hex(data))
			t.deleteLater(n, spec.TypeFile, key)
		})

		r.Case(reqs("ROBUST-1"), "after garbage bytes, a header cut in two and an abrupt close, new connections are served", func(t *T) {
			c1 := t.Dial()
			t.SendRaw(c1, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "an HTTP request")
			c1.Close()
			c2 := t.Dial()
			t.SendRaw(c2, []byte{0, 0, 0}, "three bytes of a header")
			c2.Close()
			c3 := t.Dial()
			t.SendRaw(c3, spec.Header(0xFFFFFFFF, 0xFFFFFFFF), "a header announcing 8 GiB")
			c3.Close()
			time.Sleep(20 * time.Millisecond)
			s := t.stillServes()
			key := t.Key()
			s.SaveData(key, "v", 1)
		})

		r.SlowCase(reqs("ROBUST-5"), "a connection stalled mid-frame is closed after the server's timeout", func(c Config) time.Duration { return c.IdleTimeout }, func(t *T) {
			idle := t.Config().IdleTimeout
			if idle <= 0 {
				t.NotApplicable("ROBUST-5", "the server's idle timeout is not known for this run (--idle-timeout)")
			}
			c := t.Dial()
			t.SendRaw(c, spec.Header(100, 0), "a header announcing 100 bytes of JSON, and nothing after it")
			closed, err := c.expectClose(idle + t.Config().ReadTimeout)
			t.Check(&Reply{Conn: c, Evidence: errOr(err, "still open")}, "ROBUST-5", closed, fmt.Sprintf("the stalled connection was still open %v after the idle timeout", t.Config().ReadTimeout), "the connection closed")
		})
	})
}
