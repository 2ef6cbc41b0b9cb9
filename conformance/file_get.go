package conformance

import (
	"fmt"

	"github.com/onsi/gomega"

	"github.com/stepkit/stepkit/spec"
)

// STEP.md section 9.3: FILE GET (download plan).
func fileGetCases(r *registrar) {
	r.Describe("9.3 FILE GET", func() {
		r.Case(reqs("FILE-GET-1"), "GET of a completed key is answered 200 with key, size, block_size, total_block and md5", func(t *T) {
			s := t.Login()
			key := t.Key()
			p, data := threeBlocks(t, s, key)
			s.SendBlocks(p, data)
			g := s.GetPlan(key, "FILE-GET-1")
			t.Status(g, "FILE-GET-1", spec.StatusOK)
			t.Field(g, "FILE-GET-1", spec.FieldKey, key)
			t.Field(g, "FILE-GET-1", spec.FieldSize, len(data))
			bs := t.HasInt(g, "FILE-GET-1", spec.FieldBlockSize)
			t.Expect(g, "FILE-GET-1", bs, gomega.And(gomega.BeNumerically(">=", 1), gomega.BeNumerically("<=", spec.MaxBlockSize)), "block_size out of 1..65536")
			t.Field(g, "FILE-GET-1", spec.FieldTotalBlock, spec.TotalBlocks(int64(len(data)), bs))
			md := t.HasString(g, "FILE-GET-1", spec.FieldMD5)
			t.Check(g, "FILE-GET-1", equalFoldHex(md, md5hex(data)), fmt.Sprintf("md5 %s, the file hashes to %s", md, md5hex(data)), "md5 "+md5hex(data))
		})

		r.Case(reqs("FILE-GET-2"), "GET of an unknown key is answered 404", func(t *T) {
			s := t.Login()
			t.Status(s.GetPlan(t.Key(), "FILE-GET-2"), "FILE-GET-2", spec.StatusKeyNotFound)
		})

		r.Case(reqs("FILE-GET-3"), "GET of a key whose upload has not begun sending blocks is answered 404", func(t *T) {
			s := t.Login()
			key := t.Key()
			s.PlanUpload(key, 10)
			t.Status(s.GetPlan(key, "FILE-GET-3"), "FILE-GET-3", spec.StatusKeyNotFound)
		})

		r.Case(reqs("FILE-GET-4", "FILE-GET-5"), "GET without a key is refused (410 preferred)", func(t *T) {
			s := t.Login()
			rep := s.Do(s.Req(spec.OpGet, spec.TypeFile), "FILE-GET-4")
			t.Refused(rep, "FILE-GET-4", "FILE-GET-5", spec.StatusFieldMissing)
		})
	})
}
