package grade_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepkit/stepkit/grade"
)

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"2362202", "alice.w", ".git"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644)
	subs, err := grade.Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 2 || subs[0].ID != "2362202" || subs[1].ID != "alice.w" || !filepath.IsAbs(subs[0].Dir) {
		t.Errorf("submissions %+v", subs)
	}
	if _, err := grade.Discover(t.TempDir()); err == nil || !strings.Contains(err.Error(), "holds no submission") {
		t.Errorf("empty class folder: %v", err)
	}
	os.Mkdir(filepath.Join(dir, "bad name"), 0o755)
	if _, err := grade.Discover(dir); err == nil || !strings.Contains(err.Error(), "not a usable student id") {
		t.Errorf("a folder with a space: %v", err)
	}
}

func TestReadRoster(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"a1", "b2", "elsewhere"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	subs, err := grade.ReadRoster(strings.NewReader("\ufeffid,path,run,stdin\nb2,elsewhere,\"python3 main.py --port {port}\",\n# a comment\na1,,,yes\\n\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 2 || subs[0].ID != "a1" || subs[0].Dir != filepath.Join(dir, "a1") || subs[0].Stdin != "yes\n" ||
		subs[1].Dir != filepath.Join(dir, "elsewhere") || subs[1].Run != "python3 main.py --port {port}" {
		t.Errorf("roster read as %+v", subs)
	}
	for _, c := range []struct{ csv, want string }{
		{"", "empty"},
		{"name,path\n", `unknown column "name"`},
		{"path,run\n", "no id column"},
		{"id,id\n", "twice"},
		{"id\n", "no student"},
		{"id\na1\na1\n", "already on line 2"},
		{"id\nnobody\n", "no such folder"},
		{"id\n../x\n", "not a usable student id"},
		{"id,run\na1,\"unclosed\n", "roster"},
	} {
		_, err := grade.ReadRoster(strings.NewReader(c.csv), dir)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("roster %q: error %v, want one with %q", c.csv, err, c.want)
		}
	}
}

func TestExpand(t *testing.T) {
	got, err := grade.Expand(`cd src && python3 server.py --port {port} --root {dir}/x ${HOME:-/} {id}`,
		map[string]string{"port": "1379", "dir": "/tmp/a b", "id": "it's"})
	if err != nil {
		t.Fatal(err)
	}
	want := `cd src && python3 server.py --port 1379 --root '/tmp/a b'/x ${HOME:-/} 'it'\''s'`
	if got != want {
		t.Errorf("expanded to\n%s\nwant\n%s", got, want)
	}
	if _, err := grade.Expand("python3 s.py --port {prot}", map[string]string{"port": "1"}); err == nil || !strings.Contains(err.Error(), "unknown placeholder {prot}") {
		t.Errorf("a misspelt placeholder: %v", err)
	}
}
