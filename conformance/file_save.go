package conformance

import (
	"fmt"

	"github.com/stepkit/stepkit/spec"
)

const emptyMD5 = "d41d8cd98f00b204e9800998ecf8427e"

// notPlanned checks that key has no upload planned: an UPLOAD of block 0
// is refused.
func (s *Session) notPlanned(key string, bin []byte, req, what string) {
	rep := s.UploadRaw(key, 0, bin, req)
	s.t.Check(rep, req, rep.Status().IsClientError(), fmt.Sprintf("%s, yet an UPLOAD of block 0 to it got status %s", what, statusText(rep.Status())), "the UPLOAD refused: nothing was planned")
}

// STEP.md section 9.1: FILE SAVE (upload plan).
func fileSaveCases(r *registrar) {
	r.Describe("9.1 FILE SAVE", func() {
		for _, size := range []int64{1, 50000} {
			size := size
			r.Case(reqs("FILE-SAVE-1"), fmt.Sprintf("SAVE of a new key, size %d, is answered 200 with a consistent plan", size), func(t *T) {
				s := t.Login()
				s.PlanUpload(t.Key(), size)
			})
		}

		r.Case(reqs("FILE-SAVE-2"), "SAVE without a key plans under a generated key", func(t *T) {
			s := t.Login()
			m := s.Req(spec.OpSave, spec.TypeFile)
			m.Set(spec.FieldSize, 3)
			rep := s.Do(m, "FILE-SAVE-2")
			p := t.checkPlan(rep, "FILE-SAVE-2", "", 3)
			t.deleteLater(s, spec.TypeFile, p.Key)
			up := s.UploadRaw(p.Key, 0, []byte("abc"), "FILE-SAVE-2")
			t.Status(up, "FILE-SAVE-2", spec.StatusOK)
			t.CompletedMD5(up, md5hex([]byte("abc")))
		})

		r.Case(reqs("FILE-SAVE-3"), "SAVE of a completed key is answered 402 and the file is unchanged", func(t *T) {
			s := t.Login()
			key := t.Key()
			data := randomBytes(300)
			s.UploadAll(key, data)
			m := s.KeyReq(spec.OpSave, spec.TypeFile, key)
			m.Set(spec.FieldSize, 10)
			t.Status(s.Do(m, "FILE-SAVE-3"), "FILE-SAVE-3", spec.StatusKeyExists)
			s.VerifyStored(key, data, "FILE-SAVE-3")
		})

		r.Case(reqs("FILE-SAVE-4", "FILE-SAVE-5"), "SAVE without a size is refused (410 preferred) and plans nothing", func(t *T) {
			s := t.Login()
			key := t.Key()
			rep := s.Do(s.KeyReq(spec.OpSave, spec.TypeFile, key), "FILE-SAVE-4")
			t.deleteLater(s, spec.TypeFile, key)
			t.Refused(rep, "FILE-SAVE-4", "FILE-SAVE-5", spec.StatusFieldMissing)
			s.notPlanned(key, []byte("x"), "FILE-SAVE-4", "SAVE without size was refused")
		})

		r.Case(reqs("FILE-SAVE-6"), "SAVE of a key still uploading is accepted with a new plan", func(t *T) {
			s := t.Login()
			key := t.Key()
			probe := s.PlanUpload(t.Key(), 1)
			p := s.PlanUpload(key, 2*probe.BlockSize)
			t.Status(s.UploadRaw(key, 0, randomBytes(int(p.BlockLen(0))), "FILE-SAVE-6"), "FILE-SAVE-6", spec.StatusOK)
			m := s.KeyReq(spec.OpSave, spec.TypeFile, key)
			m.Set(spec.FieldSize, 7)
			p2 := t.checkPlan(s.Do(m, "FILE-SAVE-6"), "FILE-SAVE-6", key, 7)
			data := []byte("1234567")
			up := s.UploadRaw(key, 0, data[:p2.BlockLen(0)], "FILE-SAVE-6")
			t.Status(up, "FILE-SAVE-6", spec.StatusOK)
			if p2.TotalBlock == 1 {
				t.CompletedMD5(up, md5hex(data))
			}
		})

		r.Case(reqs("FILE-SAVE-7"), "SAVE of a key still uploading discards the blocks received before", func(t *T) {
			s := t.Login()
			key := t.Key()
			probe := s.PlanUpload(t.Key(), 1)
			size := 2 * probe.BlockSize
			data := randomBytes(int(size))
			p := s.PlanUpload(key, size)
			t.Status(s.UploadBlock(p, data, 0, "FILE-SAVE-7"), "FILE-SAVE-7", spec.StatusOK)
			p = s.PlanUpload(key, size)
			last := s.UploadBlock(p, data, 1, "FILE-SAVE-7")
			t.Status(last, "FILE-SAVE-7", spec.StatusOK)
			_, hasMD5 := last.Resp.Raw(spec.FieldMD5)
			g := s.GetPlan(key, "FILE-SAVE-7")
			if !t.Check(g, "FILE-SAVE-7", !hasMD5 && g.Status() == spec.StatusKeyNotFound,
				"after the second SAVE only block 1 was sent, yet the upload completed: block 0 of the first plan was kept", "the upload still in progress (FILE GET 404)") {
				return
			}
			up := s.UploadBlock(p, data, 0, "FILE-SAVE-7")
			t.Status(up, "FILE-SAVE-7", spec.StatusOK)
			t.CompletedMD5(up, md5hex(data))
		})

		r.Case(reqs("FILE-SAVE-8", "FILE-SAVE-9"), "SAVE of size 0 is answered (an empty file at once preferred)", func(t *T) {
			s := t.Login()
			key := t.Key()
			m := s.KeyReq(spec.OpSave, spec.TypeFile, key)
			m.Set(spec.FieldSize, 0)
			rep := s.Do(m, "FILE-SAVE-8")
			t.deleteLater(s, spec.TypeFile, key)
			st := rep.Status()
			t.Check(rep, "FILE-SAVE-8", st == spec.StatusOK || st.IsClientError(), fmt.Sprintf("status %s", statusText(st)), "200 or a 4xx status")
			if st != spec.StatusOK {
				t.Info(rep, "FILE-SAVE-9", "size 0 is refused, not stored as an empty file")
				return
			}
			tb, _ := rep.Resp.Int(spec.FieldTotalBlock)
			md, _ := rep.Resp.MD5()
			if tb != 0 || !equalFoldHex(md, emptyMD5) {
				t.Info(rep, "FILE-SAVE-9", "size 0 is planned, not created at once with total_block 0 and md5 "+emptyMD5)
				return
			}
			g := s.GetPlan(key, "FILE-SAVE-9")
			if g.Status() != spec.StatusOK {
				t.Info(g, "FILE-SAVE-9", "the empty file is not there at once")
			}
		})

		r.Case(reqs("FILE-SAVE-10"), "SAVE of a size larger than the server accepts is refused (one byte past --max-file-size; 2^32 + 1 accepted without it is INFORMATIONAL)", func(t *T) {
			s := t.Login()
			key := t.Key()
			limit := t.Config().MaxFileSize
			size := limit + 1
			if limit <= 0 {
				size = spec.MaxFileSize + 1
			}
			m := s.KeyReq(spec.OpSave, spec.TypeFile, key)
			m.Set(spec.FieldSize, size)
			rep := s.Do(m, "FILE-SAVE-10")
			t.deleteLater(s, spec.TypeFile, key)
			if limit <= 0 && rep.Status() == spec.StatusOK {
				// A server may accept larger files than the course
				// document's 2^32; which it accepts is its own setting,
				// not known to the run, and a plan no client follows
				// breaks nothing.
				t.Info(rep, "FILE-SAVE-10", fmt.Sprintf("a plan of %d bytes (2^32 + 1) was accepted; the server's limit is not known to the run (give --max-file-size to judge it)", size))
				return
			}
			t.Refused(rep, "FILE-SAVE-10", "", 0)
		})

		r.Case(reqs("FILE-SAVE-11"), "plans use block_size 20480, or the block size the run was told the server is configured with", func(t *T) {
			want, why := int64(spec.DefaultBlockSize), "the default"
			if bs := t.Config().BlockSize; bs > 0 {
				want, why = bs, "the server's configured block size (--block-size)"
			}
			s := t.Login()
			p := s.PlanUpload(t.Key(), 3*spec.DefaultBlockSize)
			rep := &Reply{Evidence: fmt.Sprintf("upload plan: block_size %d, total_block %d", p.BlockSize, p.TotalBlock)}
			t.Check(rep, "FILE-SAVE-11", p.BlockSize == want, fmt.Sprintf("the plan's block_size is %d", p.BlockSize), fmt.Sprintf("block_size %d, %s", want, why))
		})
	})
}
