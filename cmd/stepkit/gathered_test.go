package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/stepkit/stepkit/refserver/storage/s3/weedtest"
)

// switchRelay forwards each connection made to it to the address in
// target at the time: one address for a client's journal, whichever
// server stands behind it.
func switchRelay(t *testing.T, target *atomic.Value) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.DialTimeout("tcp", target.Load().(string), 5*time.Second)
				if err != nil {
					return
				}
				defer s.Close()
				go func() { io.Copy(s, c); s.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, s)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestGatheredUploadSurvivesKill: "stepkit upload" through a server on
// SeaweedFS has its blocks gathered into multipart parts; the server is
// killed (SIGKILL) once three parts are stored, while others are being
// gathered; the same command again, now reaching a second server, resumes
// from its journal: the second server finds the stored parts, and the file
// is completed from parts, whole, with nothing left behind.
func TestGatheredUploadSurvivesKill(t *testing.T) {
	w := weedtest.Start(t)
	dir := t.TempDir()
	const prefix = "gathered/"
	storage := []string{"--storage", "s3", "--s3-endpoint", w.Endpoint, "--s3-bucket", w.Bucket, "--s3-prefix", prefix}
	procA, addrA, exitedA, _ := startServeWith(t, dir, w.Env(), storage...)
	_, addrB, _, _ := startServeWith(t, dir, w.Env(), storage...)
	var target atomic.Value
	target.Store(addrA)
	relay := switchRelay(t, &target)

	const size = 96 << 20
	path, data := randomFile(t, dir, "video.mp4", size, 31)
	args := []string{"upload", path, "--json", "--timeout", "10s", "--server", relay, "--user", "2362202"}
	up := stepkitCmd(t, context.Background(), dir, args...)
	if err := up.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	upDone := make(chan error, 1)
	go func() { upDone <- up.cmd.Wait() }()
	records := func() int {
		n := 0
		for o := range w.Client().ListObjects(context.Background(), w.Bucket,
			minio.ListObjectsOptions{Prefix: prefix + "tmp/2362202/video.mp4/", Recursive: true}) {
			if o.Err == nil && strings.Contains(o.Key, "/part-") {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(2 * time.Minute); records() < 3; {
		select {
		case err := <-upDone:
			t.Fatalf("upload ended before the kill (%v): %s %s", err, up.stdout.String(), up.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no part stored: %s", up.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	procA.cmd.Process.Signal(syscall.SIGKILL)
	<-exitedA
	target.Store(addrB)
	if err := <-upDone; err == nil {
		t.Fatalf("the upload survived the kill of its server: %s", up.stdout.String())
	}

	code, out, errs := runFor(t, dir, 5*time.Minute, args...)
	var rep uploadReport
	if code != exitOK || json.Unmarshal([]byte(out), &rep) != nil || !rep.Verified || rep.MD5 != md5Of(data) {
		t.Fatalf("resumed upload: exit %d %q %s", code, out, errs)
	}
	if !rep.Resumed || rep.BlocksSent >= rep.TotalBlock {
		t.Fatalf("the upload did not resume: %d of %d blocks sent again (resumed %v)", rep.BlocksSent, rep.TotalBlock, rep.Resumed)
	}
	obj, err := w.Client().GetObject(context.Background(), w.Bucket, prefix+"file/2362202/video.mp4", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	st, _ := obj.Stat()
	obj.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object in the bucket: %d bytes, %v", len(got), err)
	}
	if !strings.Contains(st.ETag, "-") {
		t.Fatalf("object ETag %q: not made from parts", st.ETag)
	}
	for o := range w.Client().ListObjects(context.Background(), w.Bucket, minio.ListObjectsOptions{Prefix: prefix + "tmp/", Recursive: true}) {
		t.Errorf("left behind: %s", o.Key)
	}
	for mu := range w.Client().ListIncompleteUploads(context.Background(), w.Bucket, prefix, true) {
		t.Errorf("multipart upload left behind: %s %s", mu.Key, mu.UploadID)
	}
	copyPath := filepath.Join(dir, "video-copy.mp4")
	code, out, errs = runFor(t, dir, 2*time.Minute, "download", "video.mp4", "-o", copyPath, "--server", relay, "--user", "2362202")
	if got, err := os.ReadFile(copyPath); code != exitOK || err != nil || !bytes.Equal(got, data) {
		t.Fatalf("download: exit %d %q %s", code, out, errs)
	}
}
