package refclient

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// overReadSeg makes a 20480-byte block reach the over-reading fake in
// three reads, the last of which takes 520 bytes of a request behind it.
const overReadSeg = 7000

// CLIENT-4: against a server that reads like the course server and does
// not advertise pipelining, the automatic window sends one block at a time
// and the upload succeeds; downloads stay pipelined.
func TestAutomaticWindowWithOverReadingServer(t *testing.T) {
	s := newFake(t)
	s.overRead = overReadSeg
	addr := s.start()
	c := login(t, addr, &Options{ReplyTimeout: 5 * time.Second})
	bs := int64(spec.DefaultBlockSize)
	if c.Pipelining() || c.UploadWindow(bs) != 1 || c.DownloadWindow(bs) != DefaultWindow {
		t.Fatalf("pipelining %v, upload window %d, download window %d", c.Pipelining(), c.UploadWindow(bs), c.DownloadWindow(bs))
	}
	ctx := context.Background()
	data := testData(3<<20+5, 41)
	up, err := c.Upload(ctx, "big.bin", bytes.NewReader(data), int64(len(data)), nil)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	if !up.Verified || up.Window != 1 || up.PeakInFlight != 1 || up.Retried {
		t.Fatalf("upload result %+v", up)
	}
	if got, _ := s.content("big.bin"); !bytes.Equal(got, data) {
		t.Fatal("stored content differs")
	}
	var buf bytes.Buffer
	down, err := c.Download(ctx, "big.bin", &buf, nil)
	if err != nil || !down.Verified || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("download: %+v %v", down, err)
	}
	if down.Window != DefaultWindow || down.PeakInFlight < 2 {
		t.Fatalf("download not pipelined: window %d, peak %d", down.Window, down.PeakInFlight)
	}
}

// An explicit window against the over-reading server fails with an
// *OutOfStepError wrapping the 406, closes the connection, and does not
// wait for the answers the server lost.
func TestExplicitWindowWithOverReadingServerFailsCleanly(t *testing.T) {
	s := newFake(t)
	s.overRead = overReadSeg
	addr := s.start()
	c := login(t, addr, &Options{Window: 16, ReplyTimeout: 5 * time.Second})
	data := testData(3<<20, 42)
	res, err := c.Upload(context.Background(), "big.bin", bytes.NewReader(data), int64(len(data)), nil)
	var oos *OutOfStepError
	if !errors.As(err, &oos) || oos.Window != 16 || !IsStatus(err, spec.StatusBlockSize) {
		t.Fatalf("err = %v (%T), want an OutOfStepError wrapping a 406", err, err)
	}
	var nr *NoResponseError
	if errors.As(err, &nr) {
		t.Fatalf("err = %v: waited for a lost answer", err)
	}
	if res == nil || res.PeakInFlight < 2 {
		t.Fatalf("result %+v: blocks were not pipelined", res)
	}
	if c.Broken() == nil {
		t.Fatal("connection still marked usable after the server lost step")
	}
}

// UploadFile finishes an upload that lost step on a new connection with
// one block in flight: from the journal, or from the first block without
// one. The second case is a server that advertises pipelining falsely.
func TestUploadFileRetriesInStep(t *testing.T) {
	for _, tc := range []struct {
		name      string
		window    int
		advertise bool
		journal   bool
	}{
		{"explicit window, journal", 8, false, true},
		{"false advertisement, no journal", 0, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFake(t)
			s.overRead, s.advertise = overReadSeg, tc.advertise
			addr := s.start()
			o := &Options{Window: tc.window, ReplyTimeout: 5 * time.Second}
			if tc.journal {
				o.JournalDir = filepath.Join(t.TempDir(), "j")
			}
			c := login(t, addr, o)
			if c.UploadWindow(spec.DefaultBlockSize) < 2 {
				t.Fatalf("upload window %d", c.UploadWindow(spec.DefaultBlockSize))
			}
			data := testData(2<<20+77, 43)
			var progress atomic.Int64
			res, err := c.UploadFile(context.Background(), writeTemp(t, "in", data), "f.bin",
				&TransferOptions{Progress: func(n int64) { progress.Add(n) }})
			if err != nil {
				t.Fatalf("upload: %v", err)
			}
			if !res.Retried || !res.Verified || res.Window != 1 || res.PeakInFlight < 2 {
				t.Fatalf("result %+v", res)
			}
			if progress.Load() != int64(len(data)) {
				t.Fatalf("progress reported %d bytes, want %d", progress.Load(), len(data))
			}
			if got, _ := s.content("f.bin"); !bytes.Equal(got, data) {
				t.Fatal("stored content differs")
			}
			// The client is usable again.
			if _, err := c.FileInfo(context.Background(), "f.bin"); err != nil {
				t.Fatalf("FILE GET after the retry: %v", err)
			}
		})
	}
}

// refserver advertises pipelining (EXT-6): the automatic window keeps
// about 4 MiB of blocks in flight there (AutoWindow), 204 of 20480 bytes. A client given only a token knows
// nothing of the server and sends one block at a time.
func TestAutomaticWindowWithRefserver(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := login(t, addr, &Options{BlockSize: -1}) // many blocks of 20480
	if c.MaxBlockSize() <= 0 {
		t.Fatalf("refserver advertised no max_block_size")
	}
	want := AutoWindow(spec.DefaultBlockSize)
	if !c.Pipelining() || c.UploadWindow(spec.DefaultBlockSize) != want || want != 204 ||
		c.DownloadWindow(spec.DefaultBlockSize) != want || AutoWindow(DefaultBlockSize) != DefaultWindow {
		t.Fatalf("pipelining %v, upload window %d, download window %d, want %d", c.Pipelining(),
			c.UploadWindow(spec.DefaultBlockSize), c.DownloadWindow(spec.DefaultBlockSize), want)
	}
	ctx := context.Background()
	data := testData(3<<20+1, 44)
	up, err := c.Upload(ctx, "big.bin", bytes.NewReader(data), int64(len(data)), nil)
	if err != nil || !up.Verified {
		t.Fatalf("upload: %+v %v", up, err)
	}
	if up.Window != want || up.PeakInFlight < 2 {
		t.Fatalf("upload not pipelined: window %d, peak %d", up.Window, up.PeakInFlight)
	}

	tc, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetToken(c.Token())
	if tc.Pipelining() || tc.UploadWindow(spec.DefaultBlockSize) != 1 {
		t.Fatalf("token-only client: pipelining %v, upload window %d", tc.Pipelining(), tc.UploadWindow(spec.DefaultBlockSize))
	}
	up, err = tc.Upload(ctx, "small.bin", bytes.NewReader(data[:100000]), 100000, nil)
	if err != nil || !up.Verified || up.PeakInFlight != 1 {
		t.Fatalf("token-only upload: %+v %v", up, err)
	}
}

// A refusal of a pipelined block: the answers already due are read within
// a short time, and the connection stays usable when they come; when they
// do not, the refusal is returned (not a timeout) and the connection is
// closed.
func TestRefusalWhilePipelining(t *testing.T) {
	for _, silent := range []bool{false, true} {
		s := newFake(t)
		s.refuseBlock, s.silentRefusal = 3, silent
		addr := s.start()
		c := login(t, addr, &Options{Window: 8, ReplyTimeout: 300 * time.Millisecond})
		data := testData(40*20480, 45)
		res, err := c.Upload(context.Background(), "r.bin", bytes.NewReader(data), int64(len(data)), nil)
		var oos *OutOfStepError
		var nr *NoResponseError
		if !IsStatus(err, spec.StatusWrongOperation) || errors.As(err, &oos) || errors.As(err, &nr) {
			t.Fatalf("silent %v: err = %v, want the 408 refusal", silent, err)
		}
		// How many blocks were actually in flight when the refusal came
		// depends on scheduling; the window is what the client allowed.
		if res.Window != 8 {
			t.Fatalf("silent %v: window %d, want 8", silent, res.Window)
		}
		if silent {
			if c.Broken() == nil {
				t.Fatal("connection kept after the server stopped answering")
			}
			continue
		}
		if _, err := c.Do(context.Background(), spec.NewRequest(spec.OpGet, spec.TypeData).Set(spec.FieldKey, "none")); !IsStatus(err, spec.StatusKeyNotFound) {
			t.Fatalf("connection out of step after a refusal: %v", err)
		}
	}
}

// The blocks of an upload on several connections stay within the windows
// of all of them from the oldest block not yet acknowledged: while one
// connection waits for an answer, the others do not run ahead. The server
// hashes the file in order and would have to keep what they send meanwhile
// in memory, or read it back from its disk.
func TestUploadSpreadOverConnsIsBounded(t *testing.T) {
	s := newFake(t)
	s.blockSize = 1000
	s.stallBlock, s.stallFor = 20, 300*time.Millisecond
	s.advertise = true // several connections upload one key only to such a server
	addr := s.start()
	const window, conns = 4, 2
	c := login(t, addr, &Options{Window: window, Conns: conns})
	data := testData(400*1000+7, 5)
	res, err := c.UploadFile(context.Background(), writeTemp(t, "in", data), "f.bin", nil)
	if err != nil || !res.Verified {
		t.Fatalf("upload: %+v, %v", res, err)
	}
	s.mu.Lock()
	spread, used := s.maxSpread, s.conns
	s.mu.Unlock()
	if used < conns {
		t.Fatalf("%d connections, want %d", used, conns)
	}
	if spread >= window*conns {
		t.Fatalf("a block came %d blocks ahead of the first unanswered one; the windows hold %d", spread, window*conns)
	}
}

// A transfer on several connections deals its blocks in runs of a window
// each, in turn: every connection carries runs of neighbouring blocks,
// upload and download alike.
func TestTransferDealsRuns(t *testing.T) {
	s := newFake(t)
	s.blockSize = 1000
	s.advertise = true
	addr := s.start()
	const window, conns = 4, 2
	c := login(t, addr, &Options{Window: window, Conns: conns})
	data := testData(50*1000+7, 9)
	if res, err := c.UploadFile(context.Background(), writeTemp(t, "in", data), "f.bin", nil); err != nil || !res.Verified {
		t.Fatalf("upload: %+v, %v", res, err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if res, err := c.DownloadFile(context.Background(), "f.bin", out, nil); err != nil || !res.Verified {
		t.Fatalf("download: %+v, %v", res, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.blocksOn) < conns { // the extra one of each transfer is its own
		t.Fatalf("blocks on %d connections, want %d at least", len(s.blocksOn), conns)
	}
	for id, idx := range s.blocksOn {
		for k, i := range idx {
			// Runs start at multiples of the window; within one, each
			// block follows the one before.
			if i%window != 0 && (k == 0 || idx[k-1] != i-1) {
				t.Fatalf("connection %d: block %d after %v: not in a run of %d", id, i, idx[max(0, k-3):k], window)
			}
		}
	}
}

// A file whose first block is answered fast enough that one window
// carries it faster than it is hashed goes over one connection, upload
// and download, even with Conns 2: the other's blocks would only wait for
// the first's at both ends.
func TestOneConnectionWhereItIsEnough(t *testing.T) {
	s := newFake(t)
	s.blockSize = 1000
	s.advertise = true
	addr := s.start()
	const window = 4
	c := login(t, addr, &Options{Window: window, Conns: 2})
	// Whatever the machine's speed, the window is enough.
	c.connRate = 1
	data := testData(100*1000+7, 31)
	up, err := c.UploadFile(context.Background(), writeTemp(t, "in", data), "f.bin", nil)
	if err != nil || !up.Verified || up.Conns != 1 {
		t.Fatalf("upload: %+v, %v; want it verified over 1 connection", up, err)
	}
	out := filepath.Join(t.TempDir(), "out")
	down, err := c.DownloadFile(context.Background(), "f.bin", out, nil)
	if err != nil || !down.Verified || down.Conns != 1 {
		t.Fatalf("download: %+v, %v; want it verified over 1 connection", down, err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Fatal("the file downloaded differs")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.blocksOn) != 1 {
		t.Fatalf("blocks on %d connections, want all on the first", len(s.blocksOn))
	}
	for _, idx := range s.blocksOn {
		if want := 2 * 101; len(idx) != want {
			t.Fatalf("%d blocks on the connection, want %d", len(idx), want)
		}
	}
}

// A first block slow to be answered (a long round trip, a slow store)
// means one window cannot carry the file fast: the blocks go over every
// connection.
func TestMoreConnectionsWhereTheFirstBlockIsSlow(t *testing.T) {
	s := newFake(t)
	s.blockSize = 1000
	s.stallBlock, s.stallFor = 0, 50*time.Millisecond
	s.advertise = true
	addr := s.start()
	const window, conns = 4, 2
	c := login(t, addr, &Options{Window: window, Conns: conns})
	data := testData(100*1000+7, 32)
	up, err := c.UploadFile(context.Background(), writeTemp(t, "in", data), "f.bin", nil)
	if err != nil || !up.Verified || up.Conns != conns {
		t.Fatalf("upload: %+v, %v; want it verified over %d connections", up, err, conns)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.blocksOn) != conns {
		t.Fatalf("blocks on %d connections, want %d", len(s.blocksOn), conns)
	}
}

func TestOneConnEnough(t *testing.T) {
	for _, tc := range []struct {
		took     time.Duration
		inFlight int64
		want     bool
	}{
		{0, 4 << 20, false}, // not measured
		{100 * time.Microsecond, 4 << 20, true},
		{4 * time.Millisecond, 4 << 20, true},
		{5 * time.Millisecond, 4 << 20, false},
		{100 * time.Microsecond, 20480, false},  // one block in flight
		{20 * time.Millisecond, 4 << 20, false}, // a long round trip
	} {
		if got := oneConnEnough(tc.took, tc.inFlight, oneConnRate); got != tc.want {
			t.Errorf("oneConnEnough(%v, %d) = %v, want %v", tc.took, tc.inFlight, got, tc.want)
		}
	}
}

// An upload to a server that did not advertise pipelining goes over one
// connection whatever Conns says: the course server's record of an
// upload's blocks races between connections uploading one key (STEP.md
// A.21), and can crash the thread of one of them.
func TestUploadToCourseLikeServerUsesOneConnection(t *testing.T) {
	s := newFake(t)
	s.blockSize = 1000
	addr := s.start()
	c := login(t, addr, &Options{Conns: 2})
	data := testData(50*1000+7, 33)
	up, err := c.UploadFile(context.Background(), writeTemp(t, "in", data), "f.bin", nil)
	if err != nil || !up.Verified || up.Window != 1 || up.Conns != 1 {
		t.Fatalf("upload: %+v, %v; want it verified, one block at a time, over 1 connection", up, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.blocksOn) != 1 {
		t.Fatalf("blocks on %d connections, want 1", len(s.blocksOn))
	}
}

// A first block refused on a transfer that may use several connections
// ends it with the refusal at once: nothing waits for an answer that
// will not say how many connections to use.
func TestFirstBlockRefusedEndsTheProbe(t *testing.T) {
	s := newFake(t)
	s.blockSize = 1000
	s.advertise = true
	s.refuseBlock = 0
	addr := s.start()
	c := login(t, addr, &Options{Window: 4, Conns: 2, ReplyTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.UploadFile(ctx, writeTemp(t, "in", testData(50*1000, 34)), "f.bin", nil)
	if !IsStatus(err, 408) {
		t.Fatalf("upload whose first block is refused with 408: %v, want that refusal", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the upload waited for its deadline")
	}
}
