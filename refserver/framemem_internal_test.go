package refserver

import (
	"context"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stepkit/stepkit/internal/reliability"
	"github.com/stepkit/stepkit/spec"
)

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestFrameMemoryBound: connections that send most of a large frame at
// once and then stall hold together no more than the frame memory budget
// (plus a fixed allowance per connection), the others wait for it, small
// requests still pass, and the stalled ones are cut at their frame's
// deadline, which gives everything back.
func TestFrameMemoryBound(t *testing.T) {
	const (
		budget   = 4 << 20
		stallers = 32
		sent     = 900 << 10 // of a 1 MiB binary part
	)
	srv, err := New(Config{Root: t.TempDir(), MaxFrameMemory: budget, ReadTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	addr := l.Addr().String()
	base := heapInUse()

	frame := append(spec.Header(2, 1<<20), "{}"...)
	frame = append(frame, make([]byte, sent)...)
	var wg sync.WaitGroup
	conns := make([]net.Conn, stallers)
	for i := range conns {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		conns[i] = nc
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			nc.Write(frame) // may be cut by the server's deadline
		}()
	}
	// The bound: twice the budget (a buffer grows by doubling) plus, per
	// connection, its 64 KiB read buffer, its free allowance, one read
	// ahead and the growth step.
	bound := int64(2*budget + stallers*(4*64<<10) + 4<<20)
	saturated := false
	for i := 0; i < 2000 && !saturated; i++ {
		srv.budget.mu.Lock()
		saturated = srv.budget.waits > 0 && srv.budget.used > budget-(1<<20)
		srv.budget.mu.Unlock()
		if grown := heapInUse() - base; grown > bound {
			t.Fatalf("heap grew by %d bytes, bound %d", grown, bound)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !saturated {
		t.Fatal("frame memory budget never saturated")
	}
	if grown := heapInUse() - base; grown > bound {
		t.Fatalf("heap grew by %d bytes, bound %d", grown, bound)
	}
	if used, peak, limit := srv.FrameMemory(); used > limit || peak > limit || limit != budget {
		t.Fatalf("frame memory used %d, peak %d, limit %d", used, peak, limit)
	}

	// A small request does not wait for frame memory.
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	login := spec.NewRequest(spec.OpLogin, spec.TypeAuth)
	login.Set("username", "u")
	login.Set("password", "7b774effe4a349c6dd82ad4f4f21d34c")
	b, _ := spec.EncodeFrame(login)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	resp, err := spec.NewReader(nc, spec.Limits{}).ReadMessage()
	if err != nil {
		t.Fatalf("small request during saturation: %v", err)
	}
	if st, _ := resp.Status(); st != 200 {
		t.Fatalf("small request during saturation: %s", resp.JSONString())
	}

	// The stalled frames end at their deadline and give back their share.
	wg.Wait()
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a stalled frame was answered")
		}
	}
	for i := 0; ; i++ {
		if used, _, _ := srv.FrameMemory(); used == 0 {
			break
		}
		if i == 1000 {
			used, _, _ := srv.FrameMemory()
			t.Fatalf("%d bytes of frame memory still held after the stalled connections ended", used)
		}
		time.Sleep(10 * time.Millisecond)
	}
	reliability.Record(t, reliability.Row{Area: "server", Times: stallers,
		Input:   "900 KiB of a 1 MiB frame at once, then nothing, from 32 connections at once (7 MiB over a 4 MiB --max-frame-memory)",
		Outcome: "heap held under 2 × budget + 256 KiB per connection; the others waited; a LOGIN meanwhile answered; all cut at the frame's deadline, the budget given back",
		Lost:    "nothing"})
}
