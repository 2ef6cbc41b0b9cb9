package interop_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stepkit/stepkit/grade"
	"github.com/stepkit/stepkit/internal/testbin"
	"github.com/stepkit/stepkit/sandbox"
)

// stepkitBin is the stepkit binary the conformance runs use, built once.
var stepkitBin string

func TestMain(m *testing.M) {
	code := testbin.Run(m, &stepkitBin)
	if runOut != "" && os.Getenv("INTEROP_KEEP") == "" {
		os.RemoveAll(filepath.Dir(runOut))
	}
	os.Exit(code)
}

// requireTool skips a test that needs what this machine lacks, except
// under CI, where it fails.
func requireTool(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: %s", why)
	}
	t.Skip(why)
}

func requireSandbox(t testing.TB) {
	t.Helper()
	ok, why := sandbox.Available()
	requireTool(t, ok, "network namespaces: "+why)
	_, err := exec.LookPath("python3")
	requireTool(t, err == nil, "python3 not found")
}

// The fixture class: small Python programs written for these tests, each
// with one known defect or none.
const (
	serverRun = "python3 server.py"
	clientRun = "python3 client.py --server_ip {host} --id {user} --f {file}"
)

type fixture struct {
	id, run string
}

var (
	fixtureServers = []fixture{
		{"good", serverRun},
		{"plan12800", serverRun + " --block-size 12800"},
		{"single", serverRun + " --single"},
		{"threaded", serverRun + " --port {port}"},
	}
	fixtureClients = []fixture{
		{"good", clientRun + " --dir {dir}"},
		{"fixedblock", clientRun + " --fixed-block"},
		{"charcount", clientRun + " --char-count"},
		{"twoconn", clientRun + " --second-conn"},
	}
)

// class writes the fixture class into dir and returns its submissions.
func class(t testing.TB, dir string, servers, clients []fixture) (srv, cli []grade.Submission) {
	t.Helper()
	mk := func(side, file string, fs []fixture) []grade.Submission {
		src, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		var subs []grade.Submission
		for _, f := range fs {
			d := filepath.Join(dir, side, f.id)
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, file), src, 0o644); err != nil {
				t.Fatal(err)
			}
			subs = append(subs, grade.Submission{ID: f.id, Dir: d, Run: f.run})
		}
		return subs
	}
	return mk("servers", "server.py", servers), mk("clients", "client.py", clients)
}
