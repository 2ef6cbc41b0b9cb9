package refserver_test

import (
	"bytes"
	"fmt"
	"net"
	"testing"

	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// Requests pipelined in one segment are answered in order with fewer
// writes than responses: answers wait while the next request is already
// whole in the read buffer. The last answer is never held back.
func TestPipelinedAnswersShareWrites(t *testing.T) {
	srv, err := refserver.New(refserver.Config{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &countingListener{Listener: tl}
	go srv.Serve(l)
	defer srv.Close()
	c := dial(t, tl.Addr().String())
	c.login("p")
	const n = 10
	var frames []byte
	for i := 0; i < n; i++ {
		m := c.authed(spec.OpSave, spec.TypeData, "key", fmt.Sprintf("k%d", i), "v", i)
		b, err := spec.EncodeFrame(m)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b...)
	}
	before := l.writes.Load()
	c.sendRaw(frames) // one write, one segment on loopback
	for i := 0; i < n; i++ {
		resp := c.recv()
		wantStatus(t, resp, 200)
		if k, _ := resp.Key(); k != fmt.Sprintf("k%d", i) {
			t.Fatalf("answer %d names key %q", i, k)
		}
	}
	if w := l.writes.Load() - before; w >= n {
		t.Fatalf("%d writes for %d pipelined answers", w, n)
	}
}

// A download block leaves by a vectored write on TCP: the answers and the
// block arrive whole and right however large the negotiated block.
func TestDownloadLargeBlocks(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := dial(t, addr)
	c.login("big")
	data := pattern(3<<20+11, 5)
	plan := c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "f", "size", len(data), "block_size", 1<<20))
	wantStatus(t, plan, 200)
	if sum := c.upload("f", data); sum != md5hex(data) {
		t.Fatalf("md5 %s", sum)
	}
	// Pipelined DOWNLOADs of 1 MiB blocks.
	for i := 0; i < 4; i++ {
		c.send(c.authed(spec.OpDownload, spec.TypeFile, "key", "f", "block_index", i, "block_size", 1<<20))
	}
	var got []byte
	for i := 0; i < 4; i++ {
		resp := c.recv()
		wantStatus(t, resp, 200)
		got = append(got, resp.Binary...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("blocks differ from the file")
	}
}
