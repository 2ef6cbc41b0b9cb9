package s3_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/stepkit/stepkit/refserver/storage/s3/weedtest"
)

// TestStoreHonoursConditionalWrites checks, on the store itself, the
// conditional PUTs the backend relies on: If-None-Match: * refuses an
// existing object, If-Match refuses another ETag, and of many creations
// of one name at once exactly one succeeds.
func TestStoreHonoursConditionalWrites(t *testing.T) {
	w := weedtest.Start(t)
	cl := w.Client()
	ctx := context.Background()
	put := func(name, body string, opts minio.PutObjectOptions) (minio.UploadInfo, error) {
		return cl.PutObject(ctx, w.Bucket, name, strings.NewReader(body), int64(len(body)), opts)
	}
	create := minio.PutObjectOptions{}
	create.SetMatchETagExcept("*")
	first, err := put("c/x", "one", create)
	if err != nil {
		t.Fatalf("If-None-Match: * on a new name: %v", err)
	}
	if _, err := put("c/x", "two", create); minio.ToErrorResponse(err).StatusCode != 412 {
		t.Fatalf("If-None-Match: * on an existing name: %v, want 412", err)
	}
	other := minio.PutObjectOptions{}
	other.SetMatchETag("0123456789abcdef0123456789abcdef")
	if _, err := put("c/x", "three", other); minio.ToErrorResponse(err).StatusCode != 412 {
		t.Fatalf("If-Match another ETag: %v, want 412", err)
	}
	same := minio.PutObjectOptions{}
	same.SetMatchETag(first.ETag)
	if _, err := put("c/x", "four", same); err != nil {
		t.Fatalf("If-Match its ETag: %v", err)
	}
	missing := minio.PutObjectOptions{}
	missing.SetMatchETag(first.ETag)
	if _, err := put("c/none", "five", missing); err == nil {
		t.Fatal("If-Match on a missing name succeeded")
	}

	const n = 16
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := put("c/race", strings.Repeat("x", i+1), create); err == nil {
				wins.Add(1)
			} else if minio.ToErrorResponse(err).StatusCode != 412 {
				t.Errorf("racing creation: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d of %d racing creations succeeded, want 1", wins.Load(), n)
	}
}
