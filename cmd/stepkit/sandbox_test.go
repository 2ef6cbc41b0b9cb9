package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stepkit/stepkit/sandbox"
)

// TestSandboxCheck: stepkit sandbox check prints, line by line, what a
// program can and cannot do in the sandbox grade makes, with the bounds of
// its flags, as text and as JSON, and exits 0 when nothing is unexpected.
func TestSandboxCheck(t *testing.T) {
	if ok, why := sandbox.Available(); !ok {
		if os.Getenv("CI") == "true" {
			t.Fatalf("isolation is needed under CI: %s", why)
		}
		t.Skipf("no isolation here (%s); CI runs this", why)
	}
	code, out, errOut := runCmd(t, "sandbox", "check", "--memory", "256MiB", "--cpu", "30s")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q\n%s", code, errOut, out)
	}
	for _, line := range []string{
		"sandbox: isolated",
		"  can     bind 127.0.0.1:1379: listening on 127.0.0.1:1379\n",
		"  can     bind 0.0.0.0:1379",
		"  can     resolve localhost: 127.0.0.1\n",
		"  can     resolve its host name",
		"  can     write its folder",
		"  can     write /tmp\n",
		"  can     write /dev/shm\n",
		"  can     write $HOME",
		"  cannot  write /etc: read-only file system\n",
		"  cannot  reach the network",
		"  can     fork and exec",
		"  can     threads",
		"  can     POSIX semaphore",
		"  limit   CPU time (RLIMIT_CPU): 30s, hard 31s\n",
		"  limit   file size (RLIMIT_FSIZE): 8 GiB\n",
		"  limit   open files (RLIMIT_NOFILE): 1024\n",
		"  limit   /dev/shm size: 128 MiB",
		"  limit   memory: 256 MiB per program",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("no %q in:\n%s", line, out)
		}
	}
	if strings.Contains(out, "UNEXPECTED") {
		t.Errorf("unexpected lines:\n%s", out)
	}

	code, out, errOut = runCmd(t, "sandbox", "check", "--json")
	var rep sandbox.CheckReport
	if err := json.Unmarshal([]byte(out), &rep); code != exitOK || err != nil {
		t.Fatalf("--json: exit %d, %v, stderr %q\n%s", code, err, errOut, out)
	}
	if !rep.Isolated || len(rep.Items) < 20 || len(rep.Surprises()) > 0 {
		t.Errorf("--json: isolated %v, %d items, surprises %+v", rep.Isolated, len(rep.Items), rep.Surprises())
	}

	if code, _, errOut := runCmd(t, "sandbox", "check", "--memory", "1KiB"); code != exitUsage || !strings.Contains(errOut, "--memory") {
		t.Errorf("--memory 1KiB: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, "sandbox", "chek"); code != exitUsage || !strings.Contains(errOut, "did you mean check") {
		t.Errorf("sandbox chek: exit %d, stderr %q", code, errOut)
	}
}
