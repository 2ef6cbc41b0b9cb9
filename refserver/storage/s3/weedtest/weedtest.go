// Package weedtest runs a real SeaweedFS for tests: one `weed server` with
// its S3 gateway, bound to 127.0.0.1 on free ports, its data in a temporary
// folder, stopped when the test ends.
//
// The weed binary is built from the SeaweedFS module at Version, fetched
// through the Go module proxy, and kept at Binary() so that later runs
// start in seconds. A missing binary is built when CI=true; otherwise the
// test is skipped with the command that builds it.
package weedtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/stepkit/stepkit/refserver/storage/s3"
)

// Module and Version name the SeaweedFS source the tests run.
const (
	Module  = "github.com/seaweedfs/seaweedfs"
	Version = "v0.0.0-20261109003541-7506e5f91cd6"
)

// BinaryEnv, if set, is the path of a weed binary to use.
const BinaryEnv = "STEPKIT_WEED"

// Binary is where the weed binary of Version is kept:
// $(go env GOPATH)/bin/weed-VERSION, or $STEPKIT_WEED.
func Binary() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		return p, nil
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOPATH: %w", err)
	}
	gopath := strings.SplitN(strings.TrimSpace(string(out)), string(os.PathListSeparator), 2)[0]
	return filepath.Join(gopath, "bin", "weed-"+Version), nil
}

var buildMu sync.Mutex

// Require returns the weed binary, building it if missing under CI=true
// and skipping the test otherwise.
func Require(tb testing.TB) string {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if os.Getenv("CI") != "true" {
		tb.Skipf("SeaweedFS (weed) not found at %s: run .ci/seaweedfs to build it (CI=true builds it)", bin)
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if err := Build(bin); err != nil {
		tb.Fatalf("build SeaweedFS: %v", err)
	}
	return bin
}

// Build builds weed at Version into bin: go mod download, then go build in
// a writable copy of the module (go install refuses the module for its
// replace directives). A lock file beside bin keeps concurrent test
// processes from building it twice.
func Build(bin string) error {
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	lf, err := os.OpenFile(bin+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lf.Name(), err)
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return nil // built by another process meanwhile
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-buildvcs=false")
	src, err := os.MkdirTemp("", "seaweedfs-src-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	// Outside any module, so that nothing is added to this one's go.sum.
	dl := exec.CommandContext(ctx, "go", "mod", "download", "-json", Module+"@"+Version)
	dl.Dir, dl.Env = src, env
	out, err := dl.Output()
	if err != nil {
		return fmt.Errorf("go mod download %s@%s: %w", Module, Version, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("go mod download %s@%s: no folder in %q", Module, Version, out)
	}
	// os.CopyFS makes the copy writable, as go build needs.
	if err := os.CopyFS(filepath.Join(src, "m"), os.DirFS(mod.Dir)); err != nil {
		return fmt.Errorf("copy the module: %w", err)
	}
	// -trimpath keeps the build cache independent of the copy's folder.
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin+".tmp", "./weed")
	build.Dir, build.Env = filepath.Join(src, "m"), env
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./weed: %w\n%s", err, out)
	}
	return os.Rename(bin+".tmp", bin)
}

// Server is a running SeaweedFS with an S3 gateway and one bucket.
type Server struct {
	tb        testing.TB
	bin       string
	dir       string
	args      []string
	cmd       *exec.Cmd
	done      chan struct{}
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Bucket    string
}

// Start starts SeaweedFS for the test and creates the bucket "stepkit".
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := Require(tb)
	dir := tb.TempDir()
	s := &Server{tb: tb, bin: bin, dir: dir, Bucket: "stepkit", AccessKey: randHex(10), SecretKey: randHex(20)}
	conf := fmt.Sprintf(`{"identities":[{"name":"stepkit","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","Write","List","Tagging"]}]}`,
		s.AccessKey, s.SecretKey)
	confPath := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	p := freePorts(tb, 8)
	s.args = []string{"server",
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-dir=" + data,
		"-master.port=" + p[0], "-master.port.grpc=" + p[1], "-master.telemetry=false",
		"-master.volumeSizeLimitMB=1024", "-volume.max=0",
		"-volume.port=" + p[2], "-volume.port.grpc=" + p[3], "-volume.preStopSeconds=0",
		"-filer", "-filer.port=" + p[4], "-filer.port.grpc=" + p[5],
		"-s3", "-s3.port=" + p[6], "-s3.port.grpc=" + p[7], "-s3.config=" + confPath,
		"-s3.port.iceberg=0", "-s3.port.lance=0",
	}
	s.Endpoint = "http://127.0.0.1:" + p[6]
	s.Restart()
	tb.Cleanup(s.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := s.client()
	for {
		err := cl.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{})
		if err == nil {
			break
		}
		if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
			break
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("SeaweedFS did not start in 90s: %v (log: %s)", err, s.LogPath())
		case <-s.done:
			tb.Fatalf("SeaweedFS exited at start (log: %s)", s.LogPath())
		case <-time.After(200 * time.Millisecond):
		}
	}
	// The S3 gateway may take requests before the volume servers can:
	// wait until an object goes in and comes out.
	for {
		_, err := cl.PutObject(ctx, s.Bucket, ".ready", strings.NewReader("ok"), 2, minio.PutObjectOptions{})
		if err == nil {
			err = cl.RemoveObject(ctx, s.Bucket, ".ready", minio.RemoveObjectOptions{})
		}
		if err == nil {
			return s
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("SeaweedFS took no object in 90s: %v (log: %s)", err, s.LogPath())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// LogPath is the file weed writes its output to.
func (s *Server) LogPath() string { return filepath.Join(s.dir, "weed.log") }

// Config returns the s3.Config of the bucket under prefix.
func (s *Server) Config(prefix string) s3.Config {
	return s3.Config{Endpoint: s.Endpoint, Bucket: s.Bucket, Prefix: prefix, AccessKey: s.AccessKey, SecretKey: s.SecretKey}
}

// Env returns the environment variables that give stepkit serve the
// bucket's credentials.
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey}
}

// Open opens an s3.Store on the bucket under prefix.
func (s *Server) Open(tb testing.TB, prefix string) *s3.Store {
	tb.Helper()
	st, err := s3.Open(context.Background(), s.Config(prefix))
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

func (s *Server) client() *minio.Client {
	cl, err := minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), BucketLookup: minio.BucketLookupPath})
	if err != nil {
		s.tb.Fatal(err)
	}
	return cl
}

// Client returns a client of the store, to look at it as any S3 tool does.
func (s *Server) Client() *minio.Client { return s.client() }

// Stop stops weed (SIGTERM, then SIGKILL after 3s: its data is thrown
// away with the test's folder) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT)
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(3 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Restart starts weed again on the same folder and ports (after Stop).
func (s *Server) Restart() {
	s.tb.Helper()
	logf, err := os.OpenFile(s.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.tb.Fatal(err)
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.tb.Fatalf("start weed: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	done := s.done
	go func() { cmd.Wait(); logf.Close(); close(done) }()
}

// WaitReady waits until the store takes an object again, after Restart.
func (s *Server) WaitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cl := s.client()
	for {
		_, err := cl.PutObject(ctx, s.Bucket, ".ready", strings.NewReader("ok"), 2, minio.PutObjectOptions{})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Pause freezes weed (SIGSTOP): connections are accepted by the kernel but
// nothing is answered, as with a store that hangs. It returns once every
// thread of weed has stopped (on Linux, where /proc shows it). Resume
// undoes it.
func (s *Server) Pause() {
	s.tb.Helper()
	s.cmd.Process.Signal(syscall.SIGSTOP)
	tasks := fmt.Sprintf("/proc/%d/task", s.cmd.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if allStopped(tasks) {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("weed did not stop within 10s of SIGSTOP")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// allStopped reports whether every task under /proc/PID/task is stopped,
// or /proc cannot tell.
func allStopped(tasks string) bool {
	ents, err := os.ReadDir(tasks)
	if err != nil {
		return true
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(tasks, e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The state follows the command name, which is in parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) {
			continue
		}
		if st := b[i+2]; st != 'T' && st != 't' {
			return false
		}
	}
	return true
}

func (s *Server) Resume() { s.cmd.Process.Signal(syscall.SIGCONT) }

// freePorts returns n distinct free TCP ports on 127.0.0.1. Listeners are
// held until all are chosen, so the ports differ.
func freePorts(tb testing.TB, n int) []string {
	var ls []net.Listener
	var out []string
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return out
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
