package local

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"hash"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver/storage"
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
	s.spare.max = 3
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
	// send stores every other block of upload k, from block first on,
	// and returns what the last one completed.
	send := func(k, n, first int) *storage.FileMeta {
		t.Helper()
		key := fmt.Sprint("k", k)
		data := storagetest.Pattern(n, byte(k))
		u, err := s.Upload("u", key)
		if err != nil {
			t.Fatal(err)
		}
		var m *storage.FileMeta
		for i := first; i*bs < n; i += 2 {
			if m, err = s.WriteBlockBatched("u", key, u, int64(i), data[i*bs:min((i+1)*bs, n)], time.Now()); err != nil {
				t.Fatal(err)
			}
			peak = max(peak, s.spare.held.Load())
		}
		return m
	}
	// Every upload gets its odd blocks first, all ahead of the hash.
	for k, n := range []int{big, size, big, size} {
		send(k, n, 1)
	}
	if peak != s.spare.max {
		t.Fatalf("at most %d chunks ahead were held, want the budget, %d", peak, s.spare.max)
	}
	// The first two complete; the others are removed.
	for k, n := range []int{big, size} {
		want := md5.Sum(storagetest.Pattern(n, byte(k)))
		if m := send(k, n, 0); m == nil || m.MD5 != fmt.Sprintf("%x", want) {
			t.Fatalf("k%d completed: %+v, want MD5 %x", k, m, want)
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
	if n := s.spare.held.Load(); n != 0 {
		t.Fatalf("%d chunks ahead still held", n)
	}
}

// gatedHash is an MD5 whose writes wait until gate is closed: a hash that
// cannot keep up.
type gatedHash struct {
	hash.Hash
	gate chan struct{}
}

func (g *gatedHash) Write(p []byte) (int, error) {
	<-g.gate
	return g.Hash.Write(p)
}

// While the hash lags, an upload queues its own few chunks for it, then
// as many more as the store's budget lends, and then waits; every chunk
// lent is given back once hashed, and the sum is right.
func TestDigestQueueBorrowsFromTheBudget(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "blocks")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	budget := &chunkBudget{max: 10}
	var pool sync.Pool
	d := newDigest(&pool, budget, 64<<20)
	d.f = f
	gate := make(chan struct{})
	d.h = &gatedHash{Hash: md5.New(), gate: gate}
	data := storagetest.Pattern(40*digestChunk+5, 3)
	done := make(chan error, 1)
	go func() {
		_, err := d.writeBlock(data)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for budget.held.Load() < budget.max {
		if time.Now().After(deadline) {
			t.Fatalf("%d chunks lent while the hash waits, want %d", budget.held.Load(), budget.max)
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("all 40 chunks queued (%v) past the upload's %d and the budget's %d", err, digestQueue, budget.max)
	case <-time.After(100 * time.Millisecond):
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprintf("%x", d.sum()), fmt.Sprintf("%x", md5.Sum(data)); got != want {
		t.Fatalf("sum %s, want %s", got, want)
	}
	if n := budget.held.Load(); n != 0 {
		t.Fatalf("%d chunks still lent", n)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the file differs from the blocks written (%v)", err)
	}
}
