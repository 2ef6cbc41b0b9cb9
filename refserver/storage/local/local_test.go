package local_test

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/refserver/storage/local"
	"github.com/stepkit/stepkit/refserver/storage/storagetest"
)

func TestContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) func() storage.Backend {
		dir := t.TempDir()
		return func() storage.Backend { return openStore(t, dir) }
	})
}

// openStore opens the store in dir, as a server starting there would.
func openStore(t *testing.T, dir string) *local.Store {
	t.Helper()
	s, err := local.Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	return s
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
	open := func() *local.Store { return openStore(t, dir) }
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

// TestBlocksInAnyOrder sends the blocks of uploads small and large in the
// orders several connections make: two streams a few blocks apart, a
// block far ahead of the others, and commits between any two blocks;
// then again with blocks sent twice, the first time with other bytes,
// and restarts after some commits. Blocks
// straddle the store's chunks or span several. Each upload completes with
// the MD5 of the newest bytes sent, and the file holds them.
func TestBlocksInAnyOrder(t *testing.T) {
	cases := []struct {
		size int
		bs   int64
	}{
		{300_001, 20480},     // hashed on the caller's goroutine
		{9<<20 + 7, 20480},   // hashed in chunks beside it
		{9<<20 + 7, 100_000}, // a block far ahead is beyond the chunks ahead
		{6<<20 + 1, 1 << 20},
	}
	for k, tc := range cases {
		for _, crash := range []bool{false, true} {
			t.Run(fmt.Sprintf("size=%d/block=%d/crash=%v", tc.size, tc.bs, crash), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(k), 7))
				dir := t.TempDir()
				open := func() *local.Store { return openStore(t, dir) }
				s := open()
				if _, _, err := s.PlanUpload("u", "k", int64(tc.size), tc.bs, time.Now()); err != nil {
					t.Fatal(err)
				}
				total := int((int64(tc.size) + tc.bs - 1) / tc.bs)
				data := storagetest.Pattern(tc.size, byte(k))
				// Two connections take blocks in turn, each a few blocks
				// behind or ahead of the other.
				var order []int
				for a, b := 0, 1; a < total || b < total; {
					if a < total && (b >= total || rng.IntN(2) == 0) {
						order = append(order, a)
						a += 2
					} else {
						order = append(order, b)
						b += 2
					}
				}
				// One block goes far ahead; with crashes, some are sent
				// twice, the first time with other bytes.
				if total > 40 {
					far := total - 3
					i := slices.Index(order, far)
					order = slices.Insert(slices.Delete(order, i, i+1), 5, far)
				}
				var sends []int
				for _, i := range order {
					if crash && rng.IntN(10) == 0 {
						sends = append(sends, -1-i) // stale bytes first
					}
					sends = append(sends, i)
				}
				var m *storage.FileMeta
				restarts := 0
				for n, i := range sends {
					b := data[int64(max(i, -1-i))*tc.bs:]
					if i < 0 {
						i = -1 - i
						b = storagetest.Pattern(len(b), 99)
					}
					b = append([]byte(nil), b[:min(int64(len(b)), tc.bs)]...)
					u, err := s.Upload("u", "k")
					if err != nil {
						t.Fatalf("send %d: %v", n, err)
					}
					if m, err = s.WriteBlockBatched("u", "k", u, int64(i), b, time.Now()); err != nil {
						t.Fatalf("block %d: %v", i, err)
					}
					clear(b) // the frame reader reuses its buffer
					if m == nil && rng.IntN(8) == 0 {
						unlock := s.Lock("u", "k")
						err := s.CommitBlocks("u", "k", u)
						unlock()
						if err != nil {
							t.Fatal(err)
						}
						if crash && restarts < 3 && rng.IntN(4) == 0 {
							restarts++
							// The server dies after the commit: what
							// was recorded must be in the file.
							s = open()
						}
					}
				}
				if m == nil || m.MD5 != fmt.Sprintf("%x", md5.Sum(data)) {
					t.Fatalf("completed: %+v, want MD5 %x", m, md5.Sum(data))
				}
				f, err := s.OpenCompleted("u", "k", m)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				got, err := io.ReadAll(io.NewSectionReader(f, 0, int64(tc.size)))
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("the file stored differs from the blocks sent (%v)", err)
				}
			})
		}
	}
}
