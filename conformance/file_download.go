package conformance

import (
	"fmt"

	"github.com/stepkit/stepkit/spec"
)

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
