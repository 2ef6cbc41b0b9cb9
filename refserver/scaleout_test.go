package refserver_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/refserver/storage/s3"
	"github.com/stepkit/stepkit/refserver/storage/s3/weedtest"
	"github.com/stepkit/stepkit/spec"
)

// sharedPair starts two servers on one bucket and prefix, as two machines
// behind a load balancer would be.
func sharedPair(t *testing.T, w *weedtest.Server, prefix string, cfg refserver.Config) (a, b string, sa, sb *refserver.Server) {
	t.Helper()
	cfg.Storage = w.Open(t, prefix)
	a, sa = refserver.StartTest(t, cfg)
	cfg.Storage = w.Open(t, prefix)
	b, sb = refserver.StartTest(t, cfg)
	return a, b, sa, sb
}

func statusOf(m *spec.Message) int { st, _ := m.Status(); return int(st) }

func TestSharedStore(t *testing.T) {
	w := weedtest.Start(t)
	var n atomic.Int64
	prefix := func() string { return fmt.Sprintf("t%d/", n.Add(1)) }

	t.Run("UploadResumesOnTheOtherServer", func(t *testing.T) {
		a, b, _, _ := sharedPair(t, w, prefix(), refserver.Config{BlockSize: 1000})
		data := pattern(6*1000+5, 1)
		ca, cb := dial(t, a), dial(t, b)
		ca.login("ann")
		cb.token = ca.token
		wantStatus(t, ca.do(ca.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", len(data))), 200)
		uploadBlocks(t, ca, "k", data, 1000, 0, 1, 4)
		wantStatus(t, cb.do(cb.authed(spec.OpGet, spec.TypeFile, "key", "k")), 404)
		uploadBlocks(t, cb, "k", data, 1000, 2, 3, 5)
		m := cb.authed(spec.OpUpload, spec.TypeFile, "key", "k", "block_index", 6)
		m.Binary = data[6000:]
		r := cb.do(m)
		wantStatus(t, r, 200)
		if sum, _ := r.MD5(); sum != md5hex(data) {
			t.Fatalf("md5 %q, want %s", sum, md5hex(data))
		}
		if !bytes.Equal(ca.download("k"), data) {
			t.Fatal("download from the first server differs")
		}
	})

	t.Run("BlocksSplitBetweenServers", func(t *testing.T) {
		p := prefix()
		a, b, _, _ := sharedPair(t, w, p, refserver.Config{BlockSize: 512})
		data := pattern(512*40+7, 2)
		ca, cb := dial(t, a), dial(t, b)
		ca.login("bob")
		cb.token = ca.token
		wantStatus(t, ca.do(ca.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", len(data))), 200)
		var wg sync.WaitGroup
		for odd, c := range []*client{ca, cb} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := odd; i <= 40; i += 2 {
					m := c.authed(spec.OpUpload, spec.TypeFile, "key", "k", "block_index", i)
					m.Binary = data[i*512 : min(i*512+512, len(data))]
					c.send(m)
					if r, err := c.recvErr(); err != nil || statusOf(r) != 200 {
						t.Errorf("block %d: %v %v", i, err, r)
						return
					}
				}
			}()
		}
		wg.Wait()
		// Neither server saw every block: the FILE GET that a client
		// sends when no block answer carried the MD5 completes it.
		r := cb.do(cb.authed(spec.OpGet, spec.TypeFile, "key", "k"))
		wantStatus(t, r, 200)
		if sum, _ := r.MD5(); sum != md5hex(data) {
			t.Fatalf("md5 %q, want %s", sum, md5hex(data))
		}
		// The file is one object, whole, its MD5 in its metadata,
		// readable with any S3 client.
		obj, err := w.Client().GetObject(context.Background(), w.Bucket, p+"file/bob/k", minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(obj)
		st, _ := obj.Stat()
		obj.Close()
		if err != nil || !bytes.Equal(got, data) || st.UserMetadata["Stepkit-Md5"] != md5hex(data) {
			t.Fatalf("object file/bob/k: %d bytes (%v), metadata %v", len(got), err, st.UserMetadata)
		}
		if !bytes.Equal(ca.download("k"), data) {
			t.Fatal("download differs")
		}
	})

	t.Run("NoFileBeforeItsLastBlock", func(t *testing.T) {
		p := prefix()
		a, _, _, _ := sharedPair(t, w, p, refserver.Config{BlockSize: 1000})
		c := dial(t, a)
		c.login("cid")
		data := pattern(3000, 3)
		wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", len(data))), 200)
		uploadBlocks(t, c, "k", data, 1000, 0, 2)
		if _, err := w.Client().StatObject(context.Background(), w.Bucket, p+"file/cid/k", minio.StatObjectOptions{}); minio.ToErrorResponse(err).StatusCode != 404 {
			t.Fatalf("file object before its last block: %v", err)
		}
		uploadBlocks(t, c, "k", data, 1000, 1)
		if _, err := w.Client().StatObject(context.Background(), w.Bucket, p+"file/cid/k", minio.StatObjectOptions{}); err != nil {
			t.Fatalf("file object after its last block: %v", err)
		}
		// The upload's objects are gone.
		for o := range w.Client().ListObjects(context.Background(), w.Bucket, minio.ListObjectsOptions{Prefix: p + "tmp/", Recursive: true}) {
			t.Errorf("left behind: %s %v", o.Key, o.Err)
		}
	})

	t.Run("PipelinedBlocksStoredTogether", func(t *testing.T) {
		p := prefix()
		a, _, _, _ := sharedPair(t, w, p, refserver.Config{BlockSize: 1000})
		c := dial(t, a)
		c.login("kim")
		data := pattern(20*1000+1, 11)
		wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", len(data))), 200)
		// Every block in one write, block 7 too short and a FILE GET
		// after block 12: each request is answered, in order, as alone.
		var frames []byte
		for i := 0; i <= 20; i++ {
			m := c.authed(spec.OpUpload, spec.TypeFile, "key", "k", "block_index", i)
			m.Binary = data[i*1000 : min(i*1000+1000, len(data))]
			if i == 7 {
				m.Binary = m.Binary[:999]
			}
			b, err := spec.EncodeFrame(m)
			if err != nil {
				t.Fatal(err)
			}
			frames = append(frames, b...)
			if i == 12 {
				b, _ := spec.EncodeFrame(c.authed(spec.OpGet, spec.TypeFile, "key", "k"))
				frames = append(frames, b...)
			}
		}
		c.sendRaw(frames)
		for i := 0; i <= 20; i++ {
			r := c.recv()
			switch {
			case i == 7:
				wantStatus(t, r, 406)
			default:
				wantStatus(t, r, 200)
				if idx, _ := r.BlockIndex(); idx != int64(i) {
					t.Fatalf("answer %d is for block %d", i, idx)
				}
			}
			if sum, _ := r.MD5(); sum != "" {
				t.Fatalf("block %d completed the file with block 7 missing", i)
			}
			if i == 12 {
				wantStatus(t, c.recv(), 404)
			}
		}
		uploadBlocks(t, c, "k", data, 1000, 7)
		r := c.do(c.authed(spec.OpGet, spec.TypeFile, "key", "k"))
		wantStatus(t, r, 200)
		if sum, _ := r.MD5(); sum != md5hex(data) {
			t.Fatalf("md5 %q, want %s", sum, md5hex(data))
		}
		if !bytes.Equal(c.download("k"), data) {
			t.Fatal("download differs")
		}
	})

	t.Run("DataSaveRace", func(t *testing.T) {
		a, b, _, _ := sharedPair(t, w, prefix(), refserver.Config{})
		const n = 8
		var ok, exists atomic.Int32
		var wg sync.WaitGroup
		for i := range n {
			c := dial(t, []string{a, b}[i%2])
			c.login("dee")
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.send(c.authed(spec.OpSave, spec.TypeData, "key", "d", "who", i))
				r, err := c.recvErr()
				switch {
				case err != nil:
					t.Error(err)
				case statusOf(r) == 200:
					ok.Add(1)
				case statusOf(r) == 402:
					exists.Add(1)
				default:
					t.Errorf("DATA SAVE: %s", r.JSONString())
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 1 || exists.Load() != n-1 {
			t.Fatalf("%d saved, %d refused as existing; want 1 and %d", ok.Load(), exists.Load(), n-1)
		}
	})

	t.Run("FileSaveRace", func(t *testing.T) {
		a, b, _, _ := sharedPair(t, w, prefix(), refserver.Config{BlockSize: 1000})
		const n = 8
		var plans atomic.Int32
		var wg sync.WaitGroup
		for i := range n {
			c := dial(t, []string{a, b}[i%2])
			c.login("eve")
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.send(c.authed(spec.OpSave, spec.TypeFile, "key", "f", "size", 2500))
				r, err := c.recvErr()
				switch {
				case err != nil:
					t.Error(err)
				case statusOf(r) == 200:
					plans.Add(1)
				case statusOf(r) != 402:
					t.Errorf("FILE SAVE: %s", r.JSONString())
				}
			}()
		}
		wg.Wait()
		if plans.Load() == 0 {
			t.Fatal("no FILE SAVE succeeded")
		}
		// Whichever plan won, one upload of it completes, whole.
		data := pattern(2500, 5)
		c := dial(t, b)
		c.login("eve")
		uploadBlocks(t, c, "f", data, 1000, 0, 1)
		m := c.authed(spec.OpUpload, spec.TypeFile, "key", "f", "block_index", 2)
		m.Binary = data[2000:]
		r := c.do(m)
		wantStatus(t, r, 200)
		if sum, _ := r.MD5(); sum != md5hex(data) {
			t.Fatalf("md5 %q, want %s", sum, md5hex(data))
		}
		d := dial(t, a)
		d.login("eve")
		wantStatus(t, d.do(d.authed(spec.OpSave, spec.TypeFile, "key", "f", "size", 1)), 402)
	})

	t.Run("SameUploadCompletedOnBothServers", func(t *testing.T) {
		a, b, _, _ := sharedPair(t, w, prefix(), refserver.Config{BlockSize: 1000})
		data := pattern(4000, 6)
		ca, cb := dial(t, a), dial(t, b)
		ca.login("fay")
		cb.token = ca.token
		wantStatus(t, ca.do(ca.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", len(data))), 200)
		uploadBlocks(t, ca, "k", data, 1000, 0, 1, 2)
		uploadBlocks(t, cb, "k", data, 1000, 0, 1, 2)
		// Both servers now know of blocks 0-2; both take the last at once.
		var wg sync.WaitGroup
		sums := make([]string, 2)
		for i, c := range []*client{ca, cb} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := c.authed(spec.OpUpload, spec.TypeFile, "key", "k", "block_index", 3)
				m.Binary = data[3000:]
				c.send(m)
				r, err := c.recvErr()
				if err != nil {
					t.Error(err)
					return
				}
				sums[i], _ = r.MD5()
			}()
		}
		wg.Wait()
		for i, s := range sums {
			if s != "" && s != md5hex(data) {
				t.Errorf("server %d answered md5 %s, want %s", i, s, md5hex(data))
			}
		}
		if !bytes.Equal(cb.download("k"), data) || !bytes.Equal(ca.download("k"), data) {
			t.Fatal("download differs")
		}
	})

	t.Run("SweptByBothServers", func(t *testing.T) {
		var now atomicTime
		now.Store(time.Now())
		a, _, sa, sb := sharedPair(t, w, prefix(), refserver.Config{BlockSize: 1000, UploadMaxAge: time.Hour, Now: now.Load})
		c := dial(t, a)
		c.login("gus")
		wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", 3000)), 200)
		uploadBlocks(t, c, "k", pattern(3000, 7), 1000, 1)
		if sa.SweepUploads()+sb.SweepUploads() != 0 {
			t.Fatal("a fresh upload was swept")
		}
		now.Store(time.Now().Add(2 * time.Hour))
		var removed atomic.Int64
		var wg sync.WaitGroup
		for _, s := range []*refserver.Server{sa, sb} {
			wg.Add(1)
			go func() { defer wg.Done(); removed.Add(int64(s.SweepUploads())) }()
		}
		wg.Wait()
		if removed.Load() < 1 {
			t.Fatal("the abandoned upload was not swept")
		}
		m := c.authed(spec.OpUpload, spec.TypeFile, "key", "k", "block_index", 0)
		m.Binary = pattern(1000, 7)
		wantStatus(t, c.do(m), 408)
	})

	t.Run("QuotaCountedFromTheStore", func(t *testing.T) {
		a, b, _, _ := sharedPair(t, w, prefix(), refserver.Config{BlockSize: 1000, Quota: 10000})
		cb := dial(t, b)
		cb.login("hal")
		cb.upload("big", pattern(6000, 8))
		// Server a never served hal: it counts from the store.
		ca := dial(t, a)
		ca.login("hal")
		wantStatus(t, ca.do(ca.authed(spec.OpSave, spec.TypeFile, "key", "more", "size", 5000)), 413)
		wantStatus(t, ca.do(ca.authed(spec.OpSave, spec.TypeFile, "key", "more", "size", 4000)), 200)
		// Server b, which counted hal before, sees a's plan in the store.
		wantStatus(t, cb.do(cb.authed(spec.OpSave, spec.TypeData, "key", "d", "x", 1)), 413)
		wantStatus(t, cb.do(cb.authed(spec.OpDelete, spec.TypeFile, "key", "big")), 200)
		wantStatus(t, ca.do(ca.authed(spec.OpSave, spec.TypeFile, "key", "other", "size", 6000)), 200)
	})

	t.Run("AccountTokensOnEitherServer", func(t *testing.T) {
		hash, _ := cheapHash("pw")
		acc, err := refserver.NewAccounts(map[string]string{"ivy": hash}, []byte("the secret both servers share"))
		if err != nil {
			t.Fatal(err)
		}
		a, b, _, _ := sharedPair(t, w, prefix(), refserver.Config{Accounts: acc})
		ca := dial(t, a)
		r := ca.do(req(spec.OpLogin, spec.TypeAuth, "username", "ivy", "password", "pw"))
		wantStatus(t, r, 200)
		cb := dial(t, b)
		cb.token, _ = r.Token()
		wantStatus(t, cb.do(cb.authed(spec.OpSave, spec.TypeData, "key", "x", "v", 1)), 200)
		ca.token = cb.token
		wantStatus(t, ca.do(ca.authed(spec.OpGet, spec.TypeData, "key", "x")), 200)
	})
}

// TestStoreFaults makes the store hang, then go away, under a server, and
// checks that requests are answered 500 meanwhile, nothing half-written is
// seen, and the server recovers when the store returns.
func TestStoreFaults(t *testing.T) {
	w := weedtest.Start(t)
	cfg := w.Config("faults/")
	cfg.RequestTimeout = time.Second
	st, err := s3.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := refserver.StartTest(t, refserver.Config{Storage: st, BlockSize: 1000})
	c := dial(t, addr)
	c.login("jo")
	data := pattern(5000, 9)
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", len(data))), 200)
	uploadBlocks(t, c, "k", data, 1000, 0, 1)
	// do waits longer than the client helper's 5s: the server's answer
	// comes after its store requests time out.
	do := func(m *spec.Message) *spec.Message {
		t.Helper()
		c.send(m)
		c.nc.SetReadDeadline(time.Now().Add(60 * time.Second))
		r, err := c.r.ReadMessage()
		if err != nil {
			t.Fatalf("no answer while the store is down: %v", err)
		}
		return r.Clone()
	}
	block := func(i int) *spec.Message {
		m := c.authed(spec.OpUpload, spec.TypeFile, "key", "k", "block_index", i)
		m.Binary = data[i*1000 : i*1000+1000]
		return m
	}

	for _, fault := range []struct {
		name      string
		on, after func()
	}{
		{"hung", w.Pause, w.Resume},
		{"down", w.Stop, func() {
			w.Restart()
			if err := w.WaitReady(90 * time.Second); err != nil {
				t.Fatalf("store did not come back: %v", err)
			}
		}},
	} {
		fault.on()
		for _, m := range []*spec.Message{
			block(2),
			c.authed(spec.OpSave, spec.TypeData, "key", "d-"+fault.name, "x", 1),
			c.authed(spec.OpGet, spec.TypeFile, "key", "k"),
		} {
			if r := do(m); statusOf(r) != 500 {
				fault.after()
				t.Fatalf("store %s: %s answered %s, want 500", fault.name, m.Operation(), r.JSONString())
			}
		}
		fault.after()
		// Nothing half-written: the file is not complete, and the
		// document either was not saved or is whole.
		wantStatus(t, do(c.authed(spec.OpGet, spec.TypeFile, "key", "k")), 404)
		if r := do(c.authed(spec.OpGet, spec.TypeData, "key", "d-"+fault.name)); statusOf(r) == 200 {
			if v, err := r.Int("x"); err != nil || v != 1 {
				t.Fatalf("document half-written: %s", r.JSONString())
			}
		}
	}
	// The server kept serving: the upload completes.
	uploadBlocks(t, c, "k", data, 1000, 2, 3)
	r := do(block(4))
	wantStatus(t, r, 200)
	if sum, _ := r.MD5(); sum != md5hex(data) {
		t.Fatalf("md5 after the faults %q, want %s", sum, md5hex(data))
	}
}
