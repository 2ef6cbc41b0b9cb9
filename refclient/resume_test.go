package refclient

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// interruptedUpload uploads data through a proxy that cuts the first
// connection after cutAt bytes, and checks that the upload failed and left
// a journal behind.
func interruptedUpload(t *testing.T, s *fakeServer, data []byte, cutAt int64) (proxy, path, jdir string, opts *Options) {
	t.Helper()
	addr := s.start()
	proxy = cutProxy(t, addr, cutAt)
	jdir = t.TempDir()
	path = writeTemp(t, "big.bin", data)
	// One block at a time: every block before the cut is acknowledged.
	c := login(t, proxy, &Options{Window: 1, JournalDir: jdir})
	opts = &Options{Window: 4, JournalDir: jdir}
	if _, err := c.UploadFile(context.Background(), path, "big", nil); err == nil {
		t.Fatal("upload through the cutting proxy succeeded")
	}
	if ents, _ := os.ReadDir(jdir); len(ents) != 1 {
		t.Fatalf("journal entries after the cut: %d", len(ents))
	}
	return proxy, path, jdir, opts
}

func TestUploadResumesAfterCut(t *testing.T) {
	s := newFake(t)
	data := testData(30*20480+99, 5)
	proxy, path, jdir, opts := interruptedUpload(t, s, data, 12*20600)
	s.mu.Lock()
	before := s.uploads
	s.mu.Unlock()
	if before == 0 || before >= 30 {
		t.Fatalf("blocks stored before the cut: %d", before)
	}
	c := login(t, proxy, opts)
	res, err := c.UploadFile(context.Background(), path, "big", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || !res.Verified || res.Sent >= 31 || res.Sent == 0 {
		t.Fatalf("resume result %+v", res)
	}
	s.mu.Lock()
	saves := s.saves
	s.mu.Unlock()
	if saves != 1 {
		t.Fatalf("FILE SAVE sent %d times; a resume must not plan again", saves)
	}
	if got, _ := s.content("big"); !bytes.Equal(got, data) {
		t.Fatal("server content differs after the resumed upload")
	}
	if ents, _ := os.ReadDir(jdir); len(ents) != 0 {
		t.Fatalf("journal left after success: %v", ents)
	}
}

func TestUploadRestartIgnoresJournal(t *testing.T) {
	s := newFake(t)
	data := testData(20*20480, 6)
	proxy, path, _, opts := interruptedUpload(t, s, data, 8*20600)
	c := login(t, proxy, opts)
	res, err := c.UploadFile(context.Background(), path, "big", &TransferOptions{Restart: true})
	if err != nil || res.Resumed || res.Sent != 20 {
		t.Fatalf("restart: %+v, %v", res, err)
	}
	if s.saves != 2 {
		t.Fatalf("saves = %d, want a fresh plan", s.saves)
	}
}

func TestUploadChangedFileStartsAfresh(t *testing.T) {
	s := newFake(t)
	data := testData(20*20480, 7)
	proxy, path, _, opts := interruptedUpload(t, s, data, 8*20600)
	data = append(data, 'x')
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	c := login(t, proxy, opts)
	res, err := c.UploadFile(context.Background(), path, "big", nil)
	if err != nil || res.Resumed || !res.Verified {
		t.Fatalf("changed file: %+v, %v", res, err)
	}
	if got, _ := s.content("big"); !bytes.Equal(got, data) {
		t.Fatal("server holds the old content")
	}
}

func TestUploadResumeFallsBackWhenServerForgot(t *testing.T) {
	s := newFake(t)
	data := testData(20*20480, 8)
	proxy, path, _, opts := interruptedUpload(t, s, data, 8*20600)
	s.mu.Lock()
	delete(s.files, "big") // the server lost the upload in progress
	s.mu.Unlock()
	c := login(t, proxy, opts)
	res, err := c.UploadFile(context.Background(), path, "big", nil)
	if err != nil || res.Resumed || !res.Verified {
		t.Fatalf("fallback: %+v, %v", res, err)
	}
	if got, _ := s.content("big"); !bytes.Equal(got, data) {
		t.Fatal("server content differs")
	}
}

func TestDownloadResumesAfterCut(t *testing.T) {
	s := newFake(t)
	data := testData(40*20480+1, 10)
	s.put("big", data)
	addr := s.start()
	proxy := cutProxy(t, addr, 2500) // about a dozen DOWNLOAD requests
	jdir := t.TempDir()
	opts := &Options{Window: 4, JournalDir: jdir}
	dest := filepath.Join(t.TempDir(), "big.out")

	c := login(t, proxy, &Options{Window: 1, JournalDir: jdir})
	if _, err := c.DownloadFile(context.Background(), "big", dest, nil); err == nil {
		t.Fatal("download through the cutting proxy succeeded")
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("destination exists before verification")
	}
	if _, err := os.Stat(PartPath(dest)); err != nil {
		t.Fatalf("partial file gone: %v", err)
	}
	c = login(t, proxy, opts)
	res, err := c.DownloadFile(context.Background(), "big", dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || !res.Verified || res.Received == 0 || res.Received >= 41 {
		t.Fatalf("resume result %+v", res)
	}
	got, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded content differs: %v", err)
	}
	if ents, _ := os.ReadDir(jdir); len(ents) != 0 {
		t.Fatalf("journal left after success: %v", ents)
	}
}

func TestJournalTornLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.journal")
	j, err := createJournal(p, journalHeader{Op: "upload", Key: "k", Size: 100, BlockSize: 10, TotalBlock: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int64{0, 3, 3, 9} {
		if err := j.ack(i); err != nil {
			t.Fatal(err)
		}
	}
	j.close()
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("1") // a line torn by a crash (the start of "12", say): ignored
	f.Close()
	j2 := loadJournal(p)
	if j2 == nil {
		t.Fatal("journal not loaded")
	}
	defer j2.close()
	if !j2.has(0) || !j2.has(3) || !j2.has(9) || j2.has(2) || j2.has(1) {
		t.Fatalf("acked = %v", j2.acked)
	}
	if err := j2.ack(5); err != nil {
		t.Fatal(err)
	}
	j2.close()
	j3 := loadJournal(p)
	if j3 == nil || !j3.has(5) {
		t.Fatal("ack after reload lost")
	}
	j3.close()
	os.WriteFile(p, []byte("not json\n1\n"), 0o600)
	if loadJournal(p) != nil {
		t.Fatal("corrupt header accepted")
	}
}
