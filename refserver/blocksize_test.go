package refserver_test

import (
	"bytes"
	"testing"

	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// A course-style client knows nothing of EXT-7: it ignores max_block_size
// in the LOGIN response, sends no block_size, and cuts 20480-byte blocks
// whatever the plan says. The server must plan and serve exactly as
// without the extension.
func TestBlockSizeCourseClientSeesNothing(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := dial(t, addr)
	login := c.do(req(spec.OpLogin, spec.TypeAuth, "username", "2362202", "password", md5hex([]byte("2362202"))))
	wantStatus(t, login, 200)
	if n, err := login.Int(spec.FieldMaxBlockSize); err != nil || n != spec.DefaultMaxBinary {
		t.Fatalf("max_block_size %d (%v): %s", n, err, login.JSONString())
	}
	c.token, _ = login.Token()

	data := pattern(3*spec.DefaultBlockSize+5, 3)
	plan := c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "course.bin", "size", len(data)))
	wantStatus(t, plan, 200)
	if bs, _ := plan.BlockSize(); bs != spec.DefaultBlockSize {
		t.Fatalf("plan without block_size: %s", plan.JSONString())
	}
	// The course client's own blocks: 20480 bytes, whatever the plan.
	var sum string
	for i := 0; i*spec.DefaultBlockSize < len(data); i++ {
		m := c.authed(spec.OpUpload, spec.TypeFile, "key", "course.bin", "block_index", i)
		m.Binary = data[i*spec.DefaultBlockSize : min((i+1)*spec.DefaultBlockSize, len(data))]
		resp := c.do(m)
		wantStatus(t, resp, 200)
		sum, _ = resp.MD5()
	}
	if sum != md5hex(data) {
		t.Fatalf("md5 %s, want %s", sum, md5hex(data))
	}
	get := c.do(c.authed(spec.OpGet, spec.TypeFile, "key", "course.bin"))
	wantStatus(t, get, 200)
	if bs, _ := get.BlockSize(); bs != spec.DefaultBlockSize {
		t.Fatalf("download plan without block_size: %s", get.JSONString())
	}
	if got := c.download("course.bin"); !bytes.Equal(got, data) {
		t.Fatal("downloaded file differs")
	}
}

// A client that asks gets the block_size it asked for, up to the maximum,
// in upload and download plans, and DOWNLOAD reads blocks of the size the
// request names.
func TestBlockSizeAsked(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := dial(t, addr)
	c.login("asker")
	data := pattern(5*100000+123, 9)
	plan := c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "big.bin", "size", len(data), "block_size", 100000))
	wantStatus(t, plan, 200)
	if bs, _ := plan.BlockSize(); bs != 100000 {
		t.Fatalf("upload plan: %s", plan.JSONString())
	}
	if total, _ := plan.TotalBlock(); total != 6 {
		t.Fatalf("upload plan: %s", plan.JSONString())
	}
	// A block of the course size is not a block of this plan.
	m := c.authed(spec.OpUpload, spec.TypeFile, "key", "big.bin", "block_index", 0)
	m.Binary = data[:spec.DefaultBlockSize]
	wantStatus(t, c.do(m), 406)
	if sum := c.upload("big.bin", data); sum != md5hex(data) {
		t.Fatalf("md5 %s, want %s", sum, md5hex(data))
	}

	for _, tc := range []struct{ ask, want int64 }{{50000, 50000}, {7, 7}, {1 << 30, spec.DefaultMaxBinary}} {
		ask := tc.ask
		get := c.do(c.authed(spec.OpGet, spec.TypeFile, "key", "big.bin", "block_size", ask))
		wantStatus(t, get, 200)
		bs, _ := get.BlockSize()
		total, _ := get.TotalBlock()
		if bs != tc.want || total != spec.TotalBlocks(int64(len(data)), bs) {
			t.Fatalf("asked %d: download plan %s", ask, get.JSONString())
		}
		if total > 8 {
			total = 8 // enough to see the offsets
		}
		var got []byte
		for i := int64(0); i < total; i++ {
			resp := c.do(c.authed(spec.OpDownload, spec.TypeFile, "key", "big.bin", "block_index", i, "block_size", ask))
			wantStatus(t, resp, 200)
			got = append(got, resp.Binary...)
		}
		if want := data[:min(int64(len(data)), total*bs)]; !bytes.Equal(got, want) {
			t.Fatalf("asked %d: blocks differ from the file's bytes", ask)
		}
	}
	// Past the end of a plan of this size: 405 as for any plan.
	wantStatus(t, c.do(c.authed(spec.OpDownload, spec.TypeFile, "key", "big.bin", "block_index", 6, "block_size", 100000)), 405)
}

// A block_size that is not a positive integer is refused with 410, and
// the connection stays usable.
func TestBlockSizeBadValues(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := dial(t, addr)
	c.login("bad")
	c.upload("f", pattern(1000, 1))
	for _, bad := range []any{0, -5, "20480", 1.5} {
		resp := c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "g", "size", 10, "block_size", bad))
		wantStatus(t, resp, 410)
		wantOpType(t, resp, spec.OpSave, spec.TypeFile)
		wantStatus(t, c.do(c.authed(spec.OpGet, spec.TypeFile, "key", "f", "block_size", bad)), 410)
		wantStatus(t, c.do(c.authed(spec.OpDownload, spec.TypeFile, "key", "f", "block_index", 0, "block_size", bad)), 410)
	}
	// Nothing was planned by the refused SAVEs.
	wantStatus(t, c.do(c.authed(spec.OpUpload, spec.TypeFile, "key", "g", "block_index", 0)), 408)
	if got := c.download("f"); !bytes.Equal(got, pattern(1000, 1)) {
		t.Fatal("file differs after the refusals")
	}
}

// With the extension off (MaxBlockSize < 0), nothing is advertised and a
// block_size in a request changes nothing, as on the course server.
func TestBlockSizeExtensionOff(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{MaxBlockSize: -1, BlockSize: 12800})
	c := dial(t, addr)
	login := c.do(req(spec.OpLogin, spec.TypeAuth, "username", "off", "password", md5hex([]byte("off"))))
	wantStatus(t, login, 200)
	if login.Has(spec.FieldMaxBlockSize) {
		t.Fatalf("advertised with the extension off: %s", login.JSONString())
	}
	c.token, _ = login.Token()
	plan := c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", 100000, "block_size", 65536))
	wantStatus(t, plan, 200)
	if bs, _ := plan.BlockSize(); bs != 12800 {
		t.Fatalf("plan: %s", plan.JSONString())
	}
}
