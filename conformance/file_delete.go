package conformance

import (
	"fmt"

	"github.com/stepkit/stepkit/spec"
)

// STEP.md section 9.5: FILE DELETE.
func fileDeleteCases(r *registrar) {
	r.Describe("9.5 FILE DELETE", func() {
		r.Case(reqs("FILE-DELETE-1"), "DELETE of a completed key is answered 200 with the key and removes the file", func(t *T) {
			s := t.Login()
			key := t.Key()
			s.UploadAll(key, randomBytes(50))
			d := s.Do(s.KeyReq(spec.OpDelete, spec.TypeFile, key), "FILE-DELETE-1")
			t.Status(d, "FILE-DELETE-1", spec.StatusOK)
			t.Field(d, "FILE-DELETE-1", spec.FieldKey, key)
			t.Status(s.GetPlan(key, "FILE-DELETE-1"), "FILE-DELETE-1", spec.StatusKeyNotFound)
			t.Status(s.Download(key, 0, "FILE-DELETE-1"), "FILE-DELETE-1", spec.StatusKeyNotFound)
			// The key can be used again.
			data := randomBytes(20)
			s.UploadAll(key, data)
			s.VerifyStored(key, data, "FILE-DELETE-1")
		})

		r.Case(reqs("FILE-DELETE-2"), "DELETE of an unknown key is answered 404", func(t *T) {
			s := t.Login()
			t.Status(s.Do(s.KeyReq(spec.OpDelete, spec.TypeFile, t.Key()), "FILE-DELETE-2"), "FILE-DELETE-2", spec.StatusKeyNotFound)
		})

		r.Case(reqs("FILE-DELETE-3", "FILE-DELETE-4"), "DELETE without a key is refused (410 preferred)", func(t *T) {
			s := t.Login()
			rep := s.Do(s.Req(spec.OpDelete, spec.TypeFile), "FILE-DELETE-3")
			t.Refused(rep, "FILE-DELETE-3", "FILE-DELETE-4", spec.StatusFieldMissing)
		})

		r.Case(reqs("FILE-DELETE-5", "FILE-DELETE-6"), "DELETE of an upload in progress removes it (404 preferred); later blocks are refused", func(t *T) {
			s := t.Login()
			key := t.Key()
			p, data := threeBlocks(t, s, key)
			t.Status(s.UploadBlock(p, data, 0, "FILE-DELETE-5"), "FILE-DELETE-5", spec.StatusOK)
			d := s.Do(s.KeyReq(spec.OpDelete, spec.TypeFile, key), "FILE-DELETE-5")
			st := d.Status()
			t.Check(d, "FILE-DELETE-5", st == spec.StatusOK || st.IsClientError(), fmt.Sprintf("status %s", statusText(st)), "200 or 404")
			if st != spec.StatusKeyNotFound {
				t.Check(d, "FILE-DELETE-6", false, fmt.Sprintf("status %d", st), "status 404, as the reference answers")
			}
			for i := int64(1); i < p.TotalBlock; i++ {
				rep := s.UploadBlock(p, data, i, "FILE-DELETE-5")
				t.Check(rep, "FILE-DELETE-5", rep.Status().IsClientError(), fmt.Sprintf("block %d of the deleted upload got status %s", i, statusText(rep.Status())), "a 4xx: the upload is gone")
			}
			t.Status(s.GetPlan(key, "FILE-DELETE-5"), "FILE-DELETE-5", spec.StatusKeyNotFound)
		})
	})
}
