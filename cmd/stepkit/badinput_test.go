package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stepkit/stepkit/refserver"
)

// TestCLIBadInput runs every command with the mistakes people make and
// checks that each gets the documented exit status and one clear line on
// stderr, naming what is wrong.
func TestCLIBadInput(t *testing.T) {
	clientEnv(t)
	dir := t.TempDir()
	file, _ := randomFile(t, dir, "f.bin", 100, 7)
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("these are notes, not packets\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.bin")
	down := closedAddr(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	user := []string{"--user", "u"}

	cases := []struct {
		name string
		args []string
		want int
		msg  string // in the one line on stderr
	}{
		// Unknown flags and commands.
		{"unknown root flag", []string{"--bogus"}, exitUsage, "unknown flag: --bogus"},
		{"unknown upload flag", []string{"upload", "--bogus", file}, exitUsage, "upload: unknown flag: --bogus"},
		{"unknown serve flag", []string{"serve", "--bogus"}, exitUsage, "serve: unknown flag"},
		{"unknown dump flag", []string{"dump", "--bogus", text}, exitUsage, "dump: unknown flag"},
		{"unknown data put flag", []string{"data", "put", "--bogus"}, exitUsage, "data put: unknown flag"},
		{"unknown conformance flag", []string{"conformance", "--bogus"}, exitUsage, "conformance: unknown flag"},
		{"unknown course-client flag", []string{"course-client", "--bogus", "x"}, exitUsage, "course-client: unknown flag: --bogus"},
		{"bad duration", []string{"login", "--timeout", "soon"}, exitUsage, `invalid argument "soon"`},
		{"unknown command", []string{"uplod"}, exitUsage, `unknown command "uplod" (did you mean upload?)`},
		{"unknown data command", []string{"data", "list"}, exitUsage, `unknown command "list" for data`},
		{"unknown help topic", []string{"help", "nosuch"}, exitUsage, `unknown help topic "nosuch" (see 'stepkit --help')`},
		{"mistyped help topic", []string{"help", "uplod"}, exitUsage, `unknown help topic "uplod" (did you mean upload?)`},
		{"mistyped help subtopic", []string{"help", "data", "pt"}, exitUsage, `unknown help topic "data pt" (did you mean put`},

		// Missing and extra arguments.
		{"upload without FILE", []string{"upload"}, exitUsage, "upload needs at least one FILE"},
		{"download without KEY", []string{"download"}, exitUsage, "download takes one KEY, got 0"},
		{"download with two KEYs", []string{"download", "a", "b"}, exitUsage, "download takes one KEY, got 2"},
		{"rm without KEY", []string{"rm"}, exitUsage, "rm needs at least one KEY"},
		{"data get without KEY", []string{"data", "get"}, exitUsage, "data get takes one KEY"},
		{"data rm without KEY", []string{"data", "rm"}, exitUsage, "data rm takes one KEY"},
		{"data put with two DOCs", []string{"data", "put", "{}", "{}"}, exitUsage, "data put takes at most one DOC"},
		{"login with an argument", []string{"login", "2362202"}, exitUsage, `login takes no arguments, got ["2362202"]`},
		{"serve with an argument", []string{"serve", "./store"}, exitUsage, "serve takes no arguments"},
		{"bench with an argument", []string{"bench", "127.0.0.1:1379"}, exitUsage, "bench takes no arguments"},
		{"version with an argument", []string{"version", "now"}, exitUsage, "version takes no arguments"},
		{"dump with two captures", []string{"dump", text, text}, exitUsage, "dump takes one capture"},
		{"course-client without -f", []string{"course-client", "--server_ip", "127.0.0.1", "--id", "1"}, exitUsage, "-f FILE"},

		// Addresses that cannot be dialled as written.
		{"server without port", append([]string{"login", "--server", "lab-pc-07"}, user...), exitUsage, `--server "lab-pc-07": want host:port`},
		{"server port out of range", append([]string{"login", "--server", "127.0.0.1:99999"}, user...), exitUsage, `port "99999" is not a TCP port`},
		{"server port not a number", append([]string{"upload", file, "--server", "127.0.0.1:step"}, user...), exitUsage, `port "step" is not a TCP port`},
		{"bench target port", []string{"bench", "--target", "127.0.0.1:0"}, exitUsage, `--target "127.0.0.1:0": port "0"`},
		{"conformance target port", []string{"conformance", "--target", "127.0.0.1:http"}, exitUsage, `--target "127.0.0.1:http": port "http"`},
		{"course-client port", []string{"course-client", "--server_ip", "127.0.0.1", "--port", "70000", "--id", "1", "-f", file}, exitUsage, `port "70000"`},

		// Local files.
		{"upload a missing file", append([]string{"upload", missing, "--server", down}, user...), exitUsage, "missing.bin: no such file or directory"},
		{"upload a directory", append([]string{"upload", dir, "--server", down}, user...), exitUsage, "is not a regular file"},
		{"course-client a missing file", []string{"course-client", "--server_ip", "127.0.0.1", "--id", "1", "-f", missing}, exitUsage, "no such file or directory"},
		{"dump a missing capture", []string{"dump", missing}, exitFailure, "missing.bin: no such file or directory"},
		{"dump a directory", []string{"dump", dir}, exitFailure, "is a directory, not a capture"},
		{"dump a text file", []string{"dump", text}, exitFailure, "not a pcap or pcapng capture"},
		{"dump nothing", []string{"dump", "-"}, exitFailure, "empty input: not a capture"},
		{"data put not JSON", append([]string{"data", "put", "grade: 92", "--server", down}, user...), exitUsage, "DOC is not a JSON object"},

		// A server that cannot start.
		{"serve on a port in use", []string{"serve", "--addr", busy.Addr().String(), "--root", filepath.Join(dir, "store")}, exitNetwork, "address already in use"},
		{"serve with a bad block size", []string{"serve", "--addr", "127.0.0.1:0", "--block-size", "0"}, exitUsage, "--block-size 0 is outside"},
		{"serve with a negative per-address cap", []string{"serve", "--addr", "127.0.0.1:0", "--max-conns-per-ip", "-3"}, exitUsage, "--max-conns-per-ip must not be negative"},
		{"serve with a bad frame memory", []string{"serve", "--addr", "127.0.0.1:0", "--max-frame-memory", "lots"}, exitUsage, `--max-frame-memory: "lots" is not a byte count`},
		{"serve with a bad frame rate", []string{"serve", "--addr", "127.0.0.1:0", "--min-frame-rate", "-1KiB"}, exitUsage, "--min-frame-rate"},
		{"bad journal age", append([]string{"upload", file, "--journal-max-age", "a week"}, user...), exitUsage, `--journal-max-age "a week" is not a duration`},
		{"negative retries", append([]string{"login", "--retries", "-1"}, user...), exitUsage, "--retries must not be negative"},

		// A server that cannot be reached.
		{"login unreachable", append([]string{"login", "--server", down}, user...), exitNetwork, "connect to " + down},
		{"upload unreachable", append([]string{"upload", file, "--server", down}, user...), exitNetwork, "connect to " + down},
		{"download unreachable", append([]string{"download", "f.bin", "-o", filepath.Join(dir, "x"), "--server", down}, user...), exitNetwork, "connect to " + down},
		{"rm unreachable", append([]string{"rm", "f.bin", "--server", down}, user...), exitNetwork, "connect to " + down},
		{"data get unreachable", append([]string{"data", "get", "k", "--server", down}, user...), exitNetwork, "connect to " + down},
		{"bench unreachable", []string{"bench", "--target", down, "--requests", "2", "--clients", "1"}, exitNetwork, "no operation succeeded"},
		{"conformance unreachable", []string{"conformance", "--target", down, "FRAME-1"}, exitNetwork, down + " cannot be reached"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(t, "", tc.args...)
			if code != tc.want || !strings.Contains(errs, tc.msg) {
				t.Errorf("stepkit %q: exit %d (want %d), stderr %q (want %q in it)", tc.args, code, tc.want, errs, tc.msg)
			}
			if lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n"); len(lines) != 1 {
				t.Errorf("stepkit %q: %d lines on stderr, want one: %q", tc.args, len(lines), errs)
			}
		})
	}
}

// TestCLIGroupsPrintHelp checks that a command that only groups others
// prints its help when called alone and succeeds.
func TestCLIGroupsPrintHelp(t *testing.T) {
	for _, args := range [][]string{nil, {"data"}} {
		code, out, errs := runCLI(t, "", args...)
		if code != exitOK || !strings.Contains(out, "Available Commands:") || errs != "" {
			t.Errorf("stepkit %q: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
}

// TestCLILocalFileErrorIsNotNetwork checks that a download whose
// destination cannot be written fails with status 1, not as a network
// error (a local syscall error must not pass for one).
func TestCLILocalFileErrorIsNotNetwork(t *testing.T) {
	clientEnv(t)
	addr, _ := refserver.StartTest(t, refserver.Config{})
	dir := t.TempDir()
	file, _ := randomFile(t, dir, "f.bin", 3000, 8)
	conn := []string{"--server", addr, "--user", "u"}
	if code, _, errs := runCLI(t, "", append([]string{"upload", file}, conn...)...); code != exitOK {
		t.Fatalf("upload: %d %s", code, errs)
	}
	dest := filepath.Join(file, "copy") // under a regular file: not a directory
	code, _, errs := runCLI(t, "", append([]string{"download", "f.bin", "-o", dest}, conn...)...)
	if code != exitFailure || !strings.Contains(errs, "not a directory") || strings.Count(errs, "\n") != 1 {
		t.Errorf("download to %s: exit %d (want %d), stderr %q", dest, code, exitFailure, errs)
	}
}

func TestCLIHelpTopic(t *testing.T) {
	for _, args := range [][]string{{"help", "upload"}, {"help", "data", "put"}} {
		code, stdout, stderr := runCLI(t, "", args...)
		if code != 0 || stderr != "" || !strings.Contains(stdout, "Usage:") {
			t.Errorf("stepkit %v: exit %d, stderr %q, stdout %.80q", args, code, stderr, stdout)
		}
	}
}
