package refclient

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/spec"
)

func testData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// login dials addr and logs in as user with the course rule.
func login(t testing.TB, addr string, opts *Options) *Client {
	t.Helper()
	ctx := context.Background()
	c, err := Dial(ctx, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Login(ctx, "2362202", ""); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLoginWrongPasswordIsStatusError(t *testing.T) {
	s := newFake(t)
	addr := s.start()
	c, err := Dial(context.Background(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Login(context.Background(), "alice", "not-the-md5")
	var se *StatusError
	if !errors.As(err, &se) || se.Status != spec.StatusPasswordError || se.Op != spec.OpLogin || se.Response == nil {
		t.Fatalf("err = %v, want StatusError 401", err)
	}
	if c.Token() != "" {
		t.Fatalf("token kept after a refused login: %q", c.Token())
	}
	// The connection is still in step.
	tok, err := c.Login(context.Background(), "alice", "")
	if err != nil || tok != "tok-alice" || c.Token() != tok {
		t.Fatalf("course login: %q, %v", tok, err)
	}
}

func TestFakeServerRoundTrips(t *testing.T) {
	for _, tc := range []struct {
		name      string
		blockSize int64
		opts      Options
	}{
		{"window1", 20480, Options{Window: 1}},
		{"window16", 20480, Options{Window: 16}},
		{"conns3", 20480, Options{Window: 2, Conns: 3}}, // too little in flight for one connection to do
		{"block12800", 12800, Options{Window: 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFake(t)
			s.blockSize = tc.blockSize
			s.advertise = tc.opts.Conns > 1 // several connections upload one key only to such a server
			addr := s.start()
			c := login(t, addr, &tc.opts)
			ctx := context.Background()
			for i, size := range []int{0, 1, 12799, 12800, 12801, 20479, 20480, 20481, 3<<20 + 17} {
				data := testData(size, uint64(i))
				key := "file-" + string(rune('a'+i))
				up, err := c.UploadFile(ctx, writeTemp(t, key, data), key, nil)
				if err != nil {
					t.Fatalf("size %d: upload: %v", size, err)
				}
				if !up.Verified || up.MD5 != md5hex(data) || up.Plan.BlockSize != tc.blockSize {
					t.Fatalf("size %d: upload result %+v", size, up)
				}
				if got, _ := s.content(key); !bytes.Equal(got, data) {
					t.Fatalf("size %d: server holds %d bytes that differ", size, len(got))
				}
				dest := filepath.Join(t.TempDir(), "out")
				down, err := c.DownloadFile(ctx, key, dest, nil)
				if err != nil {
					t.Fatalf("size %d: download: %v", size, err)
				}
				got, err := os.ReadFile(dest)
				if err != nil || !bytes.Equal(got, data) || !down.Verified {
					t.Fatalf("size %d: downloaded %d bytes, equal=%v, verified=%v, err=%v", size, len(got), bytes.Equal(got, data), down.Verified, err)
				}
				if _, err := os.Stat(PartPath(dest)); !os.IsNotExist(err) {
					t.Fatalf("partial file left behind: %v", err)
				}
				var buf bytes.Buffer
				if _, err := c.Download(ctx, key, &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), data) {
					t.Fatalf("size %d: streaming download: %v", size, err)
				}
			}
		})
	}
}

func TestPipeliningAgainstOneAtATimeServer(t *testing.T) {
	s := newFake(t)
	addr := s.start()
	c := login(t, addr, &Options{Window: 8})
	data := testData(40*20480+5, 1)
	res, err := c.Upload(context.Background(), "p", bytes.NewReader(data), int64(len(data)), nil)
	if err != nil || !res.Verified || res.Sent != 41 {
		t.Fatalf("upload: %+v, %v", res, err)
	}
	var buf bytes.Buffer
	if _, err := c.Download(context.Background(), "p", &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("download: %v", err)
	}
	s.mu.Lock()
	ahead := s.readAhead
	s.mu.Unlock()
	if ahead == 0 {
		t.Fatal("the server never found a request waiting behind the one it served: no pipelining")
	}
	// The connection is still in step for ordinary requests.
	if err := c.DeleteFile(context.Background(), "p"); err != nil {
		t.Fatal(err)
	}
}

func TestDownloadMD5MismatchDetected(t *testing.T) {
	for _, window := range []int{1, 8} {
		s := newFake(t)
		s.corruptBlock = 2
		addr := s.start()
		data := testData(5*20480+3, 9)
		s.put("bad", data)
		dir := t.TempDir()
		c := login(t, addr, &Options{Window: window, JournalDir: filepath.Join(dir, "j")})
		dest := filepath.Join(dir, "bad.bin")
		_, err := c.DownloadFile(context.Background(), "bad", dest, nil)
		var me *MismatchError
		if !errors.As(err, &me) || !errors.Is(err, ErrMD5Mismatch) || me.Server != md5hex(data) {
			t.Fatalf("window %d: err = %v, want an MD5 mismatch", window, err)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatalf("unverified data renamed into place: %v", err)
		}
		if _, err := os.Stat(PartPath(dest)); !os.IsNotExist(err) {
			t.Fatalf("corrupt partial file kept: %v", err)
		}
		if ents, _ := os.ReadDir(filepath.Join(dir, "j")); len(ents) != 0 {
			t.Fatalf("journal kept after a mismatch: %v", ents)
		}
		var buf bytes.Buffer
		if _, err := c.Download(context.Background(), "bad", &buf, nil); !errors.Is(err, ErrMD5Mismatch) {
			t.Fatalf("streaming download: err = %v", err)
		}
	}
}

func TestUploadMismatchDetected(t *testing.T) {
	for _, noUploadMD5 := range []bool{false, true} {
		s := newFake(t)
		s.corruptUpload = 1
		s.noUploadMD5 = noUploadMD5 // then the md5 comes from FILE GET
		addr := s.start()
		dir := t.TempDir()
		c := login(t, addr, &Options{JournalDir: dir})
		data := testData(3*20480, 2)
		res, err := c.UploadFile(context.Background(), writeTemp(t, "f", data), "m", nil)
		var me *MismatchError
		if !errors.As(err, &me) || me.Local != md5hex(data) || me.Server == md5hex(data) || res == nil || res.Verified {
			t.Fatalf("noUploadMD5=%v: err = %v, res = %+v", noUploadMD5, err, res)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("journal kept after the upload finished: %v", ents)
		}
	}
}

func TestServerWithoutMD5(t *testing.T) {
	s := newFake(t)
	s.noMD5 = true
	addr := s.start()
	c := login(t, addr, nil)
	data := testData(2*20480+1, 3)
	res, err := c.Upload(context.Background(), "n", bytes.NewReader(data), int64(len(data)), nil)
	if err != nil || res.Verified || res.ServerMD5 != "" || res.MD5 != md5hex(data) {
		t.Fatalf("upload: %+v, %v", res, err)
	}
	var buf bytes.Buffer
	down, err := c.Download(context.Background(), "n", &buf, nil)
	if err != nil || down.Verified || down.MD5 != md5hex(data) || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("download: %+v, %v", down, err)
	}
}

func TestSlowServer(t *testing.T) {
	s := newFake(t)
	s.delay = 5 * time.Millisecond
	addr := s.start()
	c := login(t, addr, &Options{Window: 4, Conns: 2})
	data := testData(10*20480, 4)
	if _, err := c.Upload(context.Background(), "slow", bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := c.Download(context.Background(), "slow", &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatal(err)
	}
}

func TestNoResponseTimesOut(t *testing.T) {
	s := newFake(t)
	s.delay = 300 * time.Millisecond
	addr := s.start()
	c, err := Dial(context.Background(), addr, &Options{ReplyTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Login(context.Background(), "u", "")
	var nr *NoResponseError
	if !errors.As(err, &nr) || nr.Op != spec.OpLogin {
		t.Fatalf("err = %v, want NoResponseError", err)
	}
	// A late answer would be paired with the next request: refuse to go on.
	if _, err := c.Login(context.Background(), "u", ""); err == nil || c.Broken() == nil {
		t.Fatalf("connection reused after a lost response: %v", err)
	}
}

func TestContextCancelStopsWaiting(t *testing.T) {
	s := newFake(t)
	s.delay = 300 * time.Millisecond
	addr := s.start()
	c, err := Dial(context.Background(), addr, &Options{ReplyTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Login(ctx, "u", ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's error", err)
	}
}

func TestEmptyFileSilentServer(t *testing.T) {
	s := newFake(t)
	s.silentEmpty = true
	addr := s.start()
	c := login(t, addr, &Options{EmptyTimeout: 100 * time.Millisecond, ReplyTimeout: time.Hour})
	_, err := c.UploadFile(context.Background(), writeTemp(t, "empty", nil), "empty", nil)
	var nr *NoResponseError
	if !errors.As(err, &nr) || !strings.Contains(err.Error(), "empty file") {
		t.Fatalf("err = %v, want a clear no-response error", err)
	}
}

func TestDeleteAnsweredWithGET(t *testing.T) {
	s := newFake(t)
	s.deleteAsGET = true
	addr := s.start()
	c := login(t, addr, nil)
	s.put("d", []byte("x"))
	if err := c.DeleteFile(context.Background(), "d"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	err := c.DeleteFile(context.Background(), "d")
	var se *StatusError
	if !errors.As(err, &se) || se.Status != spec.StatusKeyNotFound || se.Op != spec.OpDelete {
		t.Fatalf("second delete: %v", err)
	}
}

func TestByeDoesNotWait(t *testing.T) {
	s := newFake(t) // never answers BYE
	addr := s.start()
	c, err := Dial(context.Background(), addr, &Options{ReplyTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Login(context.Background(), "u", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Bye(); err != nil {
		t.Fatal(err)
	}
	// The server saw the BYE.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.requests)
		last := spec.Operation("")
		if n > 0 {
			last = s.requests[n-1]
		}
		s.mu.Unlock()
		if last == spec.OpBye {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never received BYE (requests %v)", s.requests)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDataRoundTrip(t *testing.T) {
	s := newFake(t)
	addr := s.start()
	c := login(t, addr, nil)
	ctx := context.Background()
	doc := spec.NewMessage().Set("title", "报告").Set("n", 3).Set("token", "not stored")
	key, err := c.SaveData(ctx, "笔记 ü", doc)
	if err != nil || key != "笔记 ü" {
		t.Fatalf("save: %q %v", key, err)
	}
	if _, err := c.SaveData(ctx, "笔记 ü", doc); !IsStatus(err, spec.StatusKeyExists) {
		t.Fatalf("second save: %v", err)
	}
	got, err := c.GetData(ctx, "笔记 ü")
	if err != nil {
		t.Fatal(err)
	}
	if title, _ := got.String("title"); title != "报告" {
		t.Fatalf("title = %q (doc %s)", title, got.JSONString())
	}
	if got.Has("status") || got.Has("operation") {
		t.Fatalf("envelope fields in the document: %s", got.JSONString())
	}
	if err := c.DeleteData(ctx, "笔记 ü"); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetData(ctx, "笔记 ü")
	var se *StatusError
	if !errors.As(err, &se) || se.Status != spec.StatusKeyNotFound || se.Type != spec.TypeData || se.Response == nil {
		t.Fatalf("get after delete: %v", err)
	}
}

func TestCharCountLengthServer(t *testing.T) {
	s := newFake(t)
	s.charCount = true
	addr := s.start()
	c := login(t, addr, &Options{Window: 4})
	ctx := context.Background()
	data := testData(3*20480+11, 13)
	key := "报告 ü.pdf"
	up, err := c.Upload(ctx, key, bytes.NewReader(data), int64(len(data)), nil)
	if err != nil || !up.Verified || up.Plan.Key != key {
		t.Fatalf("upload: %+v %v", up, err)
	}
	var buf bytes.Buffer
	if _, err := c.Download(ctx, key, &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("download: %v", err)
	}
	if err := c.DeleteFile(ctx, key); err != nil {
		t.Fatal(err)
	}
}

// A download over several connections whose one connection dies: the
// blocks the others hold for their turn give up at once, and the
// download fails with the error, without waiting for anything.
func TestDownloadConnectionLostWhileOthersWait(t *testing.T) {
	s := newFake(t)
	s.cutAfterBlocks = 6
	data := testData(40*20480, 9)
	sum := md5.Sum(data)
	s.files["k"] = &fakeFile{size: int64(len(data)), data: data, got: make([]bool, 40), done: true, digest: hex.EncodeToString(sum[:])}
	addr := s.start()
	// Only a block waiting for its turn could make the download wait for
	// the reply timeout.
	// Windows of 2 blocks: too little in flight for one connection to do.
	c := login(t, addr, &Options{Window: 2, Conns: 3, ReplyTimeout: time.Minute})
	start := time.Now()
	_, err := c.Download(context.Background(), "k", io.Discard, nil)
	if err == nil {
		t.Fatal("download succeeded through a connection that was closed")
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("download failed after %v, waiting for blocks that could not come: %v", d, err)
	}
}
