package refserver_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// When the test binary runs with STEPKIT_TEST_SERVER_ROOT set, it is a
// server process for TestUploadSurvivesKill, not a test run: it prints its
// address and serves until it is killed.
func TestMain(m *testing.M) {
	if root := os.Getenv("STEPKIT_TEST_SERVER_ROOT"); root != "" {
		bs, _ := strconv.Atoi(os.Getenv("STEPKIT_TEST_SERVER_BLOCK_SIZE"))
		srv, err := refserver.New(refserver.Config{Root: root, BlockSize: bs})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("addr", l.Addr())
		fmt.Fprintln(os.Stderr, srv.Serve(l))
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// startProcess runs a server in a child process and returns its address.
func startProcess(t *testing.T, root string, blockSize int) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STEPKIT_TEST_SERVER_ROOT="+root,
		"STEPKIT_TEST_SERVER_BLOCK_SIZE="+strconv.Itoa(blockSize))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "addr "); ok {
				found <- a
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case addr := <-found:
		return cmd, addr
	case <-time.After(20 * time.Second):
		t.Fatal("server process did not start")
	}
	return nil, ""
}

// TestUploadSurvivesKill kills the server process (SIGKILL: no chance to
// clean up) in the middle of an upload, starts a new one on the same root
// and finishes the upload there.
func TestUploadSurvivesKill(t *testing.T) {
	root := t.TempDir()
	const bs = 4096
	data := pattern(5*bs+777, 8)
	proc, addr := startProcess(t, root, bs)
	c := dial(t, addr)
	c.login("crash")
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "k", "size", len(data))), 200)
	uploadBlocks(t, c, "k", data, bs, 0, 1, 4)
	if err := proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	proc.Wait()
	if _, err := c.recvErr(); err == nil {
		t.Fatal("connection alive after the kill")
	}

	// The new process has another block size: the upload keeps its plan.
	_, addr = startProcess(t, root, 1000)
	d := dial(t, addr)
	d.token = c.token
	wantStatus(t, d.do(d.authed(spec.OpGet, spec.TypeFile, "key", "k")), 404)
	uploadBlocks(t, d, "k", data, bs, 2, 3)
	m := d.authed(spec.OpUpload, spec.TypeFile, "key", "k", "block_index", 5)
	m.Binary = data[5*bs:]
	r := d.do(m)
	wantStatus(t, r, 200)
	if sum, _ := r.MD5(); sum != md5hex(data) {
		t.Fatalf("md5 %q after the restart, want %s", sum, md5hex(data))
	}
	if got, err := os.ReadFile(filepath.Join(root, "file", "crash", "k")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored file differs (%v)", err)
	}
	if !bytes.Equal(d.download("k"), data) {
		t.Fatal("download differs")
	}
}
