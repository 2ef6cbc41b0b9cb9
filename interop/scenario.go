package interop

import (
	"crypto/md5"
	"encoding/hex"
	"math/rand/v2"
)

// Scenario is one short exchange a pair runs: the client uploads a file
// (and, for Download, fetches it back into {dir}).
type Scenario struct {
	ID    string // names the cell's files: course, multiblock, nonascii, download
	Title string
	Name  string // the file's name, as the client is given it
	Size  int
	// Download asks the client to fetch the file back into {dir}; it
	// applies only to a client whose template has {dir}.
	Download bool
}

// Scenarios are the default scenarios, each small and fast. The course
// flow's file is a few hundred KiB plus an odd number of bytes, so that
// its last block is short under any plan.
func Scenarios() []Scenario {
	return []Scenario{
		{ID: "course", Title: "the course flow: a file of 300 KiB and 777 bytes", Name: "report.bin", Size: 300<<10 + 777},
		{ID: "multiblock", Title: "a multi-block upload of about 2 MiB", Name: "dataset.bin", Size: 2<<20 + 4099},
		{ID: "nonascii", Title: "a non-ASCII file name", Name: "résumé-数据.bin", Size: 50<<10 + 11},
		{ID: "download", Title: "the file downloaded back into {dir}", Name: "roundtrip.bin", Size: 120<<10 + 5, Download: true},
	}
}

// data is the scenario's file: the same bytes in every cell, so that a
// verdict does not depend on the cell.
func (s Scenario) data() []byte {
	r := rand.New(rand.NewPCG(uint64(s.Size), uint64(len(s.Name))))
	b := make([]byte, s.Size)
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}
