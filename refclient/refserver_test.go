package refclient

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

func TestRefserverRoundTrips(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	sizes := []int{0, 1, 20479, 20480, 20481, 5<<20 + 3}
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"sequential", Options{Window: 1, BlockSize: -1}},
		{"window16", Options{Window: 16, BlockSize: -1}},
		{"conns3", Options{Window: 2, Conns: 3, BlockSize: -1}},
		// The client asks for its own block size (EXT-7). One block in
		// flight is too little for one connection to do.
		{"negotiated", Options{Window: 1, Conns: 2}},
		{"negotiated40000", Options{Window: 4, BlockSize: 40000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.JournalDir = t.TempDir()
			c := login(t, addr, &o)
			ctx := context.Background()
			wantBS := int64(spec.DefaultBlockSize)
			switch {
			case o.BlockSize > 0:
				wantBS = o.BlockSize
			case o.BlockSize == 0:
				wantBS = DefaultBlockSize
			}
			for i, size := range sizes {
				data := testData(size, uint64(100+i))
				key := tc.name + "-文件-" + string(rune('a'+i)) + ".bin"
				up, err := c.UploadFile(ctx, writeTemp(t, "in", data), key, nil)
				if err != nil {
					t.Fatalf("size %d: upload: %v", size, err)
				}
				upBS := wantBS
				if o.BlockSize == 0 { // small files are cut finer
					upBS = min(wantBS, max(spec.DefaultBlockSize, int64(size)/DefaultWindow))
				}
				if !up.Verified || up.Plan.Key != key || up.Plan.TotalBlock != spec.TotalBlocks(int64(size), upBS) ||
					size > 0 && up.Plan.BlockSize != upBS {
					t.Fatalf("size %d: %+v", size, up)
				}
				dest := filepath.Join(t.TempDir(), "下载.bin")
				down, err := c.DownloadFile(ctx, key, dest, nil)
				if err != nil || !down.Verified || down.Plan.BlockSize != wantBS {
					t.Fatalf("size %d: download: %+v %v", size, down, err)
				}
				if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
					t.Fatalf("size %d: content differs", size)
				}
				if err := c.DeleteFile(ctx, key); err != nil {
					t.Fatalf("size %d: delete: %v", size, err)
				}
				if _, err := c.FileInfo(ctx, key); !IsStatus(err, spec.StatusKeyNotFound) {
					t.Fatalf("size %d: FILE GET after delete: %v", size, err)
				}
			}
			if ents, _ := os.ReadDir(o.JournalDir); len(ents) != 0 {
				t.Fatalf("journals left: %v", ents)
			}
		})
	}
}

func TestRefserverBlockSize12800(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{BlockSize: 12800})
	c := login(t, addr, &Options{Window: 8, BlockSize: -1})
	data := testData(100000, 11)
	up, err := c.Upload(context.Background(), "k", bytes.NewReader(data), int64(len(data)), nil)
	if err != nil || up.Plan.BlockSize != 12800 || up.Plan.TotalBlock != 8 || !up.Verified {
		t.Fatalf("%+v %v", up, err)
	}
	var buf bytes.Buffer
	if _, err := c.Download(context.Background(), "k", &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatal(err)
	}
}

func TestRefserverRefusals(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := login(t, addr, nil)
	ctx := context.Background()
	if _, err := c.Upload(ctx, "dup", bytes.NewReader([]byte("x")), 1, nil); err != nil {
		t.Fatal(err)
	}
	_, err := c.Upload(ctx, "dup", bytes.NewReader([]byte("x")), 1, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != spec.StatusKeyExists || se.Op != spec.OpSave || se.Message == "" {
		t.Fatalf("second SAVE: %v", err)
	}
	if _, err := c.DownloadFile(ctx, "missing", filepath.Join(t.TempDir(), "x"), nil); !IsStatus(err, spec.StatusKeyNotFound) {
		t.Fatalf("download of a missing key: %v", err)
	}
	if _, err := c.Upload(ctx, "a/b", bytes.NewReader([]byte("x")), 1, nil); !IsStatus(err, spec.StatusFieldMissing) {
		t.Fatalf("hostile key: %v", err)
	}
	// A refused request leaves the connection usable.
	if _, err := c.FileInfo(ctx, "dup"); err != nil {
		t.Fatal(err)
	}
	// A token the server did not issue.
	c2, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetToken("bm90LmEudG9rZW4=")
	if _, err := c2.FileInfo(ctx, "dup"); !IsStatus(err, spec.StatusTokenError) {
		t.Fatalf("forged token: %v", err)
	}
}

func TestRefserverDataNonASCII(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := login(t, addr, nil)
	ctx := context.Background()
	doc := spec.NewMessage().Set("名字", "Zoë").Set("n", 42)
	key, err := c.SaveData(ctx, "键 ü/", doc)
	if !IsStatus(err, spec.StatusFieldMissing) {
		t.Fatalf("key with '/': %q %v", key, err)
	}
	key, err = c.SaveData(ctx, "键 ü", doc)
	if err != nil || key != "键 ü" {
		t.Fatalf("%q %v", key, err)
	}
	got, err := c.GetData(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got.String("名字"); v != "Zoë" {
		t.Fatalf("document %s", got.JSONString())
	}
	gen, err := c.SaveData(ctx, "", doc)
	if err != nil || len(gen) != 36 {
		t.Fatalf("server-chosen key %q: %v", gen, err)
	}
	if err := c.DeleteData(ctx, key); err != nil {
		t.Fatal(err)
	}
}

func TestRefserverResume(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	data := testData(40*20480+7, 12)
	jdir := t.TempDir()
	opts := &Options{Window: 8, JournalDir: jdir, BlockSize: -1}

	proxy := cutProxy(t, addr, 15*20600)
	path := writeTemp(t, "r.bin", data)
	// One block at a time before the cut: the blocks sent are acknowledged.
	first := &Options{Window: 1, JournalDir: jdir, BlockSize: -1}
	c := login(t, proxy, first)
	if _, err := c.UploadFile(context.Background(), path, "r", nil); err == nil {
		t.Fatal("upload through the cutting proxy succeeded")
	}
	c = login(t, proxy, opts)
	up, err := c.UploadFile(context.Background(), path, "r", nil)
	if err != nil || !up.Resumed || !up.Verified || up.Sent >= 41 {
		t.Fatalf("resumed upload: %+v %v", up, err)
	}

	proxy2 := cutProxy(t, addr, 3000)
	dest := filepath.Join(t.TempDir(), "r.out")
	c = login(t, proxy2, first)
	if _, err := c.DownloadFile(context.Background(), "r", dest, nil); err == nil {
		t.Fatal("download through the cutting proxy succeeded")
	}
	c = login(t, proxy2, opts)
	down, err := c.DownloadFile(context.Background(), "r", dest, nil)
	if err != nil || !down.Resumed || !down.Verified || down.Received >= 41 {
		t.Fatalf("resumed download: %+v %v", down, err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
}
