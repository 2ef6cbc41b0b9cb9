package refclient

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stepkit/stepkit/internal/reliability"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// TestRateLimitedTransfersAreRetried: against a server that allows 10
// requests a second in bursts of 4, a 12-block upload and download (16
// blocks in flight) meet 429s and finish anyway, by waiting and resuming
// from their journals; single requests wait and retry too. With retries
// off, the same upload fails with the 429.
func TestRateLimitedTransfersAreRetried(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{RateLimit: 10, RateBurst: 4})
	ctx := context.Background()
	data := testData(12*20480, 9)
	src := writeTemp(t, "in", data)

	off := login(t, addr, &Options{JournalDir: t.TempDir(), RateLimitRetries: -1, RateLimitBackoff: 50 * time.Millisecond})
	if _, err := off.UploadFile(ctx, src, "first", nil); !IsStatus(err, spec.StatusTooManyRequests) {
		t.Fatalf("upload without retries: %v, want a 429", err)
	}

	c := login(t, addr, &Options{JournalDir: t.TempDir(), RateLimitBackoff: 50 * time.Millisecond})
	up, err := c.UploadFile(ctx, src, "second", nil)
	if err != nil || !up.Verified {
		t.Fatalf("upload: %+v %v", up, err)
	}
	dest := filepath.Join(t.TempDir(), "out")
	down, err := c.DownloadFile(ctx, "second", dest, nil)
	if err != nil || !down.Verified {
		t.Fatalf("download: %+v %v", down, err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
		t.Fatal("downloaded file differs")
	}
	// Single requests: a burst of FILE GETs, each answered in the end.
	for i := 0; i < 6; i++ {
		if _, err := c.FileInfo(ctx, "second"); err != nil {
			t.Fatalf("FILE GET %d: %v", i, err)
		}
	}
	if ents, _ := os.ReadDir(c.Options().JournalDir); len(ents) != 0 {
		t.Fatalf("journals left: %v", ents)
	}
	reliability.Record(t, reliability.Row{Area: "client", Times: 1,
		Input:   "an upload and a download of 12 blocks, 16 in flight, and 6 FILE GETs, against a server allowing 10 requests a second in bursts of 4",
		Outcome: "429s waited out with a doubling backoff; the transfers resumed from their journals and were verified",
		Lost:    "nothing"})
}

// TestRateLimitRetriesAreBounded: a server whose limit never lets a
// request through is given up on after RateLimitRetries retries.
func TestRateLimitRetriesAreBounded(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{RateLimit: 0.0001, RateBurst: 1}) // the LOGIN only
	c := login(t, addr, &Options{JournalDir: t.TempDir(), RateLimitRetries: 3, RateLimitBackoff: time.Millisecond})
	if _, err := c.FileInfo(context.Background(), "x"); !IsStatus(err, spec.StatusTooManyRequests) {
		t.Fatalf("FILE GET: %v, want a 429", err)
	}
	if _, err := c.UploadFile(context.Background(), writeTemp(t, "in", testData(100, 1)), "x", nil); !IsStatus(err, spec.StatusTooManyRequests) {
		t.Fatalf("upload: %v, want a 429", err)
	}
	reliability.Record(t, reliability.Row{Area: "client", Times: 2,
		Input:   "a FILE GET and an upload against a server that refuses every request with 429",
		Outcome: "given up after 3 retries with the 429 as the error", Lost: "nothing"})
}

func TestPruneJournals(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(t.TempDir(), "big.iso")
	now := time.Now()
	oldDown, err := createJournal(filepath.Join(dir, "a.journal"), journalHeader{Op: "download", Path: dest, Size: 10, BlockSize: 10, TotalBlock: 1})
	if err != nil {
		t.Fatal(err)
	}
	oldDown.close()
	if err := os.WriteFile(PartPath(dest), []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	oldUp, _ := createJournal(filepath.Join(dir, "b.journal"), journalHeader{Op: "upload", Path: "/x", Size: 10, BlockSize: 10, TotalBlock: 1})
	oldUp.close()
	fresh, _ := createJournal(filepath.Join(dir, "c.journal"), journalHeader{Op: "upload", Path: "/y", Size: 10, BlockSize: 10, TotalBlock: 1})
	fresh.close()
	other := filepath.Join(dir, "notes.txt")
	os.WriteFile(other, nil, 0o644)
	long := now.Add(-20 * 24 * time.Hour)
	for _, p := range []string{oldDown.path, oldUp.path, other} {
		if err := os.Chtimes(p, long, long); err != nil {
			t.Fatal(err)
		}
	}
	n, err := PruneJournals(dir, DefaultJournalMaxAge, now)
	if err != nil || n != 2 {
		t.Fatalf("pruned %d (%v), want 2", n, err)
	}
	for p, want := range map[string]bool{oldDown.path: false, oldUp.path: false, PartPath(dest): false, fresh.path: true, other: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", p, err == nil, want)
		}
	}
	// A transfer prunes its client's folder first.
	if err := os.Chtimes(fresh.path, long, long); err != nil {
		t.Fatal(err)
	}
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := login(t, addr, &Options{JournalDir: dir})
	if _, err := c.UploadFile(context.Background(), writeTemp(t, "in", testData(100, 2)), "k", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fresh.path); err == nil {
		t.Error("an old journal survived a transfer")
	}
	if n, _ := PruneJournals(t.TempDir()+"/missing", time.Hour, now); n != 0 {
		t.Error("a missing folder pruned something")
	}
	reliability.Record(t, reliability.Row{Area: "client", Times: 3,
		Input:   "journals untouched for 20 days (an upload's, a download's with its partial file, another file's name)",
		Outcome: "the two journals and the partial file removed before the next transfer; fresh journals and other files kept",
		Lost:    "nothing a transfer could still resume"})
}
