package conformance

import (
	"fmt"

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
			t.Check(g, "FILE-GET-1", bs >= 1 && bs <= spec.MaxBlockSize, fmt.Sprintf("block_size %d", bs), "block_size in 1..65536")
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

// STEP.md section 9.4: FILE DOWNLOAD.
func fileDownloadCases(r *registrar) {
	r.Describe("9.4 FILE DOWNLOAD", func() {
		r.Case(reqs("FILE-DOWNLOAD-1"), "every block downloads with 200, key, block_index, size and the bytes uploaded", func(t *T) {
			s := t.Login()
			key := t.Key()
			p, data := threeBlocks(t, s, key)
			s.SendBlocks(p, data)
			g := s.GetPlan(key, "FILE-DOWNLOAD-1")
			t.Status(g, "FILE-DOWNLOAD-1", spec.StatusOK)
			bs := t.HasInt(g, "FILE-DOWNLOAD-1", spec.FieldBlockSize)
			dp := Plan{Key: key, Size: int64(len(data)), BlockSize: bs, TotalBlock: spec.TotalBlocks(int64(len(data)), bs)}
			// Out of order on purpose: a block is addressed by its index.
			order := []int64{dp.TotalBlock - 1}
			for i := int64(0); i < dp.TotalBlock-1; i++ {
				order = append(order, i)
			}
			for _, i := range order {
				d := s.Download(key, i, "FILE-DOWNLOAD-1")
				t.Status(d, "FILE-DOWNLOAD-1", spec.StatusOK)
				t.Field(d, "FILE-DOWNLOAD-1", spec.FieldKey, key)
				t.Field(d, "FILE-DOWNLOAD-1", spec.FieldBlockIndex, i)
				want := dp.Block(data, i)
				t.Field(d, "FILE-DOWNLOAD-1", spec.FieldSize, len(want))
				got := d.Resp.Binary
				t.Check(d, "FILE-DOWNLOAD-1", string(got) == string(want),
					fmt.Sprintf("block %d: %d bytes with md5 %s; the uploaded block has %d bytes, md5 %s%s", i, len(got), md5hex(got), len(want), md5hex(want), whereFrom(data, got, dp.BlockSize)),
					fmt.Sprintf("bytes %d..%d of the file", i*dp.BlockSize, i*dp.BlockSize+int64(len(want))))
			}
		})

		r.Case(reqs("FILE-DOWNLOAD-2"), "DOWNLOAD of an unknown key is answered 404", func(t *T) {
			s := t.Login()
			t.Status(s.Download(t.Key(), 0, "FILE-DOWNLOAD-2"), "FILE-DOWNLOAD-2", spec.StatusKeyNotFound)
		})

		cases := []struct {
			reqs  []string
			title string
			index any
			want  spec.Status
		}{
			{reqs("FILE-DOWNLOAD-5", "FILE-DOWNLOAD-6"), "DOWNLOAD without a block_index is refused (410 preferred)", nil, spec.StatusFieldMissing},
			{reqs("FILE-DOWNLOAD-7", "FILE-DOWNLOAD-8"), "DOWNLOAD of block_index total_block is refused (405 preferred)", "total", spec.StatusBlockIndexRange},
			{reqs("FILE-DOWNLOAD-7", "FILE-DOWNLOAD-8"), "DOWNLOAD of a block_index far past the end is refused (405 preferred)", 1000000, spec.StatusBlockIndexRange},
			{reqs("FILE-DOWNLOAD-9", "FILE-DOWNLOAD-10"), "DOWNLOAD of a negative block_index is refused (410 preferred)", -1, spec.StatusFieldMissing},
		}
		for _, c := range cases {
			c := c
			r.Case(c.reqs, c.title, func(t *T) {
				s := t.Login()
				key := t.Key()
				data := randomBytes(100)
				p := s.UploadAll(key, data)
				idx := c.index
				if idx == "total" {
					idx = p.TotalBlock
				}
				rep := s.Download(key, idx, c.reqs[0])
				t.Refused(rep, c.reqs[0], c.reqs[1], c.want)
				t.Check(rep, c.reqs[0], len(rep.Resp.Binary) == 0, fmt.Sprintf("the refusal carries %d bytes of binary", len(rep.Resp.Binary)), "no block")
			})
		}

		r.Case(reqs("FILE-DOWNLOAD-3", "FILE-DOWNLOAD-4"), "DOWNLOAD without a key is refused (410 preferred)", func(t *T) {
			s := t.Login()
			m := s.Req(spec.OpDownload, spec.TypeFile)
			m.Set(spec.FieldBlockIndex, 0)
			rep := s.Do(m, "FILE-DOWNLOAD-3")
			t.Refused(rep, "FILE-DOWNLOAD-3", "FILE-DOWNLOAD-4", spec.StatusFieldMissing)
		})
	})
}

// whereFrom says which part of data a wrongly served block came from.
func whereFrom(data, got []byte, bs int64) string {
	if len(got) == 0 {
		return ""
	}
	for off := 0; off+len(got) <= len(data); off++ {
		if string(data[off:off+len(got)]) == string(got) {
			return fmt.Sprintf(" (the bytes served are the file's bytes from offset %d)", off)
		}
	}
	return ""
}

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
