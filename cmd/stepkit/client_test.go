package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/stepkit/stepkit/internal/reliability"
	"github.com/stepkit/stepkit/refclient"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// runCLI runs the stepkit command tree in-process.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// clientEnv isolates the client commands from the caller's environment.
func clientEnv(t *testing.T) {
	t.Helper()
	for _, e := range []string{envServer, envUser, envPassword, envToken} {
		t.Setenv(e, "")
		os.Unsetenv(e)
	}
	t.Setenv(envJournal, t.TempDir())
}

func randomFile(t *testing.T, dir, name string, n int, seed uint64) (string, []byte) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func md5Of(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func TestCLIFileRoundTrip(t *testing.T) {
	clientEnv(t)
	addr, _ := refserver.StartTest(t, refserver.Config{})
	dir := t.TempDir()
	conn := []string{"--server", addr, "--user", "2362202"}

	code, out, errs := runCLI(t, "", append([]string{"login"}, conn...)...)
	if code != 0 || strings.TrimSpace(out) == "" {
		t.Fatalf("login: %d %q %q", code, out, errs)
	}

	for i, size := range []int{0, 1, 20479, 20480, 20481, 3 << 20} {
		name := "报告-" + strconv.Itoa(size) + ".bin"
		path, data := randomFile(t, dir, name, size, uint64(i))
		code, out, errs := runCLI(t, "", append([]string{"upload", path, "--json"}, conn...)...)
		if code != 0 {
			t.Fatalf("upload %d: exit %d: %s", size, code, errs)
		}
		var up uploadReport
		if err := json.Unmarshal([]byte(out), &up); err != nil || up.Key != name || !up.Verified || up.MD5 != md5Of(data) {
			t.Fatalf("upload %d: %q (%v)", size, out, err)
		}
		dest := filepath.Join(dir, "out-"+strconv.Itoa(size))
		code, out, errs = runCLI(t, "", append([]string{"download", name, "-o", dest}, conn...)...)
		if code != 0 || !strings.Contains(out, "MD5 verified") {
			t.Fatalf("download %d: exit %d: %q %s", size, code, out, errs)
		}
		if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("download %d: content differs (%v)", size, err)
		}
		code, out, errs = runCLI(t, "", append([]string{"rm", name}, conn...)...)
		if code != 0 || !strings.Contains(out, "deleted") {
			t.Fatalf("rm %d: exit %d: %q %s", size, code, out, errs)
		}
	}

	// Several files at once, text output, download into a directory.
	a, _ := randomFile(t, dir, "a.bin", 5000, 10)
	b, bdata := randomFile(t, dir, "b.bin", 50000, 11)
	code, out, errs = runCLI(t, "", append([]string{"upload", a, b}, conn...)...)
	if code != 0 || strings.Count(out, "MD5 verified") != 2 {
		t.Fatalf("two uploads: %d %q %s", code, out, errs)
	}
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	code, _, errs = runCLI(t, "", append([]string{"download", "b.bin", "-o", sub, "--window", "1"}, conn...)...)
	if got, _ := os.ReadFile(filepath.Join(sub, "b.bin")); code != 0 || !bytes.Equal(got, bdata) {
		t.Fatalf("download into a directory: %d %s", code, errs)
	}
}

func TestCLIExitCodes(t *testing.T) {
	clientEnv(t)
	addr, _ := refserver.StartTest(t, refserver.Config{})
	dir := t.TempDir()
	conn := []string{"--server", addr, "--user", "u1"}
	path, _ := randomFile(t, dir, "f.bin", 100, 1)

	if code, _, _ := runCLI(t, "", append([]string{"upload", path}, conn...)...); code != exitOK {
		t.Fatalf("first upload: %d", code)
	}
	cases := []struct {
		name string
		args []string
		want int
		msg  string
	}{
		{"key exists", append([]string{"upload", path}, conn...), exitRefused, "402"},
		{"unknown key", append([]string{"download", "nope", "-o", filepath.Join(dir, "x")}, conn...), exitRefused, "404"},
		{"rm unknown", append([]string{"rm", "nope"}, conn...), exitRefused, "404"},
		{"wrong password", []string{"login", "--server", addr, "--user", "u1", "--password", "x"}, exitRefused, "401"},
		{"missing file", append([]string{"upload", filepath.Join(dir, "missing")}, conn...), exitUsage, "missing"},
		{"no user", []string{"upload", path, "--server", addr}, exitUsage, "--user"},
		{"bad server", []string{"login", "--server", "nonsense", "--user", "u"}, exitUsage, "host:port"},
		{"unsafe key as file name", append([]string{"download", "../up"}, conn...), exitUsage, "-o"},
		{"key for two files", append([]string{"upload", path, path, "--key", "k"}, conn...), exitUsage, "--key"},
		{"bad DOC", append([]string{"data", "put", "[1,2]"}, conn...), exitUsage, "JSON object"},
		{"unknown flag", []string{"upload", "--nope"}, exitUsage, "unknown flag"},
		{"unreachable", []string{"login", "--server", closedAddr(t), "--user", "u"}, exitNetwork, "connect"},
		{"silent server", []string{"login", "--server", silentAddr(t), "--user", "u", "--timeout", "100ms"}, exitNetwork, "no response"},
	}
	for _, tc := range cases {
		code, _, errs := runCLI(t, "", tc.args...)
		if code != tc.want || !strings.Contains(errs, tc.msg) {
			t.Errorf("%s: exit %d (want %d), stderr %q (want %q in it)", tc.name, code, tc.want, errs, tc.msg)
		}
	}
}

// closedAddr is a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// silentAddr is a 127.0.0.1 server that accepts connections and never
// answers.
func silentAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { l.Close() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	return l.Addr().String()
}

// startProxy listens on 127.0.0.1 and relays every connection it accepts
// (numbered from 0) to target: up moves the client's bytes to the server,
// down the server's to the client. When either direction ends, both ends
// are closed.
func startProxy(t *testing.T, target string, up, down func(conn int, dst, src net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { ln.Close() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func(n int) {
				defer wg.Done()
				up(n, s, c)
				s.Close()
				c.Close()
			}(n)
			go func(n int) {
				defer wg.Done()
				down(n, c, s)
				c.Close()
				s.Close()
			}(n)
		}
	}()
	return ln.Addr().String()
}

// relayAll copies src to dst unchanged.
func relayAll(_ int, dst, src net.Conn) { io.Copy(dst, src) }

// flipProxy forwards to target and flips one byte of the server → client
// stream at offset at.
func flipProxy(t *testing.T, target string, at int64) string {
	return startProxy(t, target, relayAll, func(_ int, dst, src net.Conn) {
		var off int64
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if at >= off && at < off+int64(n) {
				buf[at-off] ^= 0x55
			}
			off += int64(n)
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
}

func TestCLIMD5MismatchExitCode(t *testing.T) {
	clientEnv(t)
	addr, _ := refserver.StartTest(t, refserver.Config{})
	dir := t.TempDir()
	path, _ := randomFile(t, dir, "m.bin", 100000, 2)
	if code, _, errs := runCLI(t, "", "upload", path, "--server", addr, "--user", "u"); code != 0 {
		t.Fatal(errs)
	}
	// One byte inside block 2's binary part on the way back.
	proxy := flipProxy(t, addr, 50000)
	dest := filepath.Join(dir, "m.out")
	code, out, errs := runCLI(t, "", "download", "m.bin", "-o", dest, "--server", proxy, "--user", "u", "--window", "1", "--json")
	if code != exitMismatch || !strings.Contains(errs, "MD5 mismatch") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	var rep downloadReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Verified || rep.Error == "" {
		t.Fatalf("json %q: %v", out, err)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("corrupt download renamed into place")
	}
}

func TestCLIData(t *testing.T) {
	clientEnv(t)
	addr, _ := refserver.StartTest(t, refserver.Config{})
	t.Setenv(envServer, addr)
	t.Setenv(envUser, "2362202")
	code, out, errs := runCLI(t, "", "data", "put", `{"名字":"Zoë","score":92}`, "--key", "成绩 1")
	if code != 0 || strings.TrimSpace(out) != "成绩 1" {
		t.Fatalf("put: %d %q %s", code, out, errs)
	}
	code, out, errs = runCLI(t, "", "data", "get", "成绩 1")
	var doc map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc["名字"] != "Zoë" || doc["score"] != 92.0 {
		t.Fatalf("get: %d %q %s", code, out, errs)
	}
	if _, ok := doc["status"]; ok {
		t.Fatalf("response envelope printed as document: %q", out)
	}
	code, out, _ = runCLI(t, `{"from":"stdin"}`, "data", "put", "--json")
	var put map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &put) != nil || len(put["key"]) != 36 {
		t.Fatalf("put from stdin: %d %q", code, out)
	}
	if code, _, errs := runCLI(t, "", "data", "rm", "成绩 1"); code != 0 {
		t.Fatalf("rm: %s", errs)
	}
	if code, _, _ := runCLI(t, "", "data", "get", "成绩 1"); code != exitRefused {
		t.Fatalf("get after rm: exit %d", code)
	}
}

func TestCLICourseClientFlags(t *testing.T) {
	clientEnv(t)
	addr, _ := refserver.StartTest(t, refserver.Config{})
	host, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	for i, args := range [][]string{
		{"-server_ip", host, "-port", port, "-id", "2362202", "-f"},
		{"--server_ip", addr, "--id", "2362202", "-f"},
		{"--server_ip=" + addr, "-id=2362202", "--file"},
		{"--server_ip", addr, "--id", "2362202", "--f"},
		{"-server_ip", addr, "-id", "2362202", "--f"},
	} {
		path, data := randomFile(t, dir, "course-"+strconv.Itoa(i)+".bin", 30000+i, uint64(i))
		code, out, errs := runCLI(t, "", append(append([]string{"course-client"}, args...), path)...)
		if code != 0 || !strings.Contains(out, "MD5 verified") || !strings.Contains(out, md5Of(data)) {
			t.Fatalf("%v: exit %d %q %s", args, code, out, errs)
		}
	}
	path, data := randomFile(t, dir, "course-eq.bin", 1000, 9)
	if code, out, errs := runCLI(t, "", "course-client", "--server_ip", addr, "--id", "2362202", "--f="+path); code != 0 || !strings.Contains(out, md5Of(data)) {
		t.Fatalf("--f=FILE: exit %d %q %s", code, out, errs)
	}
	if code, _, errs := runCLI(t, "", "course-client", "-server_ip", host); code != exitUsage || !strings.Contains(errs, "-f FILE") {
		t.Fatalf("missing flags: %d %s", code, errs)
	}
	if code, _, _ := runCLI(t, "", "course-client", "-bogus", "x"); code != exitUsage {
		t.Fatalf("unknown flag: %d", code)
	}
	if got := normaliseCourseArgs([]string{"-server_ip", "1.2.3.4", "-id=7", "-f", "x", "--id", "-port"}); strings.Join(got, " ") != "--server_ip 1.2.3.4 --id=7 -f x --id --port" {
		t.Fatalf("normalised %q", got)
	}
}

// cutOnceProxy forwards to target; its first connection is cut after
// cutAt bytes from the client.
func cutOnceProxy(t *testing.T, target string, cutAt int64) string {
	return startProxy(t, target, func(n int, dst, src net.Conn) {
		if n == 0 {
			io.Copy(dst, io.LimitReader(src, cutAt))
			return
		}
		io.Copy(dst, src)
	}, relayAll)
}

func TestCLIUploadResumes(t *testing.T) {
	clientEnv(t)
	addr, _ := refserver.StartTest(t, refserver.Config{})
	proxy := cutOnceProxy(t, addr, 10*20600)
	dir := t.TempDir()
	path, data := randomFile(t, dir, "r.bin", 30*20480, 4)
	args := []string{"upload", path, "--server", proxy, "--user", "u", "--json"}
	// One block at a time before the cut: the blocks sent are acknowledged.
	code, _, errs := runCLI(t, "", append(args, "--window", "1")...)
	if code != exitNetwork || !strings.Contains(errs, "resume") {
		t.Fatalf("cut upload: exit %d %s", code, errs)
	}
	code, out, errs := runCLI(t, "", args...)
	var rep uploadReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || !rep.Resumed || !rep.Verified || rep.BlocksSent >= 30 {
		t.Fatalf("resumed upload: exit %d %q %s", code, out, errs)
	}
	if rep.MD5 != md5Of(data) {
		t.Fatal("md5 differs")
	}
}

func TestCLIUploadSeveralReportsEachFailure(t *testing.T) {
	clientEnv(t)
	addr, _ := refserver.StartTest(t, refserver.Config{})
	dir := t.TempDir()
	conn := []string{"--server", addr, "--user", "u"}
	a, _ := randomFile(t, dir, "a.bin", 10, 1)
	b, _ := randomFile(t, dir, "b.bin", 10, 2)
	c, _ := randomFile(t, dir, "c.bin", 10, 3)
	if code, _, errs := runCLI(t, "", append([]string{"upload", a, b}, conn...)...); code != 0 {
		t.Fatal(errs)
	}
	code, out, errs := runCLI(t, "", append([]string{"upload", a, c, b}, conn...)...)
	if code != exitRefused || strings.Count(errs, "402") != 2 || !strings.Contains(errs, "2 of 3 uploads failed") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if !strings.Contains(out, "c.bin -> c.bin") {
		t.Fatalf("the upload between the failures is missing: %q", out)
	}
}

func TestCLIAccountModePasswordAndToken(t *testing.T) {
	clientEnv(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := refserver.NewAccounts(map[string]string{"alice": string(hash)}, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := refserver.StartTest(t, refserver.Config{Accounts: acc})
	t.Setenv(envServer, addr)
	t.Setenv(envUser, "alice")

	// The course rule is not alice's password.
	if code, _, errs := runCLI(t, "", "login"); code != exitRefused || !strings.Contains(errs, "401") {
		t.Fatalf("course-rule login: %d %s", code, errs)
	}
	t.Setenv(envPassword, "s3cret")
	code, out, errs := runCLI(t, "", "login", "--json")
	var login map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &login) != nil || login["token"] == "" || login["user"] != "alice" {
		t.Fatalf("login: %d %q %s", code, out, errs)
	}
	// A token from login works without a username or password.
	os.Unsetenv(envUser)
	os.Unsetenv(envPassword)
	code, _, errs = runCLI(t, "", "data", "put", `{"a":1}`, "--key", "k", "--token", login["token"])
	if code != 0 {
		t.Fatalf("put with --token: %d %s", code, errs)
	}
	if code, _, errs := runCLI(t, "", "data", "get", "k", "--token", "bogus"); code != exitRefused || !strings.Contains(errs, "403") {
		t.Fatalf("bogus token: %d %s", code, errs)
	}
}

// noPipeliningProxy forwards to target and removes the pipelining
// advertisement (EXT-6) from every response, as a server that does not
// know the extension answers.
func noPipeliningProxy(t *testing.T, target string) string {
	return startProxy(t, target, relayAll, func(_ int, dst, src net.Conn) {
		r, w := spec.NewReader(src, spec.Limits{}), spec.NewWriter(dst)
		for {
			m, err := r.ReadMessage()
			if err != nil {
				return
			}
			m.Delete(refclient.FieldPipelining)
			if err := w.WriteMessage(m); err != nil {
				return
			}
		}
	})
}

// The automatic window: blocks are pipelined only to a server that
// advertised pipelining; --window N overrides; course-client is automatic.
func TestCLIAutomaticWindow(t *testing.T) {
	clientEnv(t)
	addr, _ := refserver.StartTest(t, refserver.Config{})
	plain := noPipeliningProxy(t, addr)
	dir := t.TempDir()
	for i, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"upload", "--server", addr, "--user", "u"}, refclient.AutoWindow(spec.DefaultBlockSize)},
		{[]string{"upload", "--server", plain, "--user", "u"}, 1},
		{[]string{"upload", "--server", plain, "--user", "u", "--window", "4"}, 4},
		{[]string{"course-client", "--server_ip", plain, "--id", "2362202", "--f"}, 1},
		{[]string{"course-client", "--server_ip", addr, "--id", "2362202", "--f"}, refclient.AutoWindow(spec.DefaultBlockSize)},
	} {
		path, data := randomFile(t, dir, "w"+strconv.Itoa(i)+".bin", 200000+i, uint64(20+i))
		code, out, errs := runCLI(t, "", append(tc.args, path, "--json")...)
		var rep uploadReport
		if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
			t.Fatalf("%v: exit %d %q %s", tc.args, code, out, errs)
		}
		if rep.Window != tc.want || !rep.Verified || rep.MD5 != md5Of(data) {
			t.Fatalf("%v: report %+v, want window %d", tc.args, rep, tc.want)
		}
	}
	// A token alone says nothing about the server: one block at a time.
	tok := refserver.CourseToken("u", time.Now())
	path, _ := randomFile(t, dir, "tok.bin", 100000, 30)
	code, out, errs := runCLI(t, "", "upload", path, "--server", addr, "--token", tok, "--json")
	var rep uploadReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Window != 1 {
		t.Fatalf("token only: exit %d %q %s", code, out, errs)
	}
	if code, _, _ := runCLI(t, "", "upload", path, "--server", addr, "--user", "u", "--window", "0"); code != exitUsage {
		t.Fatalf("--window 0: exit %d", code)
	}
}

func TestCLIDownloadToStdout(t *testing.T) {
	clientEnv(t)
	addr, _ := refserver.StartTest(t, refserver.Config{})
	dir := t.TempDir()
	path, data := randomFile(t, dir, "s.bin", 100000, 5)
	if code, _, errs := runCLI(t, "", "upload", path, "--server", addr, "--user", "u"); code != 0 {
		t.Fatal(errs)
	}
	code, out, errs := runCLI(t, "", "download", "s.bin", "-o", "-", "--server", addr, "--user", "u")
	if code != 0 || out != string(data) || !strings.Contains(errs, "MD5 verified") {
		t.Fatalf("exit %d, %d bytes on stdout (want %d), stderr %q", code, len(out), len(data), errs)
	}
	if _, err := os.Stat("-"); !os.IsNotExist(err) {
		t.Fatal(`a file named "-" was written`)
	}
	// A byte changed on the way: the bytes are out, the exit status says
	// they do not match.
	proxy := flipProxy(t, addr, 50000)
	code, out, errs = runCLI(t, "", "download", "s.bin", "-o", "-", "--server", proxy, "--user", "u", "--window", "1")
	if code != exitMismatch || !strings.Contains(errs, "MD5 mismatch") || len(out) != len(data) {
		t.Fatalf("exit %d, %d bytes on stdout, stderr %q", code, len(out), errs)
	}
	reliability.Record(t, reliability.Row{Area: "client", Times: 1,
		Input:   "stepkit download -o - with one byte of a block changed on the way",
		Outcome: "the bytes written to standard output, MD5 mismatch on standard error, exit status 5",
		Lost:    "nothing unnoticed"})
}
