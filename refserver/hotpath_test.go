package refserver_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
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

// Blocks pipelined in one write are recorded in batches, but never after
// their 200 has left: every block acknowledged before a SIGKILL is known to
// the next server process, so the client sends only the others and the
// upload completes with the right MD5.
func TestPipelinedAcksSurviveKill(t *testing.T) {
	// A small file is written block by block; a large one gathers the
	// blocks that arrive in order into chunks written whole, and the nine
	// acknowledged blocks do not fill one.
	for _, tc := range []struct {
		name     string
		bs, size int
	}{{"small", 4096, 14*4096 + 99}, {"large", 20480, 5<<20 + 99}} {
		t.Run(tc.name, func(t *testing.T) { testPipelinedAcksSurviveKill(t, tc.bs, tc.size) })
	}
}

func testPipelinedAcksSurviveKill(t *testing.T, bs, size int) {
	root := t.TempDir()
	const acked = 9
	data := pattern(size, 4)
	proc, addr := startProcess(t, root, bs)
	c := dial(t, addr)
	c.login("batch")
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", len(data))), 200)
	var frames []byte
	for i := 0; i < acked; i++ {
		m := c.authed(spec.OpUpload, spec.TypeFile, "key", "k", "block_index", i)
		m.Binary = data[i*bs : (i+1)*bs]
		b, err := spec.EncodeFrame(m)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b...)
	}
	c.sendRaw(frames)
	for i := 0; i < acked; i++ {
		wantStatus(t, c.recv(), 200)
	}
	if err := proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	proc.Wait()

	_, addr = startProcess(t, root, bs)
	d := dial(t, addr)
	d.token = c.token
	var last *spec.Message
	for i := acked; i*bs < len(data); i++ {
		m := d.authed(spec.OpUpload, spec.TypeFile, "key", "k", "block_index", i)
		m.Binary = data[i*bs : min((i+1)*bs, len(data))]
		last = d.do(m)
		wantStatus(t, last, 200)
	}
	if sum, _ := last.MD5(); sum != md5hex(data) {
		t.Fatalf("after the restart the last block got %s: an acknowledged block was forgotten", last.JSONString())
	}
	if !bytes.Equal(d.download("k"), data) {
		t.Fatal("download differs")
	}
}

// Blocks that arrive out of order (several connections) are hashed as
// soon as the blocks before them are in, and the MD5 is right whatever the
// order, a block sent twice included, and the file stored is the blocks
// sent: for a small file, hashed on the
// connection's goroutine, and for a large one, hashed in chunks beside it.
// Blocks of 20480 bytes do not divide the chunks, so that a block read
// back straddles two.
func TestOutOfOrderBlocksHashed(t *testing.T) {
	for _, bs := range []int{65536, 20480} {
		t.Run(fmt.Sprint("block=", bs), func(t *testing.T) { testOutOfOrderBlocksHashed(t, bs) })
	}
}

func testOutOfOrderBlocksHashed(t *testing.T, bs int) {
	addr, _ := refserver.StartTest(t, refserver.Config{BlockSize: bs})
	c := dial(t, addr)
	c.login("ooo")
	const inlineish = 1 << 20
	// A block sent again makes the rest of the upload be hashed from the
	// file: each order is also sent without.
	for k, size := range []int{20*1000 + 1, 6<<20 + 5, 20*1000 + 1, 6<<20 + 5} {
		resend := k < 2
		data := pattern(size, 6)
		total := (size + bs - 1) / bs
		key := fmt.Sprint("k", k)
		wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", key, "size", size)), 200)
		// Pairs swapped, every fifth block sent twice (after the hash
		// passed it, when the first block comes first: the file is hashed
		// again), the first block last or first.
		var order []int
		if size > inlineish {
			order = append(order, 0)
		}
		for i := 1; i < total; i += 2 {
			if i+1 < total {
				order = append(order, i+1)
			}
			order = append(order, i)
		}
		if size <= inlineish {
			order = append(order, 0)
		}
		// The last block sent completes the file: only earlier ones
		// are sent twice.
		var twice []int
		for k, i := range order {
			twice = append(twice, i)
			if resend && i%5 == 0 && k < len(order)-1 {
				twice = append(twice, i)
			}
		}
		order = twice
		var sum string
		for _, i := range order {
			m := c.authed(spec.OpUpload, spec.TypeFile, "key", key, "block_index", i)
			m.Binary = data[i*bs : min((i+1)*bs, size)]
			r := c.do(m)
			wantStatus(t, r, 200)
			if s, err := r.MD5(); err == nil {
				sum = s
			}
		}
		if sum != md5hex(data) {
			t.Fatalf("size %d: md5 %q, want %s", size, sum, md5hex(data))
		}
		if !bytes.Equal(c.download(key), data) {
			t.Fatalf("size %d: the file stored differs from the blocks sent", size)
		}
	}
}

// The record of the blocks a window acknowledges is on disk (in the
// kernel, and fsynced with SyncBlocks) by the time their answers arrive:
// ROOT/tmp/USER/KEY/received marks every acknowledged block.
func TestAcknowledgedBlocksAreRecorded(t *testing.T) {
	for _, syncBlocks := range []bool{false, true} {
		root := t.TempDir()
		addr, _ := refserver.StartTest(t, refserver.Config{Root: root, BlockSize: 4096, SyncBlocks: syncBlocks})
		c := dial(t, addr)
		c.login("rec")
		const bs, acked = 4096, 11
		data := pattern(20*bs, 2)
		wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", len(data))), 200)
		var frames []byte
		for i := 0; i < acked; i++ {
			m := c.authed(spec.OpUpload, spec.TypeFile, "key", "k", "block_index", i)
			m.Binary = data[i*bs : (i+1)*bs]
			b, _ := spec.EncodeFrame(m)
			frames = append(frames, b...)
		}
		c.sendRaw(frames)
		for i := 0; i < acked; i++ {
			wantStatus(t, c.recv(), 200)
		}
		rec, err := os.ReadFile(filepath.Join(root, "tmp", "rec", "k", "received"))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < acked; i++ {
			if rec[i] != 1 {
				t.Fatalf("sync %v: block %d acknowledged but not recorded: %v", syncBlocks, i, rec[:acked])
			}
		}
	}
}
