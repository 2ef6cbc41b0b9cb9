package refclient

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/stepkit/stepkit/refserver"
)

// A transfer allocates per transfer, not per block: moving four times as
// many blocks costs, client and server together (both run here), less
// than one allocation per extra block.
func TestTransferAllocationsDoNotGrowWithBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("measures whole transfers")
	}
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := login(t, addr, &Options{BlockSize: 1024, Window: 16})
	ctx := context.Background()
	mallocs := func(blocks int, op string) uint64 {
		data := testData(blocks*1024, 7)
		best := ^uint64(0)
		for run := 0; run < 5; run++ {
			key := fmt.Sprintf("a-%d-%d", blocks, run)
			if op == "download" {
				if _, err := c.Upload(ctx, key, bytes.NewReader(data), int64(len(data)), nil); err != nil {
					t.Fatal(err)
				}
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			var err error
			if op == "upload" {
				_, err = c.Upload(ctx, key, bytes.NewReader(data), int64(len(data)), nil)
			} else {
				_, err = c.Download(ctx, key, &sliceWriter{b: make([]byte, 0, len(data))}, nil)
			}
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			best = min(best, after.Mallocs-before.Mallocs)
			if err := c.DeleteFile(ctx, key); err != nil {
				t.Fatal(err)
			}
		}
		return best
	}
	for _, op := range []string{"upload", "download"} {
		few, many := mallocs(100, op), mallocs(400, op)
		if many > few && many-few >= 300 { // under one allocation per extra block
			t.Errorf("%s: %d allocations for 100 blocks, %d for 400: %.1f per block", op, few, many, float64(many-few)/300)
		}
	}
}

// sliceWriter appends to a slice made large enough beforehand.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
