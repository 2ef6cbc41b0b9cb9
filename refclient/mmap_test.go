package refclient

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stepkit/stepkit/refserver"
)

// Pages of a mapping that an upload let go of read the file again.
func TestDroppedMappingStillReadsTheFile(t *testing.T) {
	data := testData(1<<20, 21)
	f, err := os.Open(writeTemp(t, "dropped", data))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mapped, unmap := mapFile(f, int64(len(data)))
	defer unmap()
	if mapped == nil {
		t.Skip("files cannot be mapped here")
	}
	if !bytes.Equal(mapped, data) {
		t.Fatal("the mapping differs from the file")
	}
	dropMapped(mapped[:512<<10])
	if !bytes.Equal(mapped, data) {
		t.Fatal("after dropMapped, the mapping differs from the file")
	}
}

// An upload long enough to let go of the pages behind it, on one
// connection and on several, stores the file as it is.
func TestUploadDropsMappingBehind(t *testing.T) {
	root := t.TempDir()
	addr, _ := refserver.StartTest(t, refserver.Config{Root: root})
	// Windows of 2 blocks of 20480 bytes: the pages more than a few
	// hundred KiB behind are let go of, 16 MiB at a time.
	data := bytes.Repeat(testData(1<<20, 22), 2*dropStep>>20+4)[:2*dropStep+3<<20+7]
	for i := 0; i < len(data); i += 1 << 20 {
		data[i] = byte(i >> 20) // every MiB differs
	}
	path := writeTemp(t, "long", data)
	for _, conns := range []int{1, 2} {
		c := login(t, addr, &Options{BlockSize: 20480, Window: 2, Conns: conns})
		key := "long-" + string(rune('0'+conns))
		up, err := c.UploadFile(context.Background(), path, key, nil)
		if err != nil || !up.Verified {
			t.Fatalf("conns %d: upload: %+v %v", conns, up, err)
		}
		got, err := os.ReadFile(filepath.Join(root, "file", "2362202", key))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("conns %d: the stored file differs", conns)
		}
	}
}
