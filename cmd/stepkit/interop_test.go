package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepkit/stepkit/sandbox"
)

// TestInteropUsageErrors checks that every mistake on interop's command
// line is exit status 2 and one line naming it.
func TestInteropUsageErrors(t *testing.T) {
	servers, clients := t.TempDir(), t.TempDir()
	os.Mkdir(filepath.Join(servers, "s1"), 0o755)
	os.Mkdir(filepath.Join(clients, "c1"), 0o755)
	empty, out := t.TempDir(), t.TempDir()
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"interop", "--servers", servers, "--clients", clients}, "needs --servers DIR, --clients DIR and --out OUT"},
		{[]string{"interop", "--servers", servers, "--out", out}, "needs --servers DIR, --clients DIR and --out OUT"},
		{[]string{"interop", "--servers", empty, "--clients", clients, "--out", out}, "servers: class folder"},
		{[]string{"interop", "--servers", servers, "--clients", clients, "--out", out, "--client-run", "python3 c.py {host}"}, "has no {file}"},
		{[]string{"interop", "--servers", servers, "--clients", clients, "--out", out, "--client-run", "c {file} {bogus}"}, "unknown placeholder {bogus}"},
		{[]string{"interop", "--servers", servers, "--clients", clients, "--out", out, "--scenario", "huge"}, `--scenario "huge"`},
		{[]string{"interop", "--servers", servers, "--clients", clients, "--out", out, "--jobs", "-2"}, "--jobs -2"},
		{[]string{"interop", "--servers", servers, "--clients", clients, "--out", out, "--memory", "x"}, `--memory "x"`},
		{[]string{"interop", "--servers", servers, "--clients", clients, "--out", out, "--client-timeout", "0s"}, "must be positive"},
		{[]string{"interop", "--servers", servers, "--clients", clients, "--out", out, "extra"}, "extra"},
	} {
		code, stdout, stderr := runCmd(t, c.args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != exitUsage || len(lines) != 1 || !strings.Contains(stderr, c.msg) {
			t.Errorf("%q: exit %d, stderr %q (stdout %q); want exit %d and one line with %q", c.args, code, stderr, stdout, exitUsage, c.msg)
		}
	}
}

// TestInteropCommand runs a class of one server (stepkit serve, through
// the template) and one client (stepkit course-client) through the
// command: four pairs with stepkit's own, all passing, and the reports.
func TestInteropCommand(t *testing.T) {
	if ok, why := sandbox.Available(); !ok {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI: namespaces: %s", why)
		}
		t.Skip(why)
	}
	// The test binary is stepkit when asStepkit is set; each program's
	// folder holds a copy, as a student's would hold their program.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	servers, clients := t.TempDir(), t.TempDir()
	for _, d := range []string{filepath.Join(servers, "ref"), filepath.Join(clients, "course")} {
		os.Mkdir(d, 0o755)
		os.WriteFile(filepath.Join(d, "stepkit"), bin, 0o755)
	}
	out := filepath.Join(t.TempDir(), "out")
	code, stdout, stderr := runCmd(t, "interop", "--servers", servers, "--clients", clients, "--out", out,
		"--server-run", asStepkit+"=1 GORACE=atexit_sleep_ms=0 ./stepkit serve --root store --addr 127.0.0.1:{port}",
		"--client-run", "env "+asStepkit+"=1 GORACE=atexit_sleep_ms=0 ./stepkit course-client --server_ip {host} --id {user} -f {file}",
		"--scenario", "course", "--scenario", "nonascii", "--no-conformance", "--no-progress")
	if code != 0 {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "4 pairs in") || !strings.Contains(stdout, "4 PASS") {
		t.Errorf("stdout %q: want 4 pairs, all passing", stdout)
	}
	f, err := os.Open(filepath.Join(out, "interop.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil || len(recs) != 5 {
		t.Fatalf("interop.csv: %d rows, %v", len(recs), err)
	}
	if recs[4][0] != "ref" || recs[4][1] != "course" || recs[4][2] != "PASS" {
		t.Errorf("the students' pair: %v", recs[4])
	}
	for _, p := range []string{"interop.html", "servers/ref.html", "clients/course.html", "cells/ref/course/course.pcapng"} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Error(err)
		}
	}
}
