package local

import (
	"crypto/md5"
	"fmt"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver/storage/storagetest"
)

// The chunks ahead that uploads hold together stay within the store's
// budget: blocks beyond it are written and read back, the uploads still
// complete with the right MD5, and every chunk is given back, whether an
// upload completes or is removed.
func TestAheadBudget(t *testing.T) {
	s, err := Open(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.ahead.max = 3
	const bs = 20480
	size := 40*bs + 11 // about three chunks: hashed on the caller's goroutine
	big := 600*bs + 11 // hashed in chunks
	var peak int64
	for k, n := range []int{big, size, big, size} {
		key := fmt.Sprint("k", k)
		if _, _, err := s.PlanUpload("u", key, int64(n), bs, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// Every upload gets its odd blocks first, all ahead of the hash.
	for k, n := range []int{big, size, big, size} {
		key := fmt.Sprint("k", k)
		data := storagetest.Pattern(n, byte(k))
		total := (n + bs - 1) / bs
		u, err := s.Upload("u", key)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < total; i += 2 {
			if _, err := s.WriteBlockBatched("u", key, u, int64(i), data[i*bs:min((i+1)*bs, n)], time.Now()); err != nil {
				t.Fatal(err)
			}
			peak = max(peak, s.ahead.held.Load())
		}
	}
	if peak != s.ahead.max {
		t.Fatalf("at most %d chunks ahead were held, want the budget, %d", peak, s.ahead.max)
	}
	// The first two complete; the others are removed.
	for k, n := range []int{big, size} {
		key := fmt.Sprint("k", k)
		data := storagetest.Pattern(n, byte(k))
		total := (n + bs - 1) / bs
		u, err := s.Upload("u", key)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < total; i += 2 {
			m, err := s.WriteBlockBatched("u", key, u, int64(i), data[i*bs:min((i+1)*bs, n)], time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if i+2 >= total && (m == nil || m.MD5 != fmt.Sprintf("%x", md5.Sum(data))) {
				t.Fatalf("%s completed: %+v, want MD5 %x", key, m, md5.Sum(data))
			}
		}
	}
	for _, key := range []string{"k2", "k3"} {
		unlock := s.Lock("u", key)
		_, err := s.DeleteFile("u", key)
		unlock()
		if err == nil {
			t.Fatalf("%s: removed as if completed", key)
		}
	}
	if n := s.ahead.held.Load(); n != 0 {
		t.Fatalf("%d chunks ahead still held", n)
	}
}
