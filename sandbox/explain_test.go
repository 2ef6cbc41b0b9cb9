package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExplainReadsRuntimesErrors: the error lines of common runtimes that
// a restriction causes are explained in words; the program's own errors
// (in its folder, /tmp, a non-blocking socket) are not.
func TestExplainReadsRuntimesErrors(t *testing.T) {
	work := "/tmp/stepkit-sandbox-1-2-3"
	isolated := &Sandbox{cfg: Config{Memory: 256 << 20}, workDir: work, memLimit: "cgroup", cgroups: &cgroups{}}
	outside := "denied writing /var/lib/step/x: outside the submission's folder (a program may write only its folder, /tmp and /dev/shm)"
	for _, c := range []struct{ output, ended, want string }{
		{"Traceback (most recent call last):\n  File \"server.py\", line 3\nOSError: [Errno 30] Read-only file system: '/var/lib/step/x'\n", "exit status 1", outside},
		{"Error: EROFS: read-only file system, open '/var/lib/step/x'\n    at Object.openSync (node:fs:596:3)\n", "exit status 1", outside},
		{"2026/12/05 open /var/lib/step/x: read-only file system\n", "exit status 1", outside},
		{"java.io.FileNotFoundException: /var/lib/step/x (Read-only file system)\n", "", outside},
		{"PermissionError: [Errno 13] Permission denied: '/root/.step'\n", "",
			"denied /root/.step (permission denied): outside the submission's folder (a program may write only its folder, /tmp and /dev/shm); the program runs as nobody (uid 65534)"},
		{"PermissionError: [Errno 13] Permission denied\n", "",
			"denied: the program runs as nobody (uid 65534) without capabilities: no port below 1024, no chown, no writing outside its folder, /tmp and /dev/shm"},
		{"PermissionError: [Errno 13] Permission denied: 'store/x.bin'\n", "", ""}, // its own folder
		{"PermissionError: [Errno 13] Permission denied: '" + work + "/x'\n", "", ""},
		{"PermissionError: [Errno 13] Permission denied: '../../etc/x'\n", "", "denied /etc/x (permission denied): outside the submission's folder (a program may write only its folder, /tmp and /dev/shm); the program runs as nobody (uid 65534)"},
		{"OSError: [Errno 28] No space left on device: '/tmp/big'\n", "", "no space left in /tmp: it is a 64 MiB tmpfs"},
		{"OSError: [Errno 28] No space left on device\n", "", "no space left on device: /tmp is a 64 MiB tmpfs, /dev/shm 128 MiB"},
		{"OSError: [Errno 24] Too many open files\n", "", "open-file limit 1024 reached"},
		{"MemoryError\n", "exit status 1", "out of memory: memory limit 256 MiB (cgroup)"},
		{"  File \"s.py\", line 9, in serve\n    pid = os.fork()\nBlockingIOError: [Errno 11] Resource temporarily unavailable\n", "", "task limit reached: 256 processes and threads"},
		{"  File \"s.py\", line 9, in serve\n    data = conn.recv(8)\nBlockingIOError: [Errno 11] Resource temporarily unavailable\n", "", ""},
		{"socket.gaierror: [Errno -3] Temporary failure in name resolution\n", "", "no network: the sandbox has only loopback (127.0.0.1); only localhost and its own host name resolve"},
		{"FileNotFoundError: [Errno 2] No such file or directory: '/dev/dsp'\n", "", "no /dev/dsp in the sandbox: /dev holds null, zero, full, random, urandom, tty, shm and mqueue"},
		{"FileNotFoundError: [Errno 2] No such file or directory: 'missing.txt'\n", "", ""},
		{"FileNotFoundError: [Errno 2] No such file or directory: '/var/lib/step/k.json'\n", "",
			"no /var/lib/step/k.json in the sandbox: outside the submission's folder, which alone is copied in (the system's folders are read-only)"},
		{"open /tmp/x/y: no such file or directory\n", "", ""},
		{"serving\n", "killed: memory limit (256 MiB)", "killed: memory limit 256 MiB"},
		{"", "exit status 0 (a process was killed: memory limit (256 MiB))", "a process was killed: memory limit 256 MiB"},
		{"", "killed: CPU time limit (2m0s)", "killed: CPU time limit 2m0s"},
		{"block 3 refused: status 406\n", "exit status 1", ""},
	} {
		if got := isolated.Explain(c.output, c.ended); got != c.want {
			t.Errorf("Explain(%q, %q)\n = %q\nwant %q", c.output, c.ended, got, c.want)
		}
	}
	// On the host, the host's own rules apply: nothing to blame on a sandbox.
	host := &Sandbox{cfg: Config{}, workDir: work, why: "no namespaces", memLimit: "RLIMIT_AS"}
	if got := host.Explain("OSError: [Errno 30] Read-only file system: '/var/lib/step/x'\n", "exit status 1"); got != "" {
		t.Errorf("not isolated: %q, want nothing", got)
	}
}

// TestExplainProgramsThatHitRestrictions runs programs that write outside
// their folder, fill /tmp and open too many files, and explains how each
// failed from what it printed.
func TestExplainProgramsThatHitRestrictions(t *testing.T) {
	needIsolation(t)
	needPython(t)
	s := newSandbox(t, Config{Dir: t.TempDir(), Memory: 256 << 20})
	ctx := testContext(t)
	for _, c := range []struct{ code, want string }{
		{"open('/var/lib/stepkit-check', 'w').write('x')", "denied writing /var/lib/stepkit-check: outside the submission's folder"},
		{"open('/tmp/big', 'wb').write(bytes(100 << 20))", "no space left on device: /tmp is a 64 MiB tmpfs"},
		{"fs = [open('/dev/null') for _ in range(2000)]", "open-file limit 1024 reached"},
		{"open('data.txt', 'w').write('x'); print('ok')", ""},
	} {
		cmd := s.Command(ctx, []string{"python3", "-c", c.code})
		out, err := cmd.CombinedOutput()
		got := s.Explain(string(out), s.Describe(err, cmd.ProcessState))
		if !strings.HasPrefix(got, c.want) || (c.want == "") != (got == "") {
			t.Errorf("%s:\n%s\nExplain = %q, want %q", c.code, out, got, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(s.WorkDir(), "data.txt")); err != nil {
		t.Errorf("the program could not write its folder: %v", err)
	}
}
