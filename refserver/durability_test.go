package refserver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// serveOn starts a server on root that the test stops itself.
func serveOn(t *testing.T, cfg refserver.Config) (string, *refserver.Server, chan error) {
	t.Helper()
	srv, err := refserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), srv, done
}

func uploadBlocks(t *testing.T, c *client, key string, data []byte, bs int, idx ...int) {
	t.Helper()
	for _, i := range idx {
		m := c.authed(spec.OpUpload, spec.TypeFile, "key", key, "block_index", i)
		m.Binary = data[i*bs : min((i+1)*bs, len(data))]
		r := c.do(m)
		wantStatus(t, r, 200)
	}
}

func TestUploadResumesAfterRestart(t *testing.T) {
	root := t.TempDir()
	const bs = 1000
	data := pattern(10*bs+123, 9)

	addr, srv, done := serveOn(t, refserver.Config{Root: root, BlockSize: bs})
	c := dial(t, addr)
	c.login("resume")
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "big", "size", len(data))), 200)
	uploadBlocks(t, c, "big", data, bs, 0, 1, 2, 7, 3)
	// The partial upload is not downloadable and not under file/.
	wantStatus(t, c.do(c.authed(spec.OpGet, spec.TypeFile, "key", "big")), 404)
	if _, err := os.Stat(filepath.Join(root, "file", "resume", "big")); err == nil {
		t.Fatal("partial upload visible under file/")
	}
	// Stop the server abruptly, mid-upload.
	srv.Close()
	if err := <-done; !errors.Is(err, refserver.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}

	// A new server on the same root, configured with another block size,
	// accepts the remaining blocks of the old plan.
	addr2, _, _ := serveOn(t, refserver.Config{Root: root, BlockSize: 4096})
	d := dial(t, addr2)
	d.token = c.token // course tokens survive restarts
	wantStatus(t, d.do(d.authed(spec.OpGet, spec.TypeFile, "key", "big")), 404)
	uploadBlocks(t, d, "big", data, bs, 4, 5, 6, 8)
	m := d.authed(spec.OpUpload, spec.TypeFile, "key", "big", "block_index", 9)
	m.Binary = data[9*bs : 10*bs]
	wantStatus(t, d.do(m), 200)
	m = d.authed(spec.OpUpload, spec.TypeFile, "key", "big", "block_index", 10)
	m.Binary = data[10*bs:]
	r := d.do(m)
	wantStatus(t, r, 200)
	if s, _ := r.MD5(); s != md5hex(data) {
		t.Fatalf("md5 after resume %s, want %s", s, md5hex(data))
	}
	if got, err := os.ReadFile(filepath.Join(root, "file", "resume", "big")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file/resume/big: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "tmp", "resume", "big")); err == nil {
		t.Fatal("upload folder left behind")
	}
	if got := d.download("big"); !bytes.Equal(got, data) {
		t.Fatal("download after resume differs")
	}
}

func TestCompletedFileSurvivesRestart(t *testing.T) {
	root := t.TempDir()
	addr, srv, _ := serveOn(t, refserver.Config{Root: root})
	c := dial(t, addr)
	c.login("keep")
	data := pattern(50000, 2)
	c.upload("f", data)
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeData, "key", "d", "x", 1)), 200)
	srv.Close()

	addr2, _, _ := serveOn(t, refserver.Config{Root: root})
	d := dial(t, addr2)
	d.token = c.token
	if !bytes.Equal(d.download("f"), data) {
		t.Fatal("file changed across the restart")
	}
	wantStatus(t, d.do(d.authed(spec.OpSave, spec.TypeFile, "key", "f", "size", 1)), 402)
	wantStatus(t, d.do(d.authed(spec.OpGet, spec.TypeData, "key", "d")), 200)
}

// A file a teacher copies into file/USER/ by hand is served, its MD5
// computed on first use.
func TestFilePlacedByHand(t *testing.T) {
	root := t.TempDir()
	addr, _ := refserver.StartTest(t, refserver.Config{Root: root})
	data := pattern(30000, 4)
	os.MkdirAll(filepath.Join(root, "file", "teacher"), 0o755)
	os.WriteFile(filepath.Join(root, "file", "teacher", "handout.pdf"), data, 0o644)
	c := dial(t, addr)
	c.login("teacher")
	if !bytes.Equal(c.download("handout.pdf"), data) {
		t.Fatal("hand-placed file differs")
	}
}

func TestStorageLayout(t *testing.T) {
	root := t.TempDir()
	addr, _ := refserver.StartTest(t, refserver.Config{Root: root, BlockSize: 10})
	c := dial(t, addr)
	c.login("s.t")
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeData, "key", "doc", "a", 1)), 200)
	c.upload("done", []byte("hello world"))
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "part", "size", 25)), 200)
	uploadBlocks(t, c, "part", pattern(25, 1), 10, 1)

	doc, err := os.ReadFile(filepath.Join(root, "data", "s_t", "doc"))
	if err != nil || string(doc) != `{"operation":"SAVE","direction":"REQUEST","type":"DATA","key":"doc","a":1}` {
		t.Fatalf("data/s_t/doc = %s (%v)", doc, err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "file", "s_t", "done")); err != nil || string(b) != "hello world" {
		t.Fatalf("file/s_t/done = %q (%v)", b, err)
	}
	for _, p := range []string{"plan.json", "blocks", "received"} {
		if _, err := os.Stat(filepath.Join(root, "tmp", "s_t", "part", p)); err != nil {
			t.Errorf("tmp/s_t/part/%s: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "file", "s_t", "part")); err == nil {
		t.Error("partial upload under file/")
	}
}

func TestSameKeyUploadedByTwoClientsAtOnce(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{BlockSize: 512})
	const n = 8
	data := pattern(512*40+1, 5)
	var wg sync.WaitGroup
	sums := make([]string, n)
	for w := 0; w < n; w++ {
		c := dial(t, addr)
		c.login("shared")
		wg.Add(1)
		go func(w int, c *client) {
			defer wg.Done()
			// Every client plans once (a plan restarts an upload in
			// progress, so some blocks are refused or lost), then sends
			// every block; the last answer's MD5 must match the file.
			c.send(c.authed(spec.OpSave, spec.TypeFile, "key", "same", "size", len(data)))
			if _, err := c.recvErr(); err != nil {
				t.Error(err)
				return
			}
			for i := 0; i < 41; i++ {
				m := c.authed(spec.OpUpload, spec.TypeFile, "key", "same", "block_index", i)
				m.Binary = data[i*512 : min(i*512+512, len(data))]
				c.send(m)
				r, err := c.recvErr()
				if err != nil {
					t.Error(err)
					return
				}
				if s, _ := r.MD5(); s != "" {
					sums[w] = s
				}
			}
		}(w, c)
	}
	wg.Wait()
	c := dial(t, addr)
	c.login("shared")
	// Finish the upload if the interleaving left it incomplete.
	if r := c.do(c.authed(spec.OpGet, spec.TypeFile, "key", "same")); func() bool { st, _ := r.Status(); return st != 200 }() {
		uploadBlocks(t, c, "same", data, 512, func() []int {
			var all []int
			for i := 0; i < 41; i++ {
				all = append(all, i)
			}
			return all
		}()...)
	}
	got := c.download("same")
	if !bytes.Equal(got, data) {
		t.Fatal("the file uploaded by several clients at once is corrupt")
	}
	for w, s := range sums {
		if s != "" && s != md5hex(data) {
			t.Errorf("client %d was told md5 %s", w, s)
		}
	}
}

func TestConcurrentClients(t *testing.T) {
	const clients = 500
	addr, _ := refserver.StartTest(t, refserver.Config{BlockSize: 256, MaxConns: clients + 10})
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := make(chan struct{})
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- func() error {
				nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					return err
				}
				defer nc.Close()
				nc.SetDeadline(time.Now().Add(30 * time.Second))
				r, w := spec.NewReader(nc, spec.Limits{}), spec.NewWriter(nc)
				do := func(m *spec.Message) (*spec.Message, error) {
					if err := w.WriteMessage(m); err != nil {
						return nil, err
					}
					resp, err := r.ReadMessage()
					if err != nil {
						return nil, err
					}
					if st, _ := resp.Status(); st != 200 {
						return nil, fmt.Errorf("%s: %s", m.Operation(), resp.JSONString())
					}
					return resp, nil
				}
				user := fmt.Sprintf("user%d", i%50)
				resp, err := do(req(spec.OpLogin, spec.TypeAuth, "username", user, "password", md5hex([]byte(user))))
				if err != nil {
					return err
				}
				tok, _ := resp.Token()
				data := pattern(700+i, byte(i))
				key := fmt.Sprintf("file-%d", i)
				<-start
				if _, err := do(req(spec.OpSave, spec.TypeFile, "token", tok, "key", key, "size", len(data))); err != nil {
					return err
				}
				var sum string
				for b := 0; b*256 < len(data); b++ {
					m := req(spec.OpUpload, spec.TypeFile, "token", tok, "key", key, "block_index", b)
					m.Binary = data[b*256 : min(b*256+256, len(data))]
					resp, err := do(m)
					if err != nil {
						return err
					}
					sum, _ = resp.MD5()
				}
				if sum != md5hex(data) {
					return fmt.Errorf("client %d: md5 %s", i, sum)
				}
				return nil
			}()
		}(i)
	}
	close(start)
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if err != nil {
			n++
			if n <= 5 {
				t.Error(err)
			}
		}
	}
	if n > 0 {
		t.Fatalf("%d of %d clients failed", n, clients)
	}
}

func TestAbandonedUploadsAreRemoved(t *testing.T) {
	root := t.TempDir()
	var now atomicTime
	now.Store(time.Now())
	addr, srv := refserver.StartTest(t, refserver.Config{Root: root, BlockSize: 10, UploadMaxAge: time.Hour,
		SweepInterval: time.Hour, Now: now.Load})
	c := dial(t, addr)
	c.login("sweep")
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "old", "size", 30)), 200)
	uploadBlocks(t, c, "old", pattern(30, 1), 10, 0)
	now.Store(now.Load().Add(50 * time.Minute))
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "young", "size", 30)), 200)
	if n := srv.SweepUploads(); n != 0 {
		t.Fatalf("swept %d uploads younger than the limit", n)
	}
	now.Store(now.Load().Add(20 * time.Minute))
	if n := srv.SweepUploads(); n != 1 {
		t.Fatalf("swept %d uploads, want 1", n)
	}
	wantStatus(t, c.do(c.authed(spec.OpUpload, spec.TypeFile, "key", "old", "block_index", 1)), 408)
	if _, err := os.Stat(filepath.Join(root, "tmp", "sweep", "old")); err == nil {
		t.Fatal("abandoned upload still on disk")
	}
	uploadBlocks(t, c, "young", pattern(30, 1), 10, 0, 1, 2)
	wantStatus(t, c.do(c.authed(spec.OpGet, spec.TypeFile, "key", "young")), 200)
}

func TestAbandonedUploadsSweptInBackground(t *testing.T) {
	root := t.TempDir()
	addr, _ := refserver.StartTest(t, refserver.Config{Root: root, UploadMaxAge: 20 * time.Millisecond, SweepInterval: 5 * time.Millisecond})
	c := dial(t, addr)
	c.login("bg")
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", 30)), 200)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(root, "tmp", "bg", "k")); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("abandoned upload not removed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	wantStatus(t, c.do(c.authed(spec.OpUpload, spec.TypeFile, "key", "k", "block_index", 0)), 408)
}

func TestGracefulShutdown(t *testing.T) {
	addr, srv, done := serveOn(t, refserver.Config{Root: t.TempDir()})
	idle := dial(t, addr)
	idle.login("idle")
	busy := dial(t, addr)
	busy.login("busy")
	// A request in flight: its first bytes are sent, the rest after
	// Shutdown has begun.
	// Sent with a complete request, whose answer shows that the server
	// has them.
	frame, _ := spec.EncodeFrame(busy.authed(spec.OpSave, spec.TypeData, "key", "k"))
	earth, _ := spec.EncodeFrame(req(spec.OpGet, spec.TypeData, "direction", "EARTH"))
	busy.sendRaw(append(earth, frame[:10]...))
	wantStatus(t, busy.recv(), 333)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	closed(t, idle) // the idle connection is closed at once
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("new connections still accepted during shutdown")
	}
	busy.sendRaw(frame[10:])
	wantStatus(t, busy.recv(), 200) // the request in flight is answered
	closed(t, busy)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; !errors.Is(err, refserver.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	addr, srv, _ := serveOn(t, refserver.Config{Root: t.TempDir()})
	c := dial(t, addr)
	earth, _ := spec.EncodeFrame(req(spec.OpGet, spec.TypeData, "direction", "EARTH"))
	c.sendRaw(append(earth, spec.Header(100, 0)...)) // then a frame that never ends
	wantStatus(t, c.recv(), 333)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline", err)
	}
	closed(t, c)
}

// Connections that arrive while the server closes are either served or
// closed, and the server stops: accepting never races with closing the
// storage (the race detector watches).
func TestCloseWhileAccepting(t *testing.T) {
	for range 20 {
		addr, srv, done := serveOn(t, refserver.Config{Root: t.TempDir()})
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
						nc.Close()
					}
				}
			}()
		}
		time.Sleep(2 * time.Millisecond)
		srv.Close()
		close(stop)
		wg.Wait()
		if err := <-done; !errors.Is(err, refserver.ErrServerClosed) {
			t.Fatalf("Serve = %v, want ErrServerClosed", err)
		}
	}
}

// Two clients send different bytes for the same key at once: whatever
// mixture of blocks wins, the MD5 the server reports is that of the file
// it stores, and the file is served whole.
func TestSameKeyDifferentContent(t *testing.T) {
	root := t.TempDir()
	addr, _ := refserver.StartTest(t, refserver.Config{Root: root, BlockSize: 256})
	const blocks = 64
	owner := dial(t, addr)
	owner.login("mix")
	wantStatus(t, owner.do(owner.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", blocks*256)), 200)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var reported []string
	for w := 0; w < 2; w++ {
		c := dial(t, addr)
		c.token = owner.token
		data := pattern(blocks*256, byte(40*w+1))
		wg.Add(1)
		go func(w int, c *client) {
			defer wg.Done()
			// Each client sends every block twice, the two clients in
			// opposite orders.
			for pass := 0; pass < 2; pass++ {
				for j := 0; j < blocks; j++ {
					i := j
					if (pass+w)%2 == 1 {
						i = blocks - 1 - j
					}
					m := c.authed(spec.OpUpload, spec.TypeFile, "key", "k", "block_index", i)
					m.Binary = data[i*256 : (i+1)*256]
					c.send(m)
					r, err := c.recvErr()
					if err != nil {
						t.Error(err)
						return
					}
					if s, _ := r.MD5(); s != "" {
						mu.Lock()
						reported = append(reported, s)
						mu.Unlock()
					}
				}
			}
		}(w, c)
	}
	wg.Wait()
	if len(reported) != 1 {
		t.Fatalf("%d completions reported, want 1", len(reported))
	}
	stored, err := os.ReadFile(filepath.Join(root, "file", "mix", "k"))
	if err != nil {
		t.Fatal(err)
	}
	if md5hex(stored) != reported[0] {
		t.Fatalf("reported md5 %s, stored file has %s", reported[0], md5hex(stored))
	}
	if got := owner.download("k"); !bytes.Equal(got, stored) {
		t.Fatal("download differs from the stored file")
	}
}

func TestSyncBlocks(t *testing.T) {
	root := t.TempDir()
	addr, srv, _ := serveOn(t, refserver.Config{Root: root, BlockSize: 100, SyncBlocks: true})
	c := dial(t, addr)
	c.login("sync")
	data := pattern(250, 6)
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", len(data))), 200)
	uploadBlocks(t, c, "k", data, 100, 2, 0)
	srv.Close()
	addr2, _, _ := serveOn(t, refserver.Config{Root: root, BlockSize: 100, SyncBlocks: true})
	d := dial(t, addr2)
	d.token = c.token
	m := d.authed(spec.OpUpload, spec.TypeFile, "key", "k", "block_index", 1)
	m.Binary = data[100:200]
	r := d.do(m)
	wantStatus(t, r, 200)
	if s, _ := r.MD5(); s != md5hex(data) {
		t.Fatalf("md5 %s", s)
	}
}

// Uploads left by an earlier server are judged by the age of their files.
func TestAbandonedUploadsOfAnEarlierServer(t *testing.T) {
	root := t.TempDir()
	addr, srv, _ := serveOn(t, refserver.Config{Root: root, BlockSize: 10})
	c := dial(t, addr)
	c.login("old")
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", 30)), 200)
	uploadBlocks(t, c, "k", pattern(30, 1), 10, 0)
	srv.Close()
	os.MkdirAll(filepath.Join(root, "tmp", "old", "debris"), 0o755) // a folder without a plan

	var now atomicTime
	now.Store(time.Now())
	_, srv2, _ := serveOn(t, refserver.Config{Root: root, UploadMaxAge: time.Hour, Now: now.Load})
	if n := srv2.SweepUploads(); n != 0 {
		t.Fatalf("swept %d young uploads", n)
	}
	now.Store(now.Load().Add(2 * time.Hour))
	if n := srv2.SweepUploads(); n != 2 {
		t.Fatalf("swept %d, want the upload and the debris", n)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "tmp", "old")); len(ents) != 0 {
		t.Fatalf("left in tmp/old: %v", ents)
	}
}
