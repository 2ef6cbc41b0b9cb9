package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepkit/stepkit/spec"
	"golang.org/x/crypto/bcrypt"
)

// syncBuffer is a bytes.Buffer safe for the server's log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe runs stepkit serve with args until the test ends and returns
// the log and the address it serves.
func startServe(t *testing.T, args ...string) (addr string, log *syncBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log = &syncBuffer{}
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...), strings.NewReader(""), io.Discard, log)
	}()
	re := regexp.MustCompile(`msg=serving addr=(127\.0\.0\.1:\d+)`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := re.FindStringSubmatch(log.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case c := <-code:
			t.Fatalf("serve exited with %d: %s", c, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s", log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopped := false
	var rc int
	stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			rc = <-code
		}
		return rc
	}
	t.Cleanup(func() { stop() })
	return addr, log, stop
}

func exchange(t *testing.T, nc net.Conn, m *spec.Message) *spec.Message {
	t.Helper()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := spec.NewWriter(nc).WriteMessage(m); err != nil {
		t.Fatal(err)
	}
	resp, err := spec.NewReader(nc, spec.Limits{}).ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func loginReq(user, pass string) *spec.Message {
	return spec.NewRequest(spec.OpLogin, spec.TypeAuth).Set("username", user).Set("password", pass)
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestServeCourseModeAndShutdown(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	t.Setenv("STEPKIT_BLOCK_SIZE", "1000")
	addr, log, stop := startServe(t, "--root", root, "--log-level", "debug")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	resp := exchange(t, nc, loginReq("2362202", md5hex("2362202")))
	if st, _ := resp.Status(); st != 200 {
		t.Fatalf("LOGIN: %s", resp.JSONString())
	}
	tok, _ := resp.Token()
	resp = exchange(t, nc, spec.NewRequest(spec.OpSave, spec.TypeFile).Set("token", tok).Set("key", "k").Set("size", 2500))
	if bs, _ := resp.BlockSize(); bs != 1000 {
		t.Fatalf("STEPKIT_BLOCK_SIZE not applied: %s", resp.JSONString())
	}
	if _, err := os.Stat(filepath.Join(root, "tmp", "2362202", "k", "plan.json")); err != nil {
		t.Fatalf("storage not under --root: %v", err)
	}
	if !strings.Contains(log.String(), "anyone can log in as anyone") {
		t.Error("course mode not announced")
	}
	if !regexp.MustCompile(`conn=\d+ .*operation=SAVE`).MatchString(log.String()) {
		t.Errorf("request log lines lack a connection id:\n%s", log.String())
	}
	if rc := stop(); rc != exitOK {
		t.Fatalf("exit code %d after shutdown: %s", rc, log.String())
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("still listening after shutdown")
	}
}

func TestServeAccountModeJSONLogsAndMetrics(t *testing.T) {
	dir := t.TempDir()
	hash, err := cheapHash("pw")
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users")
	os.WriteFile(users, []byte("ann:"+hash+"\n"), 0o600)
	secret := filepath.Join(dir, "secret")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := &syncBuffer{}
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--root", filepath.Join(dir, "store"),
			"--users", users, "--secret-file", secret, "--log-format", "json", "--metrics-addr", "127.0.0.1:0"},
			strings.NewReader(""), io.Discard, log)
	}()
	addrRe := regexp.MustCompile(`"msg":"serving","addr":"(127\.0\.0\.1:\d+)"`)
	metricsRe := regexp.MustCompile(`"url":"(http://127\.0\.0\.1:\d+/metrics)"`)
	var addr, murl string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; time.Sleep(5 * time.Millisecond) {
		if m := addrRe.FindStringSubmatch(log.String()); m != nil {
			addr = m[1]
			murl = metricsRe.FindStringSubmatch(log.String())[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s", log.String())
		}
	}
	if b, err := os.ReadFile(secret); err != nil || len(bytes.TrimSpace(b)) != 64 {
		t.Fatalf("secret file not created: %q %v", b, err)
	}
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if st, _ := exchange(t, nc, loginReq("ann", md5hex("ann"))).Status(); st != 401 {
		t.Fatalf("course password accepted in account mode: %d", st)
	}
	if st, _ := exchange(t, nc, loginReq("ann", "pw")).Status(); st != 200 {
		t.Fatalf("account login: %d", st)
	}
	resp, err := http.Get(murl)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `step_requests_total{operation="LOGIN",status="200"} 1`) {
		t.Fatalf("metrics:\n%s", body)
	}
	if !strings.Contains(log.String(), `"conn":1`) {
		t.Errorf("JSON log lines lack the connection id:\n%s", log.String())
	}
	cancel()
	if rc := <-code; rc != exitOK {
		t.Fatalf("exit code %d", rc)
	}
}

func TestServeBadSettings(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		env  [2]string
	}{
		{args: []string{"--block-size", "70000"}},
		{args: []string{"--quota", "lots"}},
		{args: []string{"--log-format", "xml"}},
		{args: []string{"--max-conns", "0"}},
		{args: []string{"--users", filepath.Join(dir, "missing")}},
		{args: []string{"--secret-file", filepath.Join(dir, "s")}},
		{args: []string{"--idle-timeout", "soon"}},
		{env: [2]string{"STEPKIT_READ_TIMEOUT", "never"}},
	} {
		if tc.env[0] != "" {
			t.Setenv(tc.env[0], tc.env[1])
		}
		var errb bytes.Buffer
		args := append([]string{"serve", "--addr", "127.0.0.1:0", "--root", filepath.Join(dir, "r")}, tc.args...)
		if rc := run(context.Background(), args, strings.NewReader(""), io.Discard, &errb); rc != exitUsage {
			t.Errorf("%v %v: exit %d, want %d (%s)", tc.args, tc.env, rc, exitUsage, errb.String())
		}
		if tc.env[0] != "" {
			os.Unsetenv(tc.env[0])
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "100": 100, "1KiB": 1024, "2MiB": 2 << 20, "1GiB": 1 << 30,
		"4GiB": 4 << 30, "5K": 5000, "3 MB": 3e6, "7B": 7} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "x", "1.5GiB", "99999999999TiB"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) accepted", in)
		}
	}
}

// cheapHash is a bcrypt hash of the lowest cost, to keep tests fast.
func cheapHash(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	return string(h), err
}
