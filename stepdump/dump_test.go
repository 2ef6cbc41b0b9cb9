package stepdump_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepkit/stepkit/stepdump"
	"github.com/stepkit/stepkit/stepdump/capgen"
)

var update = flag.Bool("update", false, "rewrite the golden outputs of the fixture captures")

const capturesDir = "../fixtures/captures"

// fixtures lists the committed captures.
func fixtures(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, pat := range []string{"*.pcap", "*.pcapng"} {
		m, err := filepath.Glob(filepath.Join(capturesDir, pat))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	if len(out) < 10 {
		t.Fatalf("only %d fixture captures in %s", len(out), capturesDir)
	}
	return out
}

// fixtureArgs are the flags a fixture needs beyond the defaults.
func fixtureArgs(name string) []string {
	for _, s := range capgen.Scenarios() {
		if s.Name == name {
			return s.Args
		}
	}
	return nil
}

func configFor(name string) stepdump.Config {
	cfg := stepdump.Config{Name: name, Verbose: true}
	for _, a := range fixtureArgs(name) {
		if a == "--port" {
			cfg.OnlyPort = true
		}
	}
	return cfg
}

func runFixture(t testing.TB, path string, cfg stepdump.Config) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	if _, err := stepdump.Run(context.Background(), f, &out, cfg); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out.String()
}

// TestGolden decodes every fixture capture to text (-v, then --summary)
// and to JSON lines (--json -v, then --json --summary) and compares with
// the committed outputs.
func TestGolden(t *testing.T) {
	for _, path := range fixtures(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			cfg := configFor(name)
			text := runFixture(t, path, cfg)
			cfg.JSON = true
			js := runFixture(t, path, cfg)
			cfg.Summary = true
			js += runFixture(t, path, cfg)
			cfg.JSON = false
			sum := runFixture(t, path, cfg)
			checkGolden(t, filepath.Join(capturesDir, "golden", name+".txt"), text+"\n"+sum)
			checkGolden(t, filepath.Join(capturesDir, "golden", name+".jsonl"), js)
		})
	}
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./stepdump -run TestGolden -update)", err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s differs at line %d:\n got: %s\nwant: %s", path, i+1, g, w)
			}
		}
	}
}

// TestFixturesRegenerate checks that the generator still writes the
// committed generated captures byte for byte.
func TestFixturesRegenerate(t *testing.T) {
	for _, s := range capgen.Scenarios() {
		var b bytes.Buffer
		if err := s.Write(&b); err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		have, err := os.ReadFile(filepath.Join(capturesDir, s.Name))
		if err != nil {
			t.Fatalf("%s: %v (run go run ./fixtures/gen)", s.Name, err)
		}
		if !bytes.Equal(have, b.Bytes()) {
			t.Errorf("%s: committed capture differs from the generator's output (run go run ./fixtures/gen)", s.Name)
		}
	}
}
