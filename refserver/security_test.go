package refserver_test

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
	"golang.org/x/crypto/bcrypt"
)

var hostileKeys = []string{
	"", ".", "..", "../x", "../../etc/passwd", "a/b", "/abs", `a\b`, `..\x`, "x\x00y", "tab\tkey",
	"line\nkey", "del\x7f", strings.Repeat("k", 256), "../" + strings.Repeat("a", 10),
}

// listTree returns every path under dir, relative to it.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestHostileKeysAreRefused(t *testing.T) {
	outer := t.TempDir()
	root := filepath.Join(outer, "root")
	addr, _ := refserver.StartTest(t, refserver.Config{Root: root})
	c := dial(t, addr)
	c.login("victim")
	for _, k := range hostileKeys {
		for _, m := range []*spec.Message{
			c.authed(spec.OpSave, spec.TypeData, "key", k, "v", 1),
			c.authed(spec.OpGet, spec.TypeData, "key", k),
			c.authed(spec.OpDelete, spec.TypeData, "key", k),
			c.authed(spec.OpSave, spec.TypeFile, "key", k, "size", 5),
			c.authed(spec.OpSave, spec.TypeFile, "key", k, "size", 0),
			c.authed(spec.OpUpload, spec.TypeFile, "key", k, "block_index", 0),
			c.authed(spec.OpGet, spec.TypeFile, "key", k),
			c.authed(spec.OpDownload, spec.TypeFile, "key", k, "block_index", 0),
			c.authed(spec.OpDelete, spec.TypeFile, "key", k),
		} {
			resp := c.do(m)
			wantStatus(t, resp, 410)
			wantOpType(t, resp, m.Operation(), m.Type())
		}
	}
	// Nothing appeared next to the root, and nothing but the layout in it.
	if got := listTree(t, outer); len(got) == 0 || func() bool {
		for _, p := range got {
			if p != "root" && !strings.HasPrefix(p, "root"+string(filepath.Separator)) {
				return true
			}
		}
		return false
	}() {
		t.Fatalf("files outside the root: %v", got)
	}
	for _, p := range listTree(t, root) {
		switch p {
		case "data", "file", "meta", "tmp", filepath.Join("tmp", ".stage"):
		default:
			t.Errorf("unexpected path in root: %s", p)
		}
	}
	// Keys that look odd but are plain file names work.
	for _, k := range []string{"...", "a..b", " spaced key ", "文件.txt", "-rf", "plan.json", "x.log", strings.Repeat("é", 127)} {
		resp := c.do(c.authed(spec.OpSave, spec.TypeData, "key", k, "v", k))
		wantStatus(t, resp, 200)
		if got, _ := c.do(c.authed(spec.OpGet, spec.TypeData, "key", k)).String("v"); got != k {
			t.Errorf("key %q: got back %q", k, got)
		}
		if c.upload(k, []byte(k)) != md5hex([]byte(k)) {
			t.Errorf("key %q: md5", k)
		}
	}
}

func TestHostileUsernames(t *testing.T) {
	outer := t.TempDir()
	root := filepath.Join(outer, "root")
	addr, _ := refserver.StartTest(t, refserver.Config{Root: root})
	c := dial(t, addr)
	for _, u := range []string{"", "../x", "a/b", `a\b`, "x\x00", "\n", strings.Repeat("u", 256)} {
		resp := c.do(req(spec.OpLogin, spec.TypeAuth, "username", u, "password", md5hex([]byte(u))))
		wantStatus(t, resp, 410)
	}
	// Dots are replaced: ".." logs in as the user "__", inside the root.
	c.login("..")
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeData, "key", "k")), 200)
	if _, err := os.Stat(filepath.Join(root, "data", "__", "k")); err != nil {
		t.Fatalf("user '..' stored outside data/__: %v", err)
	}
	// A token forged with the public recipe for a user naming a path is
	// refused.
	for _, u := range []string{"../../x", "a/b", ".hidden", ""} {
		head := u + ".20240101000000.login"
		sum := md5.Sum([]byte(head + refserver.CourseSalt))
		tok := base64.StdEncoding.EncodeToString([]byte(head + "." + hex.EncodeToString(sum[:])))
		resp := c.do(req(spec.OpSave, spec.TypeData, "token", tok, "key", "k"))
		wantStatus(t, resp, 403)
		wantOpType(t, resp, spec.OpSave, spec.TypeAuth)
	}
	for _, p := range listTree(t, outer) {
		if p != "root" && !strings.HasPrefix(p, "root"+string(filepath.Separator)) {
			t.Errorf("path outside the root: %s", p)
		}
	}
}

func TestSymlinkOutOfRootIsNotFollowed(t *testing.T) {
	outer := t.TempDir()
	root := filepath.Join(outer, "root")
	secret := filepath.Join(outer, "secret")
	os.WriteFile(secret, []byte("top secret"), 0o600)
	addr, _ := refserver.StartTest(t, refserver.Config{Root: root})
	c := dial(t, addr)
	c.login("eve")
	os.MkdirAll(filepath.Join(root, "file", "eve"), 0o755)
	os.MkdirAll(filepath.Join(root, "data", "eve"), 0o755)
	if err := os.Symlink(secret, filepath.Join(root, "file", "eve", "link")); err != nil {
		t.Fatal(err)
	}
	os.Symlink(secret, filepath.Join(root, "data", "eve", "link"))
	for _, m := range []*spec.Message{
		c.authed(spec.OpGet, spec.TypeFile, "key", "link"),
		c.authed(spec.OpDownload, spec.TypeFile, "key", "link", "block_index", 0),
		c.authed(spec.OpGet, spec.TypeData, "key", "link"),
	} {
		resp := c.do(m)
		if st, _ := resp.Status(); st == 200 || strings.Contains(resp.JSONString(), "top secret") || len(resp.Binary) > 0 {
			t.Fatalf("symlink out of the root followed: %s", resp.JSONString())
		}
	}
	usable(t, c)
}

func TestUsersAreIsolated(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	alice, bob := dial(t, addr), dial(t, addr)
	alice.login("alice")
	bob.login("bob")
	wantStatus(t, alice.do(alice.authed(spec.OpSave, spec.TypeData, "key", "k", "owner", "alice")), 200)
	alice.upload("f", []byte("alice's file"))

	wantStatus(t, bob.do(bob.authed(spec.OpGet, spec.TypeData, "key", "k")), 404)
	wantStatus(t, bob.do(bob.authed(spec.OpDelete, spec.TypeData, "key", "k")), 404)
	wantStatus(t, bob.do(bob.authed(spec.OpGet, spec.TypeFile, "key", "f")), 404)
	wantStatus(t, bob.do(bob.authed(spec.OpDownload, spec.TypeFile, "key", "f", "block_index", 0)), 404)
	wantStatus(t, bob.do(bob.authed(spec.OpDelete, spec.TypeFile, "key", "f")), 404)
	wantStatus(t, bob.do(bob.authed(spec.OpUpload, spec.TypeFile, "key", "f", "block_index", 0)), 408)
	// Bob's own key of the same name is his.
	wantStatus(t, bob.do(bob.authed(spec.OpSave, spec.TypeData, "key", "k", "owner", "bob")), 200)
	bob.upload("f", []byte("bob's"))

	r := alice.do(alice.authed(spec.OpGet, spec.TypeData, "key", "k"))
	if o, _ := r.String("owner"); o != "alice" {
		t.Fatalf("alice's document now says %q", o)
	}
	if got := alice.download("f"); string(got) != "alice's file" {
		t.Fatalf("alice's file now holds %q", got)
	}
}

func TestCourseTokens(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := dial(t, addr)
	before := time.Now()
	tok := c.login("a.b.c")
	after := time.Now()
	raw, err := base64.StdEncoding.DecodeString(tok)
	if err != nil {
		t.Fatalf("token %q is not base64: %v", tok, err)
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 4 || parts[0] != "a_b_c" || parts[2] != "login" {
		t.Fatalf("token %q", raw)
	}
	// Rebuilt from the recipe, as some course clients do.
	if tok != refserver.CourseToken("a.b.c", before) && tok != refserver.CourseToken("a.b.c", after) {
		t.Fatalf("token %q does not follow the course recipe", raw)
	}
	sum := md5.Sum([]byte(parts[0] + "." + parts[1] + "." + parts[2] + "kjh20)*(1"))
	if parts[3] != hex.EncodeToString(sum[:]) {
		t.Fatalf("signature %s", parts[3])
	}
	// Valid on another connection; an old hard-coded token still works.
	d := dial(t, addr)
	d.token = tok
	wantStatus(t, d.do(d.authed(spec.OpSave, spec.TypeData, "key", "x")), 200)
	d.token = refserver.CourseToken("2362202", time.Date(2023, 4, 1, 10, 0, 0, 0, time.Local))
	wantStatus(t, d.do(d.authed(spec.OpSave, spec.TypeData, "key", "x")), 200)
	// Tampered tokens.
	for _, bad := range []string{
		base64.StdEncoding.EncodeToString([]byte("bob" + string(raw[len("a_b_c"):]))),                // other user
		base64.StdEncoding.EncodeToString([]byte(strings.Replace(string(raw), "login", "logon", 1))), // other part
		base64.StdEncoding.EncodeToString([]byte(string(raw) + ".x")),                                // five parts
		tok[:len(tok)-4],
		"",
	} {
		d.token = bad
		r := d.do(d.authed(spec.OpGet, spec.TypeData, "key", "x"))
		wantStatus(t, r, 403)
		wantOpType(t, r, spec.OpGet, spec.TypeAuth)
	}
}

func TestAccountMode(t *testing.T) {
	hash, err := cheapHash("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	acc, err := refserver.NewAccounts(map[string]string{"ann.lee": hash}, []byte("server secret of the test"))
	if err != nil {
		t.Fatal(err)
	}
	var now atomicTime
	now.Store(time.Now())
	addr, _ := refserver.StartTest(t, refserver.Config{Accounts: acc, TokenTTL: time.Hour, Now: now.Load})
	c := dial(t, addr)
	for _, tc := range []struct{ user, pass string }{
		{"ann.lee", refserver.CoursePassword("ann.lee")}, // the course rule does not apply
		{"ann.lee", "wrong"},
		{"bob", "s3cret"}, // unknown user
	} {
		r := c.do(req(spec.OpLogin, spec.TypeAuth, "username", tc.user, "password", tc.pass))
		wantStatus(t, r, 401)
	}
	r := c.do(req(spec.OpLogin, spec.TypeAuth, "username", "ann.lee", "password", "s3cret"))
	wantStatus(t, r, 200)
	tok, _ := r.Token()
	c.token = tok
	raw, _ := base64.StdEncoding.DecodeString(tok)
	if parts := strings.Split(string(raw), "."); len(parts) != 4 || parts[0] != "ann_lee" || parts[2] != "login" {
		t.Fatalf("token %q", raw)
	}
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeData, "key", "k")), 200)

	// The public course recipe does not forge an account token.
	c.token = refserver.CourseToken("ann.lee", now.Load())
	wantStatus(t, c.do(c.authed(spec.OpGet, spec.TypeData, "key", "k")), 403)
	// Nor does changing its user or time.
	parts := strings.Split(string(raw), ".")
	for _, forged := range []string{
		"bob." + parts[1] + ".login." + parts[3],
		parts[0] + "." + now.Load().Add(time.Hour).Format("20060102150405") + ".login." + parts[3],
	} {
		c.token = base64.StdEncoding.EncodeToString([]byte(forged))
		wantStatus(t, c.do(c.authed(spec.OpGet, spec.TypeData, "key", "k")), 403)
	}
	// Expiry.
	c.token = tok
	now.Store(now.Load().Add(59 * time.Minute))
	wantStatus(t, c.do(c.authed(spec.OpGet, spec.TypeData, "key", "k")), 200)
	now.Store(now.Load().Add(2 * time.Minute))
	r = c.do(c.authed(spec.OpGet, spec.TypeData, "key", "k"))
	wantStatus(t, r, 403)
	wantOpType(t, r, spec.OpGet, spec.TypeAuth)
	if msg := r.StatusMsg(); !strings.Contains(msg, "expired") {
		t.Errorf("status_msg %q does not say the token expired", msg)
	}
	d := dial(t, addr)
	d.token = tok
	wantStatus(t, d.do(d.authed(spec.OpGet, spec.TypeData, "key", "k")), 403)
}

// TestTokenRefusalSaysWhy: the 403's status_msg names the reason, so that
// a student can tell a mangled token from a forged one.
func TestTokenRefusalSaysWhy(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := dial(t, addr)
	tok := c.login("ann")
	raw, _ := base64.StdEncoding.DecodeString(tok)
	for _, tc := range []struct{ token, want string }{
		{"!!not base64!!", "not base64"},
		{base64.StdEncoding.EncodeToString([]byte(string(raw) + ".x")), "5 dot-separated parts"},
		{base64.StdEncoding.EncodeToString([]byte("bob" + string(raw[len("ann"):]))), "signature does not match"},
	} {
		c.token = tc.token
		r := c.do(c.authed(spec.OpGet, spec.TypeData, "key", "k"))
		wantStatus(t, r, 403)
		if msg := r.StatusMsg(); !strings.Contains(msg, tc.want) || strings.Count(strings.ToLower(msg), "token is wrong") != 1 {
			t.Errorf("token %q: status_msg %q, want one %q and the reason %q", tc.token, msg, "Token is wrong", tc.want)
		}
	}
}

func TestAccountsRefuseCollidingUsers(t *testing.T) {
	h, _ := cheapHash("x")
	if _, err := refserver.NewAccounts(map[string]string{"a.b": h, "a_b": h}, nil); err == nil {
		t.Fatal("a.b and a_b share a folder but were accepted")
	}
	if _, err := refserver.NewAccounts(map[string]string{"a/b": h}, nil); err == nil {
		t.Fatal("user a/b accepted")
	}
	if _, err := refserver.NewAccounts(map[string]string{"a": "plain"}, nil); err == nil {
		t.Fatal("a password that is not a bcrypt hash accepted")
	}
}

func TestReadUsersFile(t *testing.T) {
	h, _ := cheapHash("pw")
	path := filepath.Join(t.TempDir(), "users")
	os.WriteFile(path, []byte("# users\n\nalice:"+h+"\n  bob:"+h+"  \n"), 0o600)
	users, err := refserver.ReadUsersFile(path)
	if err != nil || len(users) != 2 || users["alice"] != h || users["bob"] != h {
		t.Fatalf("users %v, err %v", users, err)
	}
	os.WriteFile(path, []byte("alice:"+h+"\nalice:"+h+"\n"), 0o600)
	if _, err := refserver.ReadUsersFile(path); err == nil {
		t.Fatal("duplicate user accepted")
	}
	os.WriteFile(path, []byte("nocolon\n"), 0o600)
	if _, err := refserver.ReadUsersFile(path); err == nil {
		t.Fatal("line without a hash accepted")
	}
}

func TestHashPassword(t *testing.T) {
	h, err := refserver.HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if cost, err := bcrypt.Cost([]byte(h)); err != nil || cost < bcrypt.DefaultCost {
		t.Fatalf("hash %q: cost %d, %v", h, cost, err)
	}
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("correct horse")) != nil {
		t.Fatal("the password does not match its hash")
	}
}

// htpasswd -B writes $2y$ hashes: they are accepted like $2a$ ones.
func TestAccountsAcceptHtpasswdHashes(t *testing.T) {
	h, err := cheapHash("pw")
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(h, "$2a$", "$2y$", 1)
	if !strings.HasPrefix(y, "$2y$") {
		t.Fatalf("hash %q", y)
	}
	acc, err := refserver.NewAccounts(map[string]string{"htuser": y}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := refserver.StartTest(t, refserver.Config{Accounts: acc})
	c := dial(t, addr)
	wantStatus(t, c.do(req(spec.OpLogin, spec.TypeAuth, "username", "htuser", "password", "pw")), 200)
	wantStatus(t, c.do(req(spec.OpLogin, spec.TypeAuth, "username", "htuser", "password", "pW")), 401)
}

// EXT-6: every successful LOGIN, in course and account mode, advertises
// pipelining; a refused one does not.
func TestLoginAdvertisesPipelining(t *testing.T) {
	hash, err := cheapHash("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	acc, err := refserver.NewAccounts(map[string]string{"ann": hash}, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	course, _ := refserver.StartTest(t, refserver.Config{})
	account, _ := refserver.StartTest(t, refserver.Config{Accounts: acc, TokenTTL: time.Hour})
	for _, tc := range []struct {
		name, addr, user, pass string
		status                 int
	}{
		{"course", course, "2362202", refserver.CoursePassword("2362202"), 200},
		{"course refused", course, "2362202", "wrong", 401},
		{"account", account, "ann", "s3cret", 200},
		{"account refused", account, "ann", "wrong", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, tc.addr)
			r := c.do(req(spec.OpLogin, spec.TypeAuth, "username", tc.user, "password", tc.pass))
			wantStatus(t, r, tc.status)
			raw, ok := r.Raw("pipelining")
			if tc.status != 200 {
				if ok {
					t.Fatalf("refused login advertises pipelining: %s", r.JSONString())
				}
				return
			}
			if !ok || string(raw) != "true" {
				t.Fatalf("pipelining = %s (present %v), want true: %s", raw, ok, r.JSONString())
			}
		})
	}
}
