package stepdump_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stepkit/stepkit/stepdump"
)

// liveHeap samples the live heap (after a collection) every so many
// messages.
type liveHeap struct {
	n    int
	peak uint64
}

func (h *liveHeap) Message(*stepdump.Message) {
	h.n++
	if h.n%500 == 0 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		h.peak = max(h.peak, ms.HeapAlloc)
	}
}
func (h *liveHeap) Note(*stepdump.Note)    {}
func (h *liveHeap) ConnEnd(*stepdump.Conn) {}

// TestMemoryFollowsConnectionsNotCaptureSize decodes a capture and one four
// times its size, both made of connections one after another: the live
// heap while decoding must not grow with the capture.
func TestMemoryFollowsConnectionsNotCaptureSize(t *testing.T) {
	peak := func(mb int) (uint64, int) {
		p := filepath.Join(t.TempDir(), "c.pcap")
		writeLargeCapture(t, p, mb)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		runtime.GC()
		h := &liveHeap{}
		if _, err := stepdump.Decode(context.Background(), f, stepdump.Options{}, h); err != nil {
			t.Fatal(err)
		}
		return h.peak, h.n
	}
	small, n1 := peak(16)
	large, n2 := peak(64)
	t.Logf("live heap: %.1f MiB for %d messages, %.1f MiB for %d messages", float64(small)/(1<<20), n1, float64(large)/(1<<20), n2)
	if n2 < 3*n1 {
		t.Fatalf("the large capture holds %d messages, the small %d", n2, n1)
	}
	if large > small+4<<20 {
		t.Fatalf("live heap grew with the capture: %d bytes for 16 MB, %d for 64 MB", small, large)
	}
}
