package s3_test

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/stepkit/stepkit/internal/reliability"
	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/refserver/storage/s3"
	"github.com/stepkit/stepkit/refserver/storage/s3/weedtest"
	"github.com/stepkit/stepkit/refserver/storage/storagetest"
	"github.com/stepkit/stepkit/spec"
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

// TestPlanRace lands a competing write of the plan between PlanUpload's
// read and its conditional write, as when server A was killed during its
// FILE SAVE and its plan write reached the store after A died, just after
// server B read the plan for the same FILE SAVE. A plan that is not a
// completed file is planned again under the new condition; only a key
// completed meanwhile, or one planned again at every attempt, is an
// existing key.
func TestPlanRace(t *testing.T) {
	w := weedtest.Start(t)
	const bs = 1000
	data := storagetest.Pattern(5*bs+17, 9)
	total := spec.TotalBlocks(int64(len(data)), bs)

	// lateWrite makes the first plan write of b (and only it) meet a plan
	// that a wrote after b's read.
	lateWrite := func(t *testing.T, a, b *s3.Store, size int64) *atomic.Int32 {
		var calls atomic.Int32
		s3.SetBeforePlanWrite(b, func(user, key string) {
			if calls.Add(1) == 1 {
				if _, _, err := a.PlanUpload(user, key, size, bs, time.Now()); err != nil {
					t.Errorf("the competing plan: %v", err)
				}
			}
		})
		return &calls
	}
	// complete uploads data through st under its plan and checks the file.
	complete := func(t *testing.T, st *s3.Store, key string) {
		unlock := st.Lock("u", key)
		u, err := st.Upload("u", key)
		unlock()
		if err != nil {
			t.Fatalf("Upload after the race: %v", err)
		}
		if p := u.Plan(); p.Size != int64(len(data)) || p.BlockSize != bs {
			t.Fatalf("plan after the race %+v, want size %d", p, len(data))
		}
		var m *storage.FileMeta
		for i := range total {
			if m, err = st.WriteBlock("u", key, u, i, data[i*bs:min((i+1)*bs, int64(len(data)))], time.Now()); err != nil {
				t.Fatalf("block %d: %v", i, err)
			}
		}
		if m == nil || m.MD5 != fmt.Sprintf("%x", md5.Sum(data)) {
			t.Fatalf("completed as %+v, want MD5 %x", m, md5.Sum(data))
		}
	}

	for _, tc := range []struct{ name, prefix string }{
		// B's read finds no plan: its write is If-None-Match: *.
		{"NoPlanBefore", "race-new/"},
		// B's read finds a plan (a FILE SAVE restarting an upload): its
		// write is If-Match that plan's ETag.
		{"PlanBefore", "race-restart/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := w.Open(t, tc.prefix), w.Open(t, tc.prefix)
			if tc.prefix == "race-restart/" {
				if _, _, err := b.PlanUpload("u", "big", 3*bs, bs, time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			calls := lateWrite(t, a, b, 128<<20)
			unlock := b.Lock("u", "big")
			p, _, err := b.PlanUpload("u", "big", int64(len(data)), bs, time.Now())
			unlock()
			if err != nil {
				t.Fatalf("PlanUpload with a late plan write landing before its own: %v, want a plan", err)
			}
			if p.Size != int64(len(data)) || calls.Load() != 2 {
				t.Fatalf("plan %+v after %d attempts, want size %d after 2", p, calls.Load(), len(data))
			}
			// The plan in the store is B's: a third server sees it, the
			// upload completes through it, and B sees the file.
			complete(t, w.Open(t, tc.prefix), "big")
			if _, err := b.Completed("u", "big"); err != nil {
				t.Fatalf("Completed on B: %v", err)
			}
		})
	}

	if !t.Failed() {
		reliability.Record(t, reliability.Row{Area: "server", Times: 2,
			Input:   "two servers on one SeaweedFS bucket: the plan write of one killed during its FILE SAVE lands between the other's read of the plan and its conditional write (no plan before, and a plan before)",
			Outcome: "the plan read again and the key planned again under the new condition: FILE SAVE answered with a plan, not 402; the upload completes through a third server",
			Lost:    "nothing"})
	}

	t.Run("CompletedMeanwhile", func(t *testing.T) {
		a, b := w.Open(t, "race-done/"), w.Open(t, "race-done/")
		if _, _, err := a.PlanUpload("u", "k", int64(len(data)), bs, time.Now()); err != nil {
			t.Fatal(err)
		}
		var calls atomic.Int32
		s3.SetBeforePlanWrite(b, func(user, key string) {
			calls.Add(1)
			if calls.Load() == 1 {
				complete(t, a, key)
			}
		})
		unlock := b.Lock("u", "k")
		_, _, err := b.PlanUpload("u", "k", 10, bs, time.Now())
		unlock()
		if !errors.Is(err, storage.ErrExists) || calls.Load() != 1 {
			t.Fatalf("PlanUpload of a key completed between its read and its write: %v after %d attempts, want ErrExists after 1",
				err, calls.Load())
		}
	})

	t.Run("PlannedAgainEveryTime", func(t *testing.T) {
		a, b := w.Open(t, "race-busy/"), w.Open(t, "race-busy/")
		var calls atomic.Int32
		s3.SetBeforePlanWrite(b, func(user, key string) {
			calls.Add(1)
			if _, _, err := a.PlanUpload(user, key, 7, bs, time.Now()); err != nil {
				t.Errorf("the competing plan: %v", err)
			}
		})
		unlock := b.Lock("u", "k")
		_, _, err := b.PlanUpload("u", "k", 10, bs, time.Now())
		unlock()
		if !errors.Is(err, storage.ErrExists) || calls.Load() < 2 || calls.Load() > 8 {
			t.Fatalf("PlanUpload planned again by another server at every attempt: %v after %d attempts, want ErrExists after a few",
				err, calls.Load())
		}
	})
}
