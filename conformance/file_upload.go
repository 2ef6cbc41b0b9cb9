package conformance

import (
	"fmt"

	"github.com/stepkit/stepkit/spec"
)

// threeBlocks plans an upload of two whole blocks and a partial one and
// returns the plan and the data.
func threeBlocks(t *T, s *Session, key string) (Plan, []byte) {
	probe := s.PlanUpload(t.Key(), 1)
	data := randomBytes(int(2*probe.BlockSize + probe.BlockSize/3 + 1))
	return s.PlanUpload(key, int64(len(data))), data
}

// STEP.md section 9.2: FILE UPLOAD.
func fileUploadCases(r *registrar) {
	r.Describe("9.2 FILE UPLOAD", func() {
		r.Case(reqs("FILE-UPLOAD-1", "FILE-UPLOAD-2"), "every block is answered 200 with key and block_index; the last adds the file's md5, checked end to end", func(t *T) {
			s := t.Login()
			key := t.Key()
			p, data := threeBlocks(t, s, key)
			var last *Reply
			for i := int64(0); i < p.TotalBlock; i++ {
				last = s.UploadBlock(p, data, i, "FILE-UPLOAD-1")
				t.Status(last, "FILE-UPLOAD-1", spec.StatusOK)
				t.Field(last, "FILE-UPLOAD-1", spec.FieldKey, key)
				t.Field(last, "FILE-UPLOAD-1", spec.FieldBlockIndex, i)
			}
			t.CompletedMD5(last, md5hex(data))
			s.VerifyStored(key, data, "FILE-UPLOAD-2")
		})

		r.Case(reqs("FILE-UPLOAD-2"), "a one-byte file completes with its md5", func(t *T) {
			s := t.Login()
			key := t.Key()
			data := []byte{0x5a}
			s.UploadAll(key, data)
			s.VerifyStored(key, data, "FILE-UPLOAD-2")
		})

		r.Case(reqs("FILE-UPLOAD-3"), "UPLOAD without a key is answered 410", func(t *T) {
			s := t.Login()
			m := s.Req(spec.OpUpload, spec.TypeFile)
			m.Set(spec.FieldBlockIndex, 0)
			m.Binary = []byte("abc")
			t.Status(s.Do(m, "FILE-UPLOAD-3"), "FILE-UPLOAD-3", spec.StatusFieldMissing)
		})

		r.Case(reqs("FILE-UPLOAD-4", "FILE-UPLOAD-5"), "UPLOAD without a block_index is refused (410 preferred)", func(t *T) {
			s := t.Login()
			key := t.Key()
			data := []byte("abc")
			p := s.PlanUpload(key, 3)
			rep := s.UploadRaw(key, nil, data, "FILE-UPLOAD-4")
			t.Refused(rep, "FILE-UPLOAD-4", "FILE-UPLOAD-5", spec.StatusFieldMissing)
			g := s.GetPlan(key, "FILE-UPLOAD-4")
			t.Check(g, "FILE-UPLOAD-4", g.Status() == spec.StatusKeyNotFound, "the refused UPLOAD completed the file", "the upload still in progress")
			s.SendBlocks(p, data)
		})

		for _, past := range []int64{0, 5} {
			past := past
			r.Case(reqs("FILE-UPLOAD-6", "FILE-UPLOAD-7"), fmt.Sprintf("UPLOAD of block_index total_block+%d is refused (405 preferred) and stores nothing", past), func(t *T) {
				s := t.Login()
				key := t.Key()
				p, data := threeBlocks(t, s, key)
				rep := s.UploadRaw(key, p.TotalBlock+past, p.Block(data, p.TotalBlock-1), "FILE-UPLOAD-6")
				t.Refused(rep, "FILE-UPLOAD-6", "FILE-UPLOAD-7", spec.StatusBlockIndexRange)
				s.SendBlocks(p, data)
				s.VerifyStored(key, data, "FILE-UPLOAD-6")
			})
		}

		r.Case(reqs("FILE-UPLOAD-8", "FILE-UPLOAD-9"), "UPLOAD of a negative block_index is refused (410 preferred) and stores nothing", func(t *T) {
			s := t.Login()
			key := t.Key()
			p, data := threeBlocks(t, s, key)
			rep := s.UploadRaw(key, -1, p.Block(data, 0), "FILE-UPLOAD-8")
			t.Refused(rep, "FILE-UPLOAD-8", "FILE-UPLOAD-9", spec.StatusFieldMissing)
			s.SendBlocks(p, data)
			s.VerifyStored(key, data, "FILE-UPLOAD-8")
		})

		r.Case(reqs("FILE-UPLOAD-10"), "blocks of the wrong length (short, long, empty, wrong last) are answered 406 and store nothing", func(t *T) {
			s := t.Login()
			key := t.Key()
			p, data := threeBlocks(t, s, key)
			bs := int(p.BlockSize)
			lastLen := int(p.BlockLen(p.TotalBlock - 1))
			bad := []struct {
				index int64
				bin   []byte
			}{
				{0, randomBytes(bs - 1)},
				{0, randomBytes(bs + 1)},
				{1, nil},
				{p.TotalBlock - 1, randomBytes(lastLen + 1)},
				{p.TotalBlock - 1, randomBytes(bs)},
			}
			for _, b := range bad {
				rep := s.UploadRaw(key, b.index, b.bin, "FILE-UPLOAD-10")
				t.Status(rep, "FILE-UPLOAD-10", spec.StatusBlockSize)
			}
			// Every block but 1, whose only attempt had the wrong length:
			// the upload must still be waiting for it.
			for _, i := range []int64{0, 2} {
				rep := s.UploadBlock(p, data, i, "FILE-UPLOAD-10")
				t.Status(rep, "FILE-UPLOAD-10", spec.StatusOK)
				_, done := rep.Resp.Raw(spec.FieldMD5)
				t.Check(rep, "FILE-UPLOAD-10", !done, "the upload completed although block 1 was only sent with the wrong length", "no md5: block 1 still missing")
			}
			t.Status(s.GetPlan(key, "FILE-UPLOAD-10"), "FILE-UPLOAD-10", spec.StatusKeyNotFound)
			last := s.UploadBlock(p, data, 1, "FILE-UPLOAD-10")
			t.Status(last, "FILE-UPLOAD-10", spec.StatusOK)
			t.CompletedMD5(last, md5hex(data))
			s.VerifyStored(key, data, "FILE-UPLOAD-10")
		})

		r.Case(reqs("FILE-UPLOAD-11", "FILE-UPLOAD-12"), "UPLOAD to a key with no plan is refused (408 preferred)", func(t *T) {
			s := t.Login()
			key := t.Key()
			rep := s.UploadRaw(key, 0, []byte("abc"), "FILE-UPLOAD-11")
			t.deleteLater(s, spec.TypeFile, key)
			t.Refused(rep, "FILE-UPLOAD-11", "FILE-UPLOAD-12", spec.StatusWrongOperation)
			t.Status(s.GetPlan(key, "FILE-UPLOAD-11"), "FILE-UPLOAD-11", spec.StatusKeyNotFound)
		})

		r.Case(reqs("FILE-UPLOAD-13", "FILE-UPLOAD-14"), "UPLOAD to a completed key is refused (408 preferred) and the file is unchanged", func(t *T) {
			s := t.Login()
			key := t.Key()
			data := randomBytes(64)
			s.UploadAll(key, data)
			rep := s.UploadRaw(key, 0, randomBytes(64), "FILE-UPLOAD-13")
			t.Refused(rep, "FILE-UPLOAD-13", "FILE-UPLOAD-14", spec.StatusWrongOperation)
			s.VerifyStored(key, data, "FILE-UPLOAD-13")
		})

		r.Case(reqs("FILE-UPLOAD-15"), "a block sent again before completion is accepted and does no harm", func(t *T) {
			s := t.Login()
			key := t.Key()
			p, data := threeBlocks(t, s, key)
			t.Status(s.UploadBlock(p, data, 0, "FILE-UPLOAD-15"), "FILE-UPLOAD-15", spec.StatusOK)
			t.Status(s.UploadBlock(p, data, 0, "FILE-UPLOAD-15"), "FILE-UPLOAD-15", spec.StatusOK)
			t.Status(s.UploadBlock(p, data, 1, "FILE-UPLOAD-15"), "FILE-UPLOAD-15", spec.StatusOK)
			t.Status(s.UploadBlock(p, data, 1, "FILE-UPLOAD-15"), "FILE-UPLOAD-15", spec.StatusOK)
			last := s.UploadBlock(p, data, 2, "FILE-UPLOAD-15")
			t.Status(last, "FILE-UPLOAD-15", spec.StatusOK)
			t.CompletedMD5(last, md5hex(data))
			s.VerifyStored(key, data, "FILE-UPLOAD-15")
		})

		r.Case(reqs("FILE-UPLOAD-16"), "blocks sent in reverse order complete the file when the last one arrives", func(t *T) {
			s := t.Login()
			key := t.Key()
			p, data := threeBlocks(t, s, key)
			var last *Reply
			for i := p.TotalBlock - 1; i >= 0; i-- {
				last = s.UploadBlock(p, data, i, "FILE-UPLOAD-16")
				t.Status(last, "FILE-UPLOAD-16", spec.StatusOK)
				if i > 0 {
					_, done := last.Resp.Raw(spec.FieldMD5)
					t.Check(last, "FILE-UPLOAD-16", !done, fmt.Sprintf("the upload reported completion after block %d, with blocks still missing", i), "no md5 before every block arrived")
				}
			}
			t.CompletedMD5(last, md5hex(data))
			s.VerifyStored(key, data, "FILE-UPLOAD-16")
		})

		r.Case(reqs("FILE-UPLOAD-17", "FILE-GET-3", "FILE-DOWNLOAD-2"), "an upload in progress is invisible to FILE GET and DOWNLOAD (404)", func(t *T) {
			s := t.Login()
			key := t.Key()
			p, data := threeBlocks(t, s, key)
			t.Status(s.UploadBlock(p, data, 0, "FILE-UPLOAD-17"), "FILE-UPLOAD-17", spec.StatusOK)
			t.Status(s.UploadBlock(p, data, 1, "FILE-UPLOAD-17"), "FILE-UPLOAD-17", spec.StatusOK)
			t.Status(s.GetPlan(key, "FILE-UPLOAD-17"), "FILE-UPLOAD-17", spec.StatusKeyNotFound)
			t.Status(s.Download(key, 0, "FILE-UPLOAD-17"), "FILE-UPLOAD-17", spec.StatusKeyNotFound)
			// From another connection too.
			o := s.Again()
			t.Status(o.GetPlan(key, "FILE-UPLOAD-17"), "FILE-UPLOAD-17", spec.StatusKeyNotFound)
			t.Status(o.Download(key, 1, "FILE-UPLOAD-17"), "FILE-UPLOAD-17", spec.StatusKeyNotFound)
		})
	})
}
