package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/stepkit/stepkit/refserver/storage/s3/weedtest"
)

// haproxy runs HAProxy in TCP mode, round-robin over backends, on a port
// of 127.0.0.1 the kernel picks. Without haproxy the test is skipped,
// except under CI=true, where it fails.
func haproxy(t *testing.T, backends ...string) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("haproxy not found (CI=true): apt-get install haproxy")
		}
		t.Skip("haproxy not found: apt-get install haproxy to run the load-balanced test")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var servers strings.Builder
	for i, b := range backends {
		fmt.Fprintf(&servers, "  server s%d %s check inter 200ms fall 1 rise 1\n", i, b)
	}
	cfg := fmt.Sprintf(`global
  maxconn 4096
defaults
  mode tcp
  timeout connect 2s
  timeout client 5m
  timeout server 5m
  retries 3
  option redispatch
frontend step
  bind %s
  default_backend servers
backend servers
  balance roundrobin
%s`, addr, servers.String())
	dir := t.TempDir()
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var out lockedBuffer
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	for deadline := time.Now().Add(10 * time.Second); ; {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			nc.Close()
			return addr
		}
		select {
		case <-done:
			t.Fatalf("haproxy exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy does not accept on %s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runFor runs "stepkit args..." to the end, with a deadline of its own.
func runFor(t *testing.T, dir string, timeout time.Duration, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	p := stepkitCmd(t, ctx, dir, args...)
	err := p.cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("stepkit %v: %v", args, err)
	}
	return p.cmd.ProcessState.ExitCode(), p.stdout.String(), p.stderr.String()
}

// TestScaleOut runs two stepkit serve processes on one SeaweedFS bucket
// behind HAProxy: the conformance suite, uploads and downloads go through
// HAProxy; one server is killed mid-upload and the upload resumes through
// the other; 200 clients at once get no error.
func TestScaleOut(t *testing.T) {
	w := weedtest.Start(t)
	dir := t.TempDir()
	storage := []string{"--storage", "s3", "--s3-endpoint", w.Endpoint, "--s3-bucket", w.Bucket, "--s3-prefix", "scale/"}
	procA, addrA, exitedA, _ := startServeWith(t, dir, w.Env(), storage...)
	_, addrB, _, _ := startServeWith(t, dir, w.Env(), storage...)
	lb := haproxy(t, addrA, addrB)
	conn := []string{"--server", lb, "--user", "2362202"}

	t.Run("Conformance", func(t *testing.T) {
		code, out, errs := runFor(t, dir, 10*time.Minute, "conformance", "--target", lb)
		if code != exitOK || !strings.Contains(out, "CONFORMANT") {
			t.Fatalf("conformance through HAProxy: exit %d\n%s\n%s", code, out, errs)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		t.Log(lines[len(lines)-1])
	})

	t.Run("UploadDownload", func(t *testing.T) {
		path, data := randomFile(t, dir, "notes.pdf", 50*20480+99, 7)
		code, out, errs := runFor(t, dir, 2*time.Minute, append([]string{"upload", path, "--json", "--conns", "4"}, conn...)...)
		var up uploadReport
		if code != exitOK || json.Unmarshal([]byte(out), &up) != nil || !up.Verified || up.MD5 != md5Of(data) {
			t.Fatalf("upload: exit %d %q %s", code, out, errs)
		}
		copyPath := filepath.Join(dir, "notes-copy.pdf")
		code, out, errs = runFor(t, dir, 2*time.Minute, append([]string{"download", "notes.pdf", "-o", copyPath, "--conns", "4"}, conn...)...)
		if got, err := os.ReadFile(copyPath); code != exitOK || err != nil || !bytes.Equal(got, data) {
			t.Fatalf("download: exit %d %q %s", code, out, errs)
		}
		// The file is one object, readable with any S3 client.
		obj, err := w.Client().GetObject(context.Background(), w.Bucket, "scale/file/2362202/notes.pdf", minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(obj); err != nil || !bytes.Equal(buf.Bytes(), data) {
			t.Fatalf("object in the bucket differs (%v)", err)
		}
	})

	t.Run("TwoHundredClients", func(t *testing.T) {
		code, out, errs := runFor(t, dir, 5*time.Minute, "bench", "--target", lb, "--clients", "200", "--size", "30KiB",
			"--op", "mixed", "--requests", "400", "--json")
		var rep benchReport
		if code != exitOK || json.Unmarshal([]byte(out), &rep) != nil || rep.Ops != 400 || rep.Failed != 0 || len(rep.Errors) != 0 {
			t.Fatalf("bench: exit %d %q %s", code, out, errs)
		}
	})

	// Last: it leaves one server.
	t.Run("KillMidUpload", func(t *testing.T) {
		const size = 64 << 20
		path, data := randomFile(t, dir, "thesis.pdf", size, 8)
		// One block in flight: too little for one connection to carry the
		// file, so both are used, in turn. The answer that completes the
		// file comes once the server has written the whole 64 MiB object,
		// which on a busy machine takes longer than 10 s: the client's
		// default time for an answer.
		args := append([]string{"upload", path, "--json", "--conns", "2", "--window", "1"}, conn...)
		up := stepkitCmd(t, context.Background(), dir, args...)
		if err := up.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		upDone := make(chan error, 1)
		go func() { upDone <- up.cmd.Wait() }()
		// Wait until blocks are in the store (each object holds one or
		// more), then kill server A; one of the upload's two connections
		// goes through it.
		objects := func() int {
			n := 0
			for o := range w.Client().ListObjects(context.Background(), w.Bucket,
				minio.ListObjectsOptions{Prefix: "scale/tmp/2362202/thesis.pdf/", Recursive: true}) {
				if o.Err == nil && !strings.HasSuffix(o.Key, "plan.json") {
					n++
				}
			}
			return n
		}
		for deadline := time.Now().Add(2 * time.Minute); objects() < 3; {
			select {
			case err := <-upDone:
				t.Fatalf("upload ended before the kill (%v): %s", err, up.stderr)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no blocks in the store: %s", up.stderr)
			}
			time.Sleep(20 * time.Millisecond)
		}
		procA.cmd.Process.Signal(syscall.SIGKILL)
		<-exitedA
		err := <-upDone
		if err == nil {
			t.Fatalf("the upload survived the kill of a server it was using: %s", up.stdout.String())
		}
		// The same command again resumes from its journal, through
		// HAProxy, on the server left.
		code, out, errs := runFor(t, dir, 5*time.Minute, args...)
		var rep uploadReport
		if code != exitOK || json.Unmarshal([]byte(out), &rep) != nil || !rep.Verified || rep.MD5 != md5Of(data) {
			t.Fatalf("resumed upload: exit %d %q %s", code, out, errs)
		}
		if !rep.Resumed || rep.BlocksSent >= rep.TotalBlock {
			t.Fatalf("the upload did not resume: %d of %d blocks sent again (resumed %v)", rep.BlocksSent, rep.TotalBlock, rep.Resumed)
		}
		copyPath := filepath.Join(dir, "thesis-copy.pdf")
		code, out, errs = runFor(t, dir, 2*time.Minute, append([]string{"download", "thesis.pdf", "-o", copyPath}, conn...)...)
		if got, err := os.ReadFile(copyPath); code != exitOK || err != nil || !bytes.Equal(got, data) {
			t.Fatalf("download after the kill: exit %d %q %s", code, out, errs)
		}
	})
}
