package sandbox

import (
	"os"
	"strings"
	"testing"
)

// probeArg makes the test binary run Probe (see TestMain).
const probeArg = "sandbox-test-probe"

func checkWithTestBinary(t *testing.T, cfg Config) *CheckReport {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Check(testContext(t), cfg, []string{exe, probeArg})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return rep
}

// item finds the report's line about what.
func item(t *testing.T, rep *CheckReport, what string) CheckItem {
	t.Helper()
	for _, it := range rep.Items {
		if it.What == what || strings.HasPrefix(it.What, what) {
			return it
		}
	}
	t.Fatalf("no line %q in the report", what)
	return CheckItem{}
}

// TestCheckReportsWhatProgramsCanDo: the probe, run in a sandbox as a
// submission is, finds everything ordinary programs rely on, finds the
// isolation in place, and reports the limits the Config set.
func TestCheckReportsWhatProgramsCanDo(t *testing.T) {
	needIsolation(t)
	rep := checkWithTestBinary(t, Config{Memory: 256 << 20})
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + text.String())
	if !rep.Isolated {
		t.Fatalf("not isolated: %s", rep.Why)
	}
	if s := rep.Surprises(); len(s) > 0 {
		t.Errorf("unexpected: %+v", s)
	}
	for _, what := range []string{"bind 127.0.0.1:1379", "bind 0.0.0.0:1379", "resolve localhost", "resolve its host name stepkit-sandbox",
		"write its folder", "write /tmp", "write /dev/shm", "write $HOME", "fork and exec", "threads", "POSIX semaphore", "POSIX message queue"} {
		if it := item(t, rep, what); !it.OK || it.Kind != KindCan {
			t.Errorf("%s: %+v, want it to work", what, it)
		}
	}
	for _, what := range []string{"reach the network", "write /etc", "write /usr/local"} {
		if it := item(t, rep, what); it.OK || it.Want {
			t.Errorf("%s: %+v, want it refused", what, it)
		}
	}
	if it := item(t, rep, "write /etc"); it.Detail != "read-only file system" {
		t.Errorf("write /etc: %q, want read-only file system", it.Detail)
	}
	if it := item(t, rep, "identity"); !strings.HasPrefix(it.Detail, "uid 65534 (nobody), gid 65534, USER=nobody LOGNAME=nobody, capabilities none") {
		t.Errorf("identity: %q", it.Detail)
	}
	for what, want := range map[string]string{
		"open files":    "1024",
		"file size":     "8 GiB",
		"CPU time":      "2m0s, hard 2m1s",
		"core dumps":    "0 bytes",
		"/dev/shm size": "128 MiB, 128 MiB free",
		"/tmp size":     "64 MiB",
	} {
		if it := item(t, rep, what); it.Kind != KindLimit || !strings.HasPrefix(it.Detail, want) {
			t.Errorf("%s: %+v, want %q", what, it, want)
		}
	}
	if strings.Contains(rep.Items[len(rep.Items)-1].Detail, "cgroup") {
		if it := item(t, rep, "memory"); !strings.HasPrefix(it.Detail, "256 MiB per program") {
			t.Errorf("memory: %q", it.Detail)
		}
		if it := item(t, rep, "tasks"); !strings.HasPrefix(it.Detail, "256 processes") {
			t.Errorf("tasks: %q", it.Detail)
		}
	} else if it := item(t, rep, "address space"); !strings.HasPrefix(it.Detail, "256 MiB") {
		t.Errorf("without cgroups, RLIMIT_AS: %q", it.Detail)
	}
	for _, line := range []string{"  can     bind 127.0.0.1:1379: listening on 127.0.0.1:1379\n", "  cannot  write /etc: read-only file system\n", "  limit   open files (RLIMIT_NOFILE): 1024\n"} {
		if !strings.Contains(text.String(), line) {
			t.Errorf("the text lacks %q", line)
		}
	}
	if strings.Contains(text.String(), "UNEXPECTED") {
		t.Errorf("the text marks a line unexpected")
	}
}

// TestCheckWithoutIsolation: on the host network the check says why, and
// the probe binds free ports rather than the host's 1379.
func TestCheckWithoutIsolation(t *testing.T) {
	rep := checkWithTestBinary(t, Config{tools: map[string]string{"bwrap": "/nonexistent/bwrap"}, Fallback: true})
	if rep.Isolated || !strings.Contains(rep.Why, "bwrap") {
		t.Fatalf("Isolated %v, Why %q", rep.Isolated, rep.Why)
	}
	if it := item(t, rep, "bind 127.0.0.1:0"); !it.OK {
		t.Errorf("bind a free port: %+v", it)
	}
	var text strings.Builder
	rep.WriteText(&text)
	if !strings.HasPrefix(text.String(), "sandbox: NOT isolated (sandbox: bwrap not found") {
		t.Errorf("text starts %q", text.String()[:80])
	}
}

// TestCheckMarksTheUnexpected: a line that went otherwise than programs
// may rely on is marked, and counted at the end.
func TestCheckMarksTheUnexpected(t *testing.T) {
	rep := &CheckReport{Isolated: true, Items: []CheckItem{
		{Kind: KindCan, What: "write /dev/shm", Want: true, Detail: "permission denied"},
		{Kind: KindCan, What: "write /etc", Want: false, Detail: "read-only file system"},
	}}
	var text strings.Builder
	rep.WriteText(&text)
	want := "  cannot  write /dev/shm: permission denied   <- UNEXPECTED\n  cannot  write /etc: read-only file system\n1 unexpected"
	if !strings.Contains(text.String(), want) {
		t.Errorf("text:\n%s\nwant it to hold:\n%s", text.String(), want)
	}
}
