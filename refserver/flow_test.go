package refserver_test

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver"
)

// TestCourseClientFlow is a client written only from STEP-REFERENCE.md §7,
// with its frames built by hand: LOGIN, SAVE, UPLOAD every block, compare
// the MD5; then download the file back with GET and DOWNLOAD.
func TestCourseClientFlow(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))

	exchange := func(obj map[string]any, bin []byte) (map[string]any, []byte) {
		t.Helper()
		js, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		frame := make([]byte, 8, 8+len(js)+len(bin))
		binary.BigEndian.PutUint32(frame[0:4], uint32(len(js)))
		binary.BigEndian.PutUint32(frame[4:8], uint32(len(bin)))
		frame = append(append(frame, js...), bin...)
		if _, err := nc.Write(frame); err != nil {
			t.Fatal(err)
		}
		var hdr [8]byte
		if _, err := io.ReadFull(nc, hdr[:]); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[0:4])+binary.BigEndian.Uint32(hdr[4:8]))
		if _, err := io.ReadFull(nc, body); err != nil {
			t.Fatal(err)
		}
		jl := binary.BigEndian.Uint32(hdr[0:4])
		var resp map[string]any
		if err := json.Unmarshal(body[:jl], &resp); err != nil {
			t.Fatalf("response JSON: %v", err)
		}
		return resp, body[jl:]
	}
	status := func(m map[string]any) int {
		f, _ := m["status"].(float64)
		return int(f)
	}

	id := "2362202"
	sum := md5.Sum([]byte(id))
	resp, _ := exchange(map[string]any{"type": "AUTH", "operation": "LOGIN", "direction": "REQUEST",
		"username": id, "password": hex.EncodeToString(sum[:])}, nil)
	if status(resp) != 200 {
		t.Fatalf("LOGIN: %v", resp)
	}
	token := resp["token"].(string)

	file := bytes.Repeat([]byte("course client flow "), 4000) // 76000 bytes: 4 blocks
	resp, _ = exchange(map[string]any{"type": "FILE", "operation": "SAVE", "direction": "REQUEST",
		"token": token, "size": len(file), "key": "report.bin"}, nil)
	if status(resp) != 200 {
		t.Fatalf("SAVE: %v", resp)
	}
	bs := int(resp["block_size"].(float64))
	total := int(resp["total_block"].(float64))
	if bs != 20480 || total != 4 {
		t.Fatalf("plan: block_size %d total_block %d", bs, total)
	}
	var md5s string
	for i := 0; i < total; i++ {
		end := min((i+1)*bs, len(file))
		resp, _ = exchange(map[string]any{"type": "FILE", "operation": "UPLOAD", "direction": "REQUEST",
			"token": token, "key": "report.bin", "block_index": i}, file[i*bs:end])
		if status(resp) != 200 {
			t.Fatalf("UPLOAD %d: %v", i, resp)
		}
		if s, ok := resp["md5"].(string); ok {
			md5s = s
		}
	}
	local := md5.Sum(file)
	if md5s != hex.EncodeToString(local[:]) {
		t.Fatalf("server md5 %q, local %x", md5s, local)
	}

	resp, _ = exchange(map[string]any{"type": "FILE", "operation": "GET", "direction": "REQUEST",
		"token": token, "key": "report.bin"}, nil)
	if status(resp) != 200 || resp["md5"] != md5s || int(resp["size"].(float64)) != len(file) {
		t.Fatalf("GET: %v", resp)
	}
	var got []byte
	for i := 0; i < int(resp["total_block"].(float64)); i++ {
		r, bin := exchange(map[string]any{"type": "FILE", "operation": "DOWNLOAD", "direction": "REQUEST",
			"token": token, "key": "report.bin", "block_index": i}, nil)
		if status(r) != 200 || int(r["size"].(float64)) != len(bin) {
			t.Fatalf("DOWNLOAD %d: %v (%d bytes)", i, r, len(bin))
		}
		got = append(got, bin...)
	}
	if !bytes.Equal(got, file) {
		t.Fatalf("downloaded %d bytes differ from the %d uploaded", len(got), len(file))
	}
}
