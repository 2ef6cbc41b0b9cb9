package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepkit/stepkit/conformance"
	"github.com/stepkit/stepkit/refserver"
)

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestConformanceList(t *testing.T) {
	code, out, _ := runCmd(t, "conformance", "--list", "FILE-UPLOAD")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out, "FILE-UPLOAD-6") || strings.Contains(out, "DATA-GET-1") {
		t.Errorf("list output:\n%s", out)
	}
}

func TestConformanceUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"conformance", "--label-filter", "level:MUST &&"},
		{"conformance", "NO-SUCH-THING"},
		{"conformance", "--label-filter", "sec:EARTH", "DATA"},
		{"conformance", "--target", "host:port:extra"},
		{"conformance", "--target", "127.0.0.1:1", "--user", "u"},
		{"conformance", "--block-size", "70000"},
		{"conformance", "--parallel", "0"},
		{"conformance", "--serial", "--parallel", "4"},
	} {
		code, _, errOut := runCmd(t, args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d (%s), want %d", args, code, errOut, exitUsage)
		}
		if !strings.Contains(errOut, "stepkit:") {
			t.Errorf("%v: no message on stderr", args)
		}
	}
}

func TestConformanceUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	code, out, errOut := runCmd(t, "conformance", "--target", addr, "DATA")
	if code != exitNetwork {
		t.Fatalf("exit %d, want %d\n%s%s", code, exitNetwork, out, errOut)
	}
	if !strings.Contains(out, "ERROR in") || !strings.Contains(errOut, "cannot be reached") {
		t.Errorf("output:\n%s\n%s", out, errOut)
	}
}

// The built-in server passes the selected cases and the three report
// files are written.
func TestConformanceBuiltinWithReports(t *testing.T) {
	dir := t.TempDir()
	junit, js, html := filepath.Join(dir, "j.xml"), filepath.Join(dir, "r", "report.json"), filepath.Join(dir, "r.html")
	code, out, errOut := runCmd(t, "conformance", "DATA", "FILE-UPLOAD-2", "EARTH",
		"--junit-report", junit, "--json-report", js, "--html-report", html)
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "CONFORMANT") || strings.Contains(out, "\x1b[") {
		t.Errorf("terminal output:\n%s", out)
	}
	for _, p := range []string{junit, js, html} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("report %s: %v", p, err)
		}
	}
	b, _ := os.ReadFile(js)
	var rep struct {
		Schema     string                `json:"schema"`
		Conformant bool                  `json:"conformant"`
		Cases      []struct{ ID string } `json:"cases"`
		Execution  struct{ Mode string } `json:"execution"`
	}
	if err := json.Unmarshal(b, &rep); err != nil || !rep.Conformant || len(rep.Cases) < 10 || rep.Execution.Mode != "parallel" {
		t.Errorf("JSON report: %v %+v", err, rep)
	}
	if err := conformance.ValidateReport(b); err != nil {
		t.Error(err)
	}
}

// --serial runs one case at a time, and the reports say why.
func TestConformanceSerial(t *testing.T) {
	js := filepath.Join(t.TempDir(), "report.json")
	code, out, errOut := runCmd(t, "conformance", "--serial", "DATA-GET", "--json-report", js)
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "execution: one case at a time: one case at a time was asked for (--serial)") {
		t.Errorf("terminal output:\n%s", out)
	}
	b, _ := os.ReadFile(js)
	var rep conformance.Report
	if err := json.Unmarshal(b, &rep); err != nil || rep.Execution == nil || rep.Execution.Mode != "serial" || rep.Execution.Workers != 1 {
		t.Errorf("JSON report: %v %+v", err, rep.Execution)
	}
}

// --block-size starts the built-in server with that block size and tells
// FILE-SAVE-11 to expect it.
func TestConformanceBlockSize(t *testing.T) {
	code, out, errOut := runCmd(t, "conformance", "--block-size", "12800", "FILE-SAVE-11", "FILE-UPLOAD-2")
	if code != exitOK || !strings.Contains(out, "0 NON-STRICT") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}

// --target against a separately started server, and --strict turning a
// NON-STRICT outcome into exit status 1.
func TestConformanceTargetStrict(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	code, out, _ := runCmd(t, "conformance", "--target", addr, "FILE-SAVE-8", "EXT-2")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	// EXT-2 is INFORMATIONAL against refserver without a rate limit: strict
	// mode ignores it.
	code, out, _ = runCmd(t, "conformance", "--strict", "--target", addr, "EXT-2")
	if code != exitOK || !strings.Contains(out, "INFORMATIONAL") {
		t.Fatalf("strict with only INFORMATIONAL: exit %d\n%s", code, out)
	}
}
