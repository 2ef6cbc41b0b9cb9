package s3_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/refserver/storage/s3"
	"github.com/stepkit/stepkit/refserver/storage/s3/weedtest"
	"github.com/stepkit/stepkit/refserver/storage/storagetest"
)

// TestContract runs the storage contract against a real SeaweedFS, each
// test under a prefix of its own in one bucket.
func TestContract(t *testing.T) {
	w := weedtest.Start(t)
	var n atomic.Int64
	storagetest.Run(t, func(t *testing.T) func() storage.Backend {
		prefix := fmt.Sprintf("contract-%d/", n.Add(1))
		return func() storage.Backend {
			st, err := s3.Open(context.Background(), w.Config(prefix))
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
	})
}

// TestObjectPutByHand serves a file another S3 tool put into file/USER/,
// without the MD5 in its metadata.
func TestObjectPutByHand(t *testing.T) {
	w := weedtest.Start(t)
	data := storagetest.Pattern(70000, 3)
	if _, err := w.Client().PutObject(context.Background(), w.Bucket, "hand/file/teacher/handout.pdf",
		bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	st := w.Open(t, "hand")
	m, err := st.Completed("teacher", "handout.pdf")
	if err != nil || m.Size != int64(len(data)) || m.MD5 != fmt.Sprintf("%x", md5.Sum(data)) {
		t.Fatalf("Completed = %+v, %v", m, err)
	}
	f, err := st.OpenCompleted("teacher", "handout.pdf", m)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(data))
	if n, err := f.ReadAt(got, 0); n != len(data) || (err != nil && err != io.EOF) || !bytes.Equal(got, data) {
		t.Fatalf("ReadAt: %d bytes, %v", n, err)
	}
	// Replaced by hand: the version opened before gives an error, never
	// the new bytes.
	other := storagetest.Pattern(70000, 4)
	if _, err := w.Client().PutObject(context.Background(), w.Bucket, "hand/file/teacher/handout.pdf",
		bytes.NewReader(other), int64(len(other)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(got[:1000], 5000); err == nil {
		t.Fatal("read of a replaced version succeeded")
	}
}

// TestRuns stores blocks in runs, out of order, some sent again with other
// bytes in overlapping runs, and on two instances: the file is made of the
// bytes each block was last sent with.
func TestRuns(t *testing.T) {
	w := weedtest.Start(t)
	a, b := w.Open(t, "runs/"), w.Open(t, "runs/")
	const bs = 1000
	first, final := storagetest.Pattern(10*bs+10, 5), storagetest.Pattern(10*bs+10, 6)
	blocks := func(data []byte, from, to int64) [][]byte {
		var out [][]byte
		for i := from; i <= to; i++ {
			out = append(out, data[i*bs:min((i+1)*bs, int64(len(data)))])
		}
		return out
	}
	if _, _, err := a.PlanUpload("u", "k", int64(len(final)), bs, time.Now()); err != nil {
		t.Fatal(err)
	}
	ua, _ := a.Upload("u", "k")
	write := func(st *s3.Store, u storage.Upload, data []byte, from, to int64) *storage.FileMeta {
		t.Helper()
		var index []int64
		for i := from; i <= to; i++ {
			index = append(index, i)
		}
		m, err := st.WriteBlocks("u", "k", u, index, blocks(data, from, to), time.Now())
		if err != nil {
			t.Fatalf("WriteBlocks %d-%d: %v", from, to, err)
		}
		return m
	}
	write(a, ua, first, 0, 5)
	write(a, ua, final, 3, 4) // sent again, other bytes
	write(a, ua, final, 0, 2)
	if _, err := a.WriteBlocks("u", "k", ua, []int64{6, 7}, [][]byte{make([]byte, bs), make([]byte, 5)}, time.Now()); err != storage.ErrBlockLen {
		t.Fatalf("a run with a short block: %v, want ErrBlockLen", err)
	}
	if _, err := a.WriteBlocks("u", "k", ua, []int64{6, 6}, [][]byte{make([]byte, bs), make([]byte, bs)}, time.Now()); err == nil {
		t.Fatal("a run with a block twice was taken")
	}
	// Blocks in any order, not next to each other, in one object.
	ix := []int64{10, 1, 4}
	if _, err := a.WriteBlocks("u", "k", ua, ix, [][]byte{final[10*bs:], final[bs : 2*bs], final[4*bs : 5*bs]}, time.Now()); err != nil {
		t.Fatal(err)
	}
	ub, err := b.Upload("u", "k")
	if err != nil {
		t.Fatal(err)
	}
	write(b, ub, first, 6, 8)
	write(b, ub, final, 5, 8) // b's newer bytes for 5 to 8
	if m := write(a, ua, final, 9, 10); m != nil {
		t.Fatal("a completed the file without knowing of b's blocks")
	}
	// a knows blocks 0-5 and 9-10; the FILE GET path finds the rest.
	m, err := a.Completed("u", "k")
	if err != nil || m.MD5 != fmt.Sprintf("%x", md5.Sum(final)) {
		t.Fatalf("Completed = %+v, %v; want md5 %x", m, err, md5.Sum(final))
	}
}

// TestLargeFile completes a 40 MiB file from runs of 16 blocks: one
// object, whole, its MD5 in its metadata.
func TestLargeFile(t *testing.T) {
	w := weedtest.Start(t)
	st := w.Open(t, "large/")
	const bs = 20480
	data := storagetest.Pattern(40<<20+777, 9)
	size := int64(len(data))
	if _, _, err := st.PlanUpload("u", "big", size, bs, time.Now()); err != nil {
		t.Fatal(err)
	}
	u, _ := st.Upload("u", "big")
	var m *storage.FileMeta
	for i := int64(0); i < u.Plan().TotalBlock; i += 16 {
		var ix []int64
		var bl [][]byte
		for j := i; j < min(i+16, u.Plan().TotalBlock); j++ {
			ix = append(ix, j)
			bl = append(bl, data[j*bs:min((j+1)*bs, size)])
		}
		var err error
		if m, err = st.WriteBlocks("u", "big", u, ix, bl, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	want := fmt.Sprintf("%x", md5.Sum(data))
	if m == nil || m.MD5 != want || m.Size != size {
		t.Fatalf("completion %+v, want md5 %s", m, want)
	}
	obj, err := w.Client().GetObject(context.Background(), w.Bucket, "large/file/u/big", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	info, _ := obj.Stat()
	obj.Close()
	if err != nil || !bytes.Equal(got, data) || info.UserMetadata["Stepkit-Md5"] != want {
		t.Fatalf("object: %d bytes (%v), metadata %v", len(got), err, info.UserMetadata)
	}
}

// TestPlannedAgainElsewhere: server b remembers a plan (within
// Config.Revalidate) that server a has since replaced. With the same
// plan, b's blocks complete the file, as on a local store; with another
// plan, b's last block is told the key has no plan, never a storage
// failure.
func TestPlannedAgainElsewhere(t *testing.T) {
	w := weedtest.Start(t)
	open := func(prefix string) *s3.Store {
		cfg := w.Config(prefix)
		cfg.Revalidate = time.Hour
		st, err := s3.Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	const bs = 1000
	data := storagetest.Pattern(3*bs+7, 9)
	for _, tc := range []struct {
		name      string
		againSize int64
		completes bool
	}{{"SamePlan", int64(len(data)), true}, {"OtherPlan", int64(len(data)) + bs, false}} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := open("again-"+tc.name+"/"), open("again-"+tc.name+"/")
			now := time.Now()
			if _, _, err := b.PlanUpload("u", "k", int64(len(data)), bs, now); err != nil {
				t.Fatal(err)
			}
			up, err := b.Upload("u", "k")
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := a.PlanUpload("u", "k", tc.againSize, bs, now); err != nil {
				t.Fatal(err)
			}
			var m *storage.FileMeta
			for i := int64(0); i < 4; i++ {
				m, err = b.WriteBlock("u", "k", up, i, data[i*bs:min((i+1)*bs, int64(len(data)))], now)
				if i < 3 && (m != nil || err != nil) {
					t.Fatalf("block %d: %v, %v", i, m, err)
				}
			}
			if !tc.completes {
				if !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("last block: %v, %v; want ErrNotFound", m, err)
				}
				return
			}
			if err != nil || m == nil || m.MD5 != fmt.Sprintf("%x", md5.Sum(data)) {
				t.Fatalf("last block: %+v, %v; want the file's MD5", m, err)
			}
			// A server that remembers nothing sees the file, whole, and
			// no upload.
			c := open("again-" + tc.name + "/")
			got, err := c.Completed("u", "k")
			if err != nil || got.MD5 != m.MD5 {
				t.Fatalf("completed, as a third server sees it: %+v, %v", got, err)
			}
			if _, err := c.Upload("u", "k"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("a third server still sees an upload: %v", err)
			}
		})
	}
}
