package s3_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/stepkit/stepkit/refclient"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/refserver/storage/s3"
	"github.com/stepkit/stepkit/refserver/storage/s3/weedtest"
	"github.com/stepkit/stepkit/refserver/storage/storagetest"
)

// gatherRuns gives blocks [from, to) of data to st in runs of 16, each run
// from a goroutine of its own, as a connection's flights are stored, and
// returns the completion, if one came, once every run returned.
func gatherRuns(t *testing.T, st *s3.Store, key string, u storage.Upload, data []byte, from, to int64) *storage.FileMeta {
	t.Helper()
	p := u.Plan()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var done *storage.FileMeta
	for i := from; i < to; i += 16 {
		var ix []int64
		var bl [][]byte
		for j := i; j < min(i+16, to); j++ {
			ix = append(ix, j)
			bl = append(bl, data[j*p.BlockSize:min((j+1)*p.BlockSize, p.Size)])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := st.WriteBlocksGathered("u", key, u, ix, bl, time.Now())
			if err != nil {
				t.Errorf("blocks %v: %v", ix, err)
			}
			if m != nil {
				mu.Lock()
				done = m
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return done
}

// checkObject reads file/u/KEY under prefix and compares it with data; it
// returns the object's ETag.
func checkObject(t *testing.T, w *weedtest.Server, prefix, key string, data []byte) string {
	t.Helper()
	obj, err := w.Client().GetObject(context.Background(), w.Bucket, prefix+"file/u/"+key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	info, _ := obj.Stat()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object %s: %d bytes (%v), want %d bytes of the upload", key, len(got), err, len(data))
	}
	return info.ETag
}

// leftovers lists the objects under prefix+"tmp/" and the multipart
// uploads under prefix.
func leftovers(t *testing.T, w *weedtest.Server, prefix string) []string {
	t.Helper()
	var out []string
	for o := range w.Client().ListObjects(context.Background(), w.Bucket, minio.ListObjectsOptions{Prefix: prefix + "tmp/", Recursive: true}) {
		out = append(out, fmt.Sprintf("%s (%v)", o.Key, o.Err))
	}
	for mu := range w.Client().ListIncompleteUploads(context.Background(), w.Bucket, prefix, true) {
		out = append(out, fmt.Sprintf("multipart upload %s of %s (%v)", mu.UploadID, mu.Key, mu.Err))
	}
	return out
}

// TestGatheredUpload stores a 40 MiB file from runs of blocks gathered
// into parts, given out of order from several goroutines: the file is one
// object made from the parts (a multipart ETag), with the right MD5, seen
// by a server that remembers nothing, and the upload leaves nothing
// behind.
func TestGatheredUpload(t *testing.T) {
	w := weedtest.Start(t)
	const prefix = "gather/"
	st := w.Open(t, prefix)
	if st.UploadWindow() < 8<<20 {
		t.Fatalf("UploadWindow %d", st.UploadWindow())
	}
	const bs = 256 << 10
	data := storagetest.Pattern(40<<20+777, 21)
	size := int64(len(data))
	if _, _, err := st.PlanUpload("u", "big", size, bs, time.Now()); err != nil {
		t.Fatal(err)
	}
	u, _ := st.Upload("u", "big")
	total := u.Plan().TotalBlock
	// The second half first, then the first: parts complete out of order.
	if m := gatherRuns(t, st, "big", u, data, total/2, total); m != nil {
		t.Fatal("completed before the first half")
	}
	m := gatherRuns(t, st, "big", u, data, 0, total/2)
	want := fmt.Sprintf("%x", md5.Sum(data))
	if m == nil || m.MD5 != want || m.Size != size {
		t.Fatalf("completion %+v, want md5 %s", m, want)
	}
	if etag := checkObject(t, w, prefix, "big", data); !strings.Contains(etag, "-") {
		t.Fatalf("ETag %q: not made from parts", etag)
	}
	fresh := w.Open(t, prefix)
	if got, err := fresh.Completed("u", "big"); err != nil || got.MD5 != want {
		t.Fatalf("a fresh server sees %+v, %v", got, err)
	}
	if l := leftovers(t, w, prefix); len(l) > 0 {
		t.Fatalf("left behind: %v", l)
	}
}

// TestGatheredBlocksNotWaitedForForever: blocks whose part never
// completes (the client stopped sending) are stored alone after a while,
// and the upload completes from them and from parts.
func TestGatheredBlocksNotWaitedForForever(t *testing.T) {
	w := weedtest.Start(t)
	const prefix = "gather-stop/"
	st := w.Open(t, prefix)
	const bs = 256 << 10
	data := storagetest.Pattern(20<<20+5, 22)
	if _, _, err := st.PlanUpload("u", "k", int64(len(data)), bs, time.Now()); err != nil {
		t.Fatal(err)
	}
	u, _ := st.Upload("u", "k")
	total := u.Plan().TotalBlock
	// The first part whole; then five blocks of the second, and nothing.
	gatherRuns(t, st, "k", u, data, 0, 32)
	start := time.Now()
	if m := gatherRuns(t, st, "k", u, data, 32, 37); m != nil {
		t.Fatal("completed early")
	}
	if time.Since(start) > time.Minute {
		t.Fatalf("held for %v", time.Since(start))
	}
	// The rest, one block at a time, as a stop-and-wait client sends.
	var m *storage.FileMeta
	for i := int64(37); i < total; i++ {
		var err error
		m, err = st.WriteBlock("u", "k", u, i, data[i*bs:min((i+1)*bs, int64(len(data)))], time.Now())
		if err != nil {
			t.Fatal(err)
		}
	}
	if want := fmt.Sprintf("%x", md5.Sum(data)); m == nil || m.MD5 != want {
		t.Fatalf("completion %+v, want md5 %s", m, want)
	}
	checkObject(t, w, prefix, "k", data)
	if l := leftovers(t, w, prefix); len(l) > 0 {
		t.Fatalf("left behind: %v", l)
	}
}

// TestGatheredUploadResumedElsewhere: server a stores two parts and dies;
// server b, which remembers nothing, finds them (ListParts), takes blocks
// of a stored part sent again (their answers were lost with a) without
// storing them twice, gathers the rest and completes the file, its MD5
// read back from the store.
func TestGatheredUploadResumedElsewhere(t *testing.T) {
	w := weedtest.Start(t)
	const prefix = "gather-resume/"
	a, b := w.Open(t, prefix), w.Open(t, prefix)
	const bs = 256 << 10
	data := storagetest.Pattern(30<<20+3, 23)
	if _, _, err := a.PlanUpload("u", "k", int64(len(data)), bs, time.Now()); err != nil {
		t.Fatal(err)
	}
	ua, _ := a.Upload("u", "k")
	total := ua.Plan().TotalBlock
	gatherRuns(t, a, "k", ua, data, 0, 64)
	ub, err := b.Upload("u", "k")
	if err != nil {
		t.Fatal(err)
	}
	// Blocks 48-63 again (the second part's last answers were lost),
	// then the rest.
	if m := gatherRuns(t, b, "k", ub, data, 48, 64); m != nil {
		t.Fatal("completed early")
	}
	parts := 0
	for o := range w.Client().ListObjects(context.Background(), w.Bucket, minio.ListObjectsOptions{Prefix: prefix + "tmp/u/k/", Recursive: true}) {
		if strings.Contains(o.Key, "/part-") {
			parts++
		}
		if !strings.HasSuffix(o.Key, "plan.json") && !strings.Contains(o.Key, "/part-") && !strings.HasSuffix(o.Key, "/multipart") {
			t.Errorf("blocks sent again were stored again: %s", o.Key)
		}
	}
	if parts != 2 {
		t.Fatalf("%d part records, want 2", parts)
	}
	m := gatherRuns(t, b, "k", ub, data, 64, total)
	if want := fmt.Sprintf("%x", md5.Sum(data)); m == nil || m.MD5 != want {
		t.Fatalf("completion %+v, want md5 %s", m, want)
	}
	checkObject(t, w, prefix, "k", data)
	if l := leftovers(t, w, prefix); len(l) > 0 {
		t.Fatalf("left behind: %v", l)
	}
}

// TestGatheredUploadSwept: an abandoned upload with stored parts is swept
// with its multipart upload; so is a multipart upload no upload records
// (its server died before recording it); a restarted or removed upload
// aborts its parts at once.
func TestGatheredUploadSwept(t *testing.T) {
	w := weedtest.Start(t)
	const prefix = "gather-sweep/"
	st := w.Open(t, prefix)
	const bs = 256 << 10
	data := storagetest.Pattern(20<<20, 24)
	for _, key := range []string{"swept", "replanned", "deleted"} {
		if _, _, err := st.PlanUpload("u", key, int64(len(data)), bs, time.Now()); err != nil {
			t.Fatal(err)
		}
		u, _ := st.Upload("u", key)
		gatherRuns(t, st, key, u, data, 0, 32)
	}
	core := minio.Core{Client: w.Client()}
	if _, err := core.NewMultipartUpload(context.Background(), w.Bucket, prefix+"file/u/orphan", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	mps := 0
	for _, l := range leftovers(t, w, prefix) {
		if strings.HasPrefix(l, "multipart upload") {
			mps++
		}
	}
	if mps != 4 {
		t.Fatalf("%d multipart uploads before, want 4", mps)
	}
	if _, _, err := st.PlanUpload("u", "replanned", 100, 10, time.Now()); err != nil {
		t.Fatal(err)
	}
	u, _ := st.Upload("u", "deleted")
	if err := st.DropUpload("u", "deleted", u); err != nil {
		t.Fatal(err)
	}
	// The cut-off an hour ahead sweeps everything, the new plan too.
	swept := st.Sweep(time.Now().Add(time.Hour))
	found := false
	for _, sw := range swept {
		found = found || sw == storage.Swept{User: "u", Key: "swept", Size: int64(len(data))}
	}
	if !found {
		t.Fatalf("swept %+v, want the abandoned upload among them", swept)
	}
	if l := leftovers(t, w, prefix); len(l) > 0 {
		t.Fatalf("left behind: %v", l)
	}
}

// TestClientUploadsThroughParts runs stepkit's client against a server on
// SeaweedFS: with its automatic window it keeps the server's
// upload_window in flight, and the file is made from parts; a client with
// one block in flight gets the block objects' path; both verify.
func TestClientUploadsThroughParts(t *testing.T) {
	w := weedtest.Start(t)
	const prefix = "gather-client/"
	addr, _ := refserver.StartTest(t, refserver.Config{Storage: w.Open(t, prefix)})
	data := storagetest.Pattern(24<<20+11, 25)
	for _, tc := range []struct {
		name  string
		o     refclient.Options
		parts bool
	}{{"auto", refclient.Options{}, true}, {"conns4", refclient.Options{Conns: 4}, true}, {"window1", refclient.Options{Window: 1}, false}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c, err := refclient.Dial(ctx, addr, &tc.o)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Login(ctx, "u", ""); err != nil {
				t.Fatal(err)
			}
			res, err := c.Upload(ctx, tc.name, bytes.NewReader(data), int64(len(data)), nil)
			if err != nil || !res.Verified || res.MD5 != fmt.Sprintf("%x", md5.Sum(data)) {
				t.Fatalf("upload: %+v, %v", res, err)
			}
			etag := checkObject(t, w, prefix, tc.name, data)
			if strings.Contains(etag, "-") != tc.parts {
				t.Fatalf("ETag %q; want made from parts: %v", etag, tc.parts)
			}
			var got bytes.Buffer
			if _, err := c.Download(ctx, tc.name, &got, nil); err != nil || !bytes.Equal(got.Bytes(), data) {
				t.Fatalf("download: %v", err)
			}
		})
	}
	if l := leftovers(t, w, prefix); len(l) > 0 {
		t.Fatalf("left behind: %v", l)
	}
}
