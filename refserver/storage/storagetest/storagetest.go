// Package storagetest is the contract every storage.Backend keeps: one
// suite of tests that each backend's own tests run against it.
package storagetest

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/spec"
)

// Opener returns a function that opens the backend under test; each call
// opens another instance on the same storage (the same folder, the same
// bucket and prefix). Every test of the suite gets storage of its own.
type Opener func(t *testing.T) func() storage.Backend

// Run runs the contract against the backend open gives.
func Run(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, func() storage.Backend)
	}{
		{"Data", testData},
		{"UploadInOrder", testUploadInOrder},
		{"UploadOutOfOrder", testUploadOutOfOrder},
		{"BlockLength", testBlockLength},
		{"BlockSentAgain", testBlockSentAgain},
		{"Replan", testReplan},
		{"BlockForAReplacedPlan", testStaleUpload},
		{"DeleteInProgress", testDeleteInProgress},
		{"Empty", testEmpty},
		{"Usage", testUsage},
		{"Sweep", testSweep},
		{"ResumeOnAnotherInstance", testResume},
		{"Names", testNames},
	} {
		t.Run(tc.name, func(t *testing.T) {
			newBackend := open(t)
			tc.fn(t, newBackend)
		})
	}
}

func mustOpen(t *testing.T, open func() storage.Backend) storage.Backend {
	t.Helper()
	b := open()
	t.Cleanup(func() { b.Close() })
	return b
}

// Pattern returns n bytes of a pattern that differs for each seed.
func Pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i/251) ^ seed
	}
	return b
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func plan(t *testing.T, b storage.Backend, user, key string, size, bs int64) storage.Upload {
	t.Helper()
	unlock := b.Lock(user, key)
	defer unlock()
	p, _, err := b.PlanUpload(user, key, size, bs, time.Now())
	if err != nil {
		t.Fatalf("PlanUpload: %v", err)
	}
	if p.Size != size || p.BlockSize != bs || p.TotalBlock != spec.TotalBlocks(size, bs) {
		t.Fatalf("plan %+v for size %d, block size %d", p, size, bs)
	}
	u, err := b.Upload(user, key)
	if err != nil {
		t.Fatalf("Upload after PlanUpload: %v", err)
	}
	if u.Plan() != p {
		t.Fatalf("Upload's plan %+v, want %+v", u.Plan(), p)
	}
	return u
}

// write writes the blocks idx of data and returns the metadata the last
// one returned.
func write(t *testing.T, b storage.Backend, user, key string, data []byte, bs int64, idx ...int64) *storage.FileMeta {
	t.Helper()
	var m *storage.FileMeta
	for _, i := range idx {
		unlock := b.Lock(user, key)
		u, err := b.Upload(user, key)
		unlock()
		if err != nil {
			t.Fatalf("Upload before block %d: %v", i, err)
		}
		m, err = b.WriteBlock(user, key, u, i, data[i*bs:min((i+1)*bs, int64(len(data)))], time.Now())
		if err != nil {
			t.Fatalf("WriteBlock %d: %v", i, err)
		}
	}
	return m
}

func readAll(t *testing.T, b storage.Backend, user, key string) []byte {
	t.Helper()
	m, err := b.Completed(user, key)
	if err != nil {
		t.Fatalf("Completed: %v", err)
	}
	f, err := b.OpenCompleted(user, key, m)
	if err != nil {
		t.Fatalf("OpenCompleted: %v", err)
	}
	defer f.Close()
	got := make([]byte, m.Size)
	// Read as DOWNLOAD does: in blocks, in order, then one out of order.
	const bs = 1000
	for off := int64(0); off < m.Size; off += bs {
		n, err := f.ReadAt(got[off:min(off+bs, m.Size)], off)
		if err != nil && err != io.EOF {
			t.Fatalf("ReadAt %d: %v", off, err)
		}
		if int64(n) != min(bs, m.Size-off) {
			t.Fatalf("ReadAt %d: %d bytes", off, n)
		}
	}
	if m.Size > 2*bs {
		again := make([]byte, bs)
		if _, err := f.ReadAt(again, bs); err != nil && err != io.EOF {
			t.Fatalf("ReadAt out of order: %v", err)
		}
		if !bytes.Equal(again, got[bs:2*bs]) {
			t.Fatal("ReadAt out of order differs")
		}
	}
	return got
}

func testData(t *testing.T, open func() storage.Backend) {
	b := mustOpen(t, open)
	doc := []byte(`{"operation":"SAVE","key":"d","x":"Zoë"}`)
	unlock := b.Lock("u1", "d")
	defer unlock()
	if _, err := b.Data("u1", "d"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Data of a new key: %v, want ErrNotFound", err)
	}
	if err := b.SaveData("u1", "d", doc); err != nil {
		t.Fatal(err)
	}
	if err := b.SaveData("u1", "d", []byte(`{}`)); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("SaveData twice: %v, want ErrExists", err)
	}
	if got, err := b.Data("u1", "d"); err != nil || !bytes.Equal(got, doc) {
		t.Fatalf("Data = %q, %v", got, err)
	}
	if _, err := b.Data("u2", "d"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("another user's Data: %v, want ErrNotFound", err)
	}
	if n, err := b.DeleteData("u1", "d"); err != nil || n != int64(len(doc)) {
		t.Fatalf("DeleteData = %d, %v; want %d", n, err, len(doc))
	}
	if _, err := b.DeleteData("u1", "d"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteData twice: %v, want ErrNotFound", err)
	}
	if _, err := b.Data("u1", "d"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Data after delete: %v", err)
	}
}

func testUploadInOrder(t *testing.T, open func() storage.Backend) {
	b := mustOpen(t, open)
	const bs = 4096
	data := Pattern(5*bs+17, 1)
	plan(t, b, "u", "k", int64(len(data)), bs)
	if m := write(t, b, "u", "k", data, bs, 0, 1, 2, 3, 4); m != nil {
		t.Fatal("completed before the last block")
	}
	if _, err := b.Completed("u", "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Completed during the upload: %v, want ErrNotFound", err)
	}
	m := write(t, b, "u", "k", data, bs, 5)
	if m == nil || m.Size != int64(len(data)) || m.MD5 != md5hex(data) {
		t.Fatalf("completion %+v, want size %d md5 %s", m, len(data), md5hex(data))
	}
	if got := readAll(t, b, "u", "k"); !bytes.Equal(got, data) {
		t.Fatal("completed file differs")
	}
	unlock := b.Lock("u", "k")
	defer unlock()
	if _, err := b.Upload("u", "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Upload after completion: %v, want ErrNotFound", err)
	}
	if m2, err := b.CompletedLocked("u", "k"); err != nil || m2.MD5 != m.MD5 || m2.Size != m.Size {
		t.Fatalf("CompletedLocked = %+v, %v", m2, err)
	}
	if n, err := b.DeleteFile("u", "k"); err != nil || n != int64(len(data)) {
		t.Fatalf("DeleteFile = %d, %v", n, err)
	}
	if _, err := b.CompletedLocked("u", "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("CompletedLocked after delete: %v", err)
	}
	if _, err := b.DeleteFile("u", "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteFile twice: %v", err)
	}
}

func testUploadOutOfOrder(t *testing.T, open func() storage.Backend) {
	b := mustOpen(t, open)
	const bs = 1000
	data := Pattern(7*bs+1, 2)
	plan(t, b, "u", "k", int64(len(data)), bs)
	write(t, b, "u", "k", data, bs, 6, 7, 0, 3, 2, 5, 4)
	m := write(t, b, "u", "k", data, bs, 1)
	if m == nil || m.MD5 != md5hex(data) {
		t.Fatalf("completion %+v, want md5 %s", m, md5hex(data))
	}
	if got := readAll(t, b, "u", "k"); !bytes.Equal(got, data) {
		t.Fatal("completed file differs")
	}
}

func testBlockLength(t *testing.T, open func() storage.Backend) {
	b := mustOpen(t, open)
	const bs = 1000
	u := plan(t, b, "u", "k", 2500, bs)
	for _, c := range []struct {
		i int64
		n int
	}{{0, 999}, {0, 1001}, {2, 1000}, {2, 499}, {1, 0}} {
		if _, err := b.WriteBlock("u", "k", u, c.i, make([]byte, c.n), time.Now()); !errors.Is(err, storage.ErrBlockLen) {
			t.Errorf("block %d of %d bytes: %v, want ErrBlockLen", c.i, c.n, err)
		}
	}
	unlock := b.Lock("u", "k")
	defer unlock()
	if _, err := b.CompletedLocked("u", "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("refused blocks completed the file: %v", err)
	}
}

func testBlockSentAgain(t *testing.T, open func() storage.Backend) {
	b := mustOpen(t, open)
	const bs = 1000
	first, final := Pattern(3*bs, 3), Pattern(3*bs, 4)
	plan(t, b, "u", "k", 3*bs, bs)
	write(t, b, "u", "k", first, bs, 0, 1)
	write(t, b, "u", "k", final, bs, 0, 1)
	m := write(t, b, "u", "k", final, bs, 2)
	if m == nil || m.MD5 != md5hex(final) {
		t.Fatalf("completion %+v, want the md5 of the bytes sent last, %s", m, md5hex(final))
	}
	if !bytes.Equal(readAll(t, b, "u", "k"), final) {
		t.Fatal("file differs from the bytes sent last")
	}
}

func testReplan(t *testing.T, open func() storage.Backend) {
	b := mustOpen(t, open)
	const bs = 1000
	old := Pattern(4*bs, 5)
	plan(t, b, "u", "k", int64(len(old)), bs)
	write(t, b, "u", "k", old, bs, 0, 1, 2)
	unlock := b.Lock("u", "k")
	p, was, err := b.PlanUpload("u", "k", 2*bs+1, bs, time.Now())
	unlock()
	if err != nil || was != int64(len(old)) || p.TotalBlock != 3 {
		t.Fatalf("replan = %+v, %d, %v", p, was, err)
	}
	data := Pattern(2*bs+1, 6)
	// The blocks of the old plan count for nothing: two new blocks do
	// not complete the new plan.
	if m := write(t, b, "u", "k", data, bs, 0, 2); m != nil {
		t.Fatal("the old plan's blocks completed the new one")
	}
	m := write(t, b, "u", "k", data, bs, 1)
	if m == nil || m.MD5 != md5hex(data) || m.Size != int64(len(data)) {
		t.Fatalf("completion %+v", m)
	}
}

func testDeleteInProgress(t *testing.T, open func() storage.Backend) {
	b := mustOpen(t, open)
	plan(t, b, "u", "k", 5000, 1000)
	write(t, b, "u", "k", Pattern(5000, 7), 1000, 0)
	unlock := b.Lock("u", "k")
	defer unlock()
	if n, err := b.DeleteFile("u", "k"); !errors.Is(err, storage.ErrInProgress) || n != 5000 {
		t.Fatalf("DeleteFile in progress = %d, %v; want 5000, ErrInProgress", n, err)
	}
	if _, err := b.Upload("u", "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Upload after delete: %v", err)
	}
	if _, err := b.DeleteFile("u", "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteFile twice: %v", err)
	}
}

func testEmpty(t *testing.T, open func() storage.Backend) {
	b := mustOpen(t, open)
	unlock := b.Lock("u", "e")
	m, err := b.CreateEmpty("u", "e")
	unlock()
	if err != nil || m.Size != 0 || m.MD5 != md5hex(nil) {
		t.Fatalf("CreateEmpty = %+v, %v", m, err)
	}
	if m, err := b.Completed("u", "e"); err != nil || m.Size != 0 || m.MD5 != md5hex(nil) {
		t.Fatalf("Completed = %+v, %v", m, err)
	}
}

func testUsage(t *testing.T, open func() storage.Backend) {
	b := mustOpen(t, open)
	if n, err := b.Usage("u"); err != nil || n != 0 {
		t.Fatalf("Usage of a new user = %d, %v", n, err)
	}
	data := Pattern(2500, 8)
	plan(t, b, "u", "f", 2500, 1000)
	write(t, b, "u", "f", data, 1000, 0, 1, 2)
	plan(t, b, "u", "p", 7000, 1000)
	unlock := b.Lock("u", "d")
	b.SaveData("u", "d", []byte("0123456789"))
	unlock()
	plan(t, b, "other", "x", 99999, 1000)
	if n, err := b.Usage("u"); err != nil || n != 2500+7000+10 {
		t.Fatalf("Usage = %d, %v; want %d", n, err, 2500+7000+10)
	}
	// Another instance counts the same, from the storage.
	b.Close()
	if n, err := mustOpen(t, open).Usage("u"); err != nil || n != 2500+7000+10 {
		t.Fatalf("Usage from another instance = %d, %v", n, err)
	}
}

func testSweep(t *testing.T, open func() storage.Backend) {
	b := mustOpen(t, open)
	plan(t, b, "u", "old", 3000, 1000)
	write(t, b, "u", "old", Pattern(3000, 9), 1000, 1)
	if got := b.Sweep(time.Now().Add(-time.Hour)); len(got) != 0 {
		t.Fatalf("Sweep removed fresh uploads: %+v", got)
	}
	got := b.Sweep(time.Now().Add(time.Hour))
	if len(got) != 1 || got[0] != (storage.Swept{User: "u", Key: "old", Size: 3000}) {
		t.Fatalf("Sweep = %+v, want u/old of 3000 bytes", got)
	}
	unlock := b.Lock("u", "old")
	defer unlock()
	if _, err := b.Upload("u", "old"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Upload after the sweep: %v", err)
	}
	if n, _ := b.Usage("u"); n != 0 {
		t.Fatalf("Usage after the sweep = %d", n)
	}
}

func testResume(t *testing.T, open func() storage.Backend) {
	const bs = 1000
	data := Pattern(6*bs+3, 10)
	a := open()
	plan(t, a, "u", "k", int64(len(data)), bs)
	write(t, a, "u", "k", data, bs, 0, 4, 1)
	a.Close()
	b := mustOpen(t, open)
	unlock := b.Lock("u", "k")
	u, err := b.Upload("u", "k")
	unlock()
	if err != nil || u.Plan().Size != int64(len(data)) {
		t.Fatalf("Upload on another instance: %v", err)
	}
	write(t, b, "u", "k", data, bs, 2, 3, 5)
	m := write(t, b, "u", "k", data, bs, 6)
	if m == nil || m.MD5 != md5hex(data) {
		t.Fatalf("completion on another instance %+v, want md5 %s", m, md5hex(data))
	}
	if !bytes.Equal(readAll(t, b, "u", "k"), data) {
		t.Fatal("file differs")
	}
}

func testNames(t *testing.T, open func() storage.Backend) {
	b := mustOpen(t, open)
	for _, key := range []string{"with space", "Zoë €.pdf", "..x", "a.b.c", "plan.json", "%2F", "?q=1#f"} {
		data := Pattern(1500, 11)
		plan(t, b, "n", key, 1500, 1000)
		if m := write(t, b, "n", key, data, 1000, 0, 1); m == nil || m.MD5 != md5hex(data) {
			t.Fatalf("key %q: completion %+v", key, m)
		}
		if !bytes.Equal(readAll(t, b, "n", key), data) {
			t.Fatalf("key %q: file differs", key)
		}
	}
}

func testStaleUpload(t *testing.T, open func() storage.Backend) {
	b := mustOpen(t, open)
	old := plan(t, b, "u", "k", 2000, 1000)
	unlock := b.Lock("u", "k")
	_, _, err := b.PlanUpload("u", "k", 2000, 1000, time.Now())
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteBlock("u", "k", old, 0, Pattern(1000, 12), time.Now()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("block for a replaced plan: %v, want ErrNotFound", err)
	}
	unlock = b.Lock("u", "k")
	if err := b.DropUpload("u", "k", mustUpload(t, b, "u", "k")); err != nil {
		t.Fatal(err)
	}
	unlock()
	cur := old
	if _, err := b.WriteBlock("u", "k", cur, 1, Pattern(1000, 12), time.Now()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("block for a removed upload: %v, want ErrNotFound", err)
	}
}

func mustUpload(t *testing.T, b storage.Backend, user, key string) storage.Upload {
	t.Helper()
	u, err := b.Upload(user, key)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
