package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/spec"
	"github.com/stepkit/stepkit/stepdump/capgen"
)

const dumpCaptures = "../../fixtures/captures"

func dumpRun(t *testing.T, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"dump"}, args...), bytes.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestDumpText(t *testing.T) {
	code, out, errs := dumpRun(t, nil, filepath.Join(dumpCaptures, "basic.pcap"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 24 {
		t.Fatalf("%d lines, want one per message (24):\n%s", len(lines), out)
	}
	if !strings.Contains(lines[1], "LOGIN AUTH 200") || !strings.Contains(lines[1], "answers #1 after 300µs") {
		t.Errorf("line 2 = %q", lines[1])
	}
	if strings.Contains(out, "\x1b[") {
		t.Error("colour escapes in output that is not a terminal")
	}
	_, coloured, _ := dumpRun(t, nil, "--color", "always", filepath.Join(dumpCaptures, "basic.pcap"))
	if !strings.Contains(coloured, "\x1b[32m200") {
		t.Error("--color always: no green status")
	}
}

func TestDumpStdinJSONAndSummary(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(dumpCaptures, "pcapng.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := dumpRun(t, b, "--json", "--summary", "-")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, `"kind":"summary","conn":1,"client":"10.0.0.2:40001","server":"10.0.0.1:1379","user":"alice"`) {
		t.Errorf("no summary for alice in:\n%s", out)
	}
	if strings.Contains(out, `"kind":"message"`) {
		t.Error("--summary printed messages")
	}
	code, out, _ = dumpRun(t, nil, "--summary", filepath.Join(dumpCaptures, "diagnoses.pcap"))
	if code != exitOK || !strings.Contains(out, "1 unanswered requests") || !strings.Contains(out, "upload-never-completed") {
		t.Errorf("text summary:\n%s", out)
	}
}

func TestDumpBadInput(t *testing.T) {
	dir := t.TempDir()
	notCapture := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notCapture, []byte("hello, this is text\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{filepath.Join(dir, "missing.pcap")}, exitFailure, "no such file"},
		{[]string{notCapture}, exitFailure, "not a pcap or pcapng capture"},
		{[]string{"--port", "70000", notCapture}, exitUsage, "not a TCP port"},
		{[]string{"--color", "pink", notCapture}, exitUsage, "--color"},
		{[]string{"a.pcap", "b.pcap"}, exitUsage, "one capture"},
		{[]string{"-w", filepath.Join(dir, "out.pcapng"), notCapture}, exitUsage, "--write goes with a live capture"},
		{[]string{"--duration", "1s", notCapture}, exitUsage, "--duration goes with a live capture"},
		{[]string{"-i", "lo", notCapture}, exitUsage, "give no capture file as well"},
		{[]string{"-i", "lo", "--count", "-1"}, exitUsage, "must not be negative"},
		{[]string{"-i", "no-such-interface0"}, exitFailure, `no interface "no-such-interface0"`},
	} {
		code, _, errs := dumpRun(t, nil, c.args...)
		if code != c.code || !strings.Contains(errs, c.msg) {
			t.Errorf("dump %v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, errs, c.code, c.msg)
		}
	}
}

// TestDumpExtractMismatch: a server that announces the wrong MD5 makes
// --extract fail with the MD5 exit code.
func TestDumpExtractMismatch(t *testing.T) {
	c := capgen.NewConn(netip.MustParseAddrPort("10.0.0.2:40001"), netip.MustParseAddrPort("10.0.0.1:1379"),
		time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC), 0)
	s := capgen.NewSession(c, "ivan")
	c.Handshake()
	s.Login()
	data := capgen.Pattern(6000, 4)
	p := s.SavePlan("f.bin", int64(len(data)), 4096)
	for i := int64(0); i < p.Total; i++ {
		resp := s.UploadResp(p, i, data)
		if resp.Has(spec.FieldMD5) {
			sum := md5.Sum([]byte("something else"))
			resp.Set(spec.FieldMD5, hex.EncodeToString(sum[:]))
		}
		s.Do(s.UploadReq(p, i, data), resp)
	}
	c.Close()
	var capture bytes.Buffer
	w, err := capgen.NewWriter(&capture, capgen.Ethernet, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteAll(c); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	code, out, errs := dumpRun(t, capture.Bytes(), "--extract", dir, "-")
	if code != exitMismatch || !strings.Contains(errs, "do not match") || !strings.Contains(out, "DIFFERS") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr: %s", code, out, errs)
	}
	got, err := os.ReadFile(filepath.Join(dir, "uploads", "ivan", "f.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("extracted file: %v (%d bytes)", err, len(got))
	}
}

func TestDumpDiagramFlag(t *testing.T) {
	out := filepath.Join(t.TempDir(), "ladder.html")
	code, _, errs := dumpRun(t, nil, "--diagram", out, "--summary", filepath.Join(dumpCaptures, "multi.pcap"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "<!DOCTYPE html>") || strings.Count(string(b), `<div class="ladder"`) != 2 {
		t.Errorf("diagram is not an HTML page with one ladder per connection")
	}
}

// TestDumpFindsSTEPOnAnyPort: a capture of a server on port 8000 decodes
// without flags and names the port; --port restricts, and says where STEP
// was not found.
func TestDumpFindsSTEPOnAnyPort(t *testing.T) {
	capture := filepath.Join(dumpCaptures, "anyport.pcap")
	code, out, errs := dumpRun(t, nil, capture)
	if code != exitOK || strings.Count(out, "→ #") != 12 || !strings.Contains(out, "step-on-other-port: STEP recognised by its bytes on port 8000 (1 connection)") {
		t.Fatalf("exit %d, stderr %q:\n%s", code, errs, out)
	}
	if code, out, _ := dumpRun(t, nil, "--summary", capture); code != exitOK || !strings.Contains(out, "24 messages, STEP on port 8000") {
		t.Fatalf("--summary does not name port 8000: exit %d:\n%s", code, out)
	}
	code, out, _ = dumpRun(t, nil, "--port", "1379", capture)
	if code != exitOK || strings.Contains(out, "→ #") || !strings.Contains(out, "no STEP message on port 1379") || !strings.Contains(out, "leave out --port") {
		t.Fatalf("--port 1379: exit %d:\n%s", code, out)
	}
	code, out, _ = dumpRun(t, nil, "--port", "8000", capture)
	if code != exitOK || strings.Count(out, "→ #") != 12 || strings.Contains(out, "step-on-other-port") {
		t.Fatalf("--port 8000: exit %d:\n%s", code, out)
	}
}
