package local_test

import (
	"crypto/md5"
	"fmt"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/refserver/storage/local"
	"github.com/stepkit/stepkit/refserver/storage/storagetest"
)

func TestContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) func() storage.Backend {
		dir := t.TempDir()
		return func() storage.Backend {
			s, err := local.Open(dir, false)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}

// TestEarlyBlocks: blocks that arrive ahead of the hash (from another
// connection of the same transfer) are in the file before their record,
// whether the gap before them fills before the commit or after it, and
// the caller may reuse a block's buffer at once. A store opened afresh
// on the folder, as after a crash, finds every recorded block's bytes
// and completes the file with the right MD5.
func TestEarlyBlocks(t *testing.T) {
	const bs = 1000
	data := storagetest.Pattern(12*bs+5, 7)
	dir := t.TempDir()
	open := func() *local.Store {
		s, err := local.Open(dir, false)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	write := func(s *local.Store, idx ...int64) *storage.FileMeta {
		t.Helper()
		u, err := s.Upload("u", "k")
		if err != nil {
			t.Fatal(err)
		}
		var m *storage.FileMeta
		for _, i := range idx {
			b := append([]byte(nil), data[i*bs:min((i+1)*bs, int64(len(data)))]...)
			if m, err = s.WriteBlockBatched("u", "k", u, i, b, time.Now()); err != nil {
				t.Fatalf("block %d: %v", i, err)
			}
			for j := range b {
				b[j] = 0xff // the frame reader reuses its buffer
			}
		}
		unlock := s.Lock("u", "k")
		defer unlock()
		if err := s.CommitBlocks("u", "k", u); err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := open()
	if _, _, err := a.PlanUpload("u", "k", int64(len(data)), bs, time.Now()); err != nil {
		t.Fatal(err)
	}
	write(a, 2, 3)    // early, written by the commit
	write(a, 5, 0, 1) // the gap before 2 and 3 fills; 5 stays early
	write(a, 8, 7)    // early, and committed: then the server dies
	b := open()
	m := write(b, 12, 4, 6, 10, 9, 11)
	if m == nil || m.MD5 != fmt.Sprintf("%x", md5.Sum(data)) {
		t.Fatalf("completed after the restart: %+v, want MD5 %x", m, md5.Sum(data))
	}
	// Without a restart, with blocks sent again with other bytes while
	// early, the newest bytes count.
	c := open()
	if _, _, err := c.PlanUpload("u", "k", int64(len(data)), bs, time.Now()); err != nil {
		t.Fatal(err)
	}
	old := data
	data = storagetest.Pattern(len(old), 8)
	copy(data[3*bs:4*bs], old[3*bs:4*bs])
	write(c, 3) // first with the old bytes...
	data = storagetest.Pattern(len(old), 8)
	write(c, 3, 1, 2)
	m = write(c, 12, 11, 10, 9, 8, 7, 6, 5, 4, 0)
	if m == nil || m.MD5 != fmt.Sprintf("%x", md5.Sum(data)) {
		t.Fatalf("completed: %+v, want MD5 %x", m, md5.Sum(data))
	}
}
