package refserver_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/refserver/storage/local"
	"github.com/stepkit/stepkit/spec"
)

// slowRuns is a folder that stores runs of blocks (storage.RunWriter),
// runs starting at an even block slowly: runs stored at once finish out
// of order.
type slowRuns struct {
	storage.Backend
	active atomic.Int32 // runs being stored
	most   atomic.Int32 // the most stored at once
}

func (s *slowRuns) WriteBlocks(user, key string, u storage.Upload, index []int64, blocks [][]byte, now time.Time) (*storage.FileMeta, error) {
	n := s.active.Add(1)
	defer s.active.Add(-1)
	for m := s.most.Load(); n > m && !s.most.CompareAndSwap(m, n); m = s.most.Load() {
	}
	if index[0]%2 == 0 {
		time.Sleep(40 * time.Millisecond)
	}
	var m *storage.FileMeta
	for j, i := range index {
		var err error
		if m, err = s.Backend.WriteBlock(user, key, u, i, blocks[j], now); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Runs of pipelined blocks are stored several at once, and however their
// writes finish, every request is answered in the order it came, the
// request after them last; closing the server waits for the runs.
func TestRunsInFlightAnsweredInOrder(t *testing.T) {
	st, err := local.Open(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	slow := &slowRuns{Backend: st}
	addr, srv := refserver.StartTest(t, refserver.Config{Storage: slow, BlockSize: 1000})
	c := dial(t, addr)
	c.login("ann")
	data := pattern(12*1000, 3)
	for _, k := range []string{"f", "g"} {
		wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", k, "size", len(data))), 200)
	}
	// Blocks of two files, alternating, sent at once: each run holds one
	// block (the next is another key's), and runs are stored while the
	// next are read.
	for i := range 12 {
		for _, k := range []string{"f", "g"} {
			m := c.authed(spec.OpUpload, spec.TypeFile, "key", k, "block_index", i)
			m.Binary = data[i*1000 : (i+1)*1000]
			c.send(m)
		}
	}
	c.send(c.authed(spec.OpGet, spec.TypeData, "key", "nothing"))
	for i := range 12 {
		for _, k := range []string{"f", "g"} {
			r := c.recv()
			wantStatus(t, r, 200)
			got, _ := r.BlockIndex()
			if key, _ := r.Key(); got != int64(i) || key != k {
				t.Fatalf("answer for %s block %d is %s", k, i, r.JSONString())
			}
			if sum, err := r.MD5(); i == 11 && (err != nil || sum != md5hex(data)) {
				t.Fatalf("last block's answer: md5 %q, %v", sum, err)
			}
		}
	}
	if r := c.recv(); r.Operation() != spec.OpGet || r.Type() != spec.TypeData {
		t.Fatalf("after the blocks: %s", r.JSONString())
	}
	if slow.most.Load() < 2 {
		t.Fatalf("at most %d run stored at once", slow.most.Load())
	}
	// A connection closed with runs on their way: Close returns once
	// they are stored.
	d := dial(t, addr)
	d.login("bob")
	wantStatus(t, d.do(d.authed(spec.OpSave, spec.TypeFile, "key", "g", "size", 4000)), 200)
	for i := range 4 {
		m := d.authed(spec.OpUpload, spec.TypeFile, "key", "g", "block_index", i)
		m.Binary = data[i*1000 : (i+1)*1000]
		d.send(m)
	}
	time.Sleep(5 * time.Millisecond)
	srv.Close()
	if n := slow.active.Load(); n != 0 {
		t.Fatalf("%d runs still being stored after Close", n)
	}
}
