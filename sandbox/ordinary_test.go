package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// needPython skips the test without /usr/bin/python3, except in CI.
func needPython(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 missing in CI")
		}
		t.Skip("no /usr/bin/python3")
	}
}

// ordinaryChecks is what ordinary Python programs do without a second
// thought; each line prints "name: ok" or "name: the error".
const ordinaryChecks = `import concurrent.futures, ctypes, getpass, multiprocessing, os, socket, sys, tempfile, threading

def square(x):
    return x * x

def put(q):
    q.put("hello")

def check(name, fn):
    try:
        got = fn()
        print(f"{name}: ok" if got is None or got is True else f"{name}: {got!r}", flush=True)
    except BaseException as e:
        print(f"{name}: {type(e).__name__}: {e}", flush=True)

def queue(method):
    ctx = multiprocessing.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=put, args=(q,))
    p.start()
    got = q.get(timeout=60)
    p.join()
    return got == "hello" and p.exitcode == 0

def pool():
    with multiprocessing.Pool(2) as p:
        return p.map(square, range(5)) == [0, 1, 4, 9, 16]

def executor():
    with concurrent.futures.ProcessPoolExecutor(2) as ex:
        return list(ex.map(square, range(5))) == [0, 1, 4, 9, 16]

def manager():
    with multiprocessing.Manager() as m:
        d = m.dict()
        d["k"] = 1
        return dict(d) == {"k": 1}

def semaphore():
    s = multiprocessing.Semaphore(1)
    return s.acquire(timeout=5)

def mqueue():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mq_open.restype = ctypes.c_int
    fd = libc.mq_open(b"/stepkit-check", os.O_CREAT | os.O_RDWR, 0o600, None)
    if fd < 0:
        return os.strerror(ctypes.get_errno())
    libc.mq_unlink(b"/stepkit-check")
    return True

def home():
    h = os.path.expanduser("~")
    with open(os.path.join(h, ".stepkit-check"), "w") as f:
        f.write("x")
    return os.path.isdir(h)

def devices():
    with open("/dev/null", "w") as f:
        f.write("x")
    with open("/dev/urandom", "rb") as f:
        return len(f.read(16)) == 16

def thread():
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()

if __name__ == "__main__":
    check("user", lambda: getpass.getuser() == "nobody" == os.environ["USER"] == os.environ["LOGNAME"])
    check("hostname", lambda: socket.gethostbyname(socket.gethostname()).startswith("127."))
    check("localhost", lambda: socket.gethostbyname("localhost") == "127.0.0.1")
    check("fqdn", lambda: bool(socket.getfqdn()))
    check("cpu_count", lambda: os.cpu_count() >= 1)
    check("home", home)
    check("tempfile", lambda: os.path.exists(tempfile.mkstemp()[1]))
    check("devices", devices)
    check("thread", thread)
    check("semaphore", semaphore)
    check("mqueue", mqueue)
    check("queue-fork", lambda: queue("fork"))
    check("queue-spawn", lambda: queue("spawn"))
    check("queue-forkserver", lambda: queue("forkserver"))
    check("pool", pool)
    check("executor", executor)
    check("manager", manager)
`

// TestOrdinaryProgramsRunUnchanged runs what course programs commonly use
// (multiprocessing's queues, pools and managers, POSIX semaphores and
// message queues, their own host name, $HOME) inside the sandbox.
func TestOrdinaryProgramsRunUnchanged(t *testing.T) {
	needIsolation(t)
	needPython(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "checks.py"), []byte(ordinaryChecks), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSandbox(t, Config{Dir: dir})
	cmd := s.Command(testContext(t), []string{"python3", "checks.py"})
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("checks: %v\n%s\nstderr: %s", s.Describe(err, cmd.ProcessState), out, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != strings.Count(ordinaryChecks, "\n    check(") {
		t.Errorf("%d results, want one per check:\n%s\nstderr: %s", len(lines), out, stderr.String())
	}
	for _, line := range lines {
		if name, got, _ := strings.Cut(line, ": "); got != "ok" {
			t.Errorf("%s: %s", name, got)
		}
	}
}

// TestDevShmIsPrivateBoundedAndCounted: /dev/shm is writable by the
// program, not the host's, bounded to half the memory bound, and what a
// program keeps there counts against its memory.
func TestDevShmIsPrivateBoundedAndCounted(t *testing.T) {
	needIsolation(t)
	ctx := testContext(t)
	s := newSandbox(t, Config{Memory: 256 << 20})
	name := "stepkit-shm-check-" + filepath.Base(s.WorkDir())
	out, err := s.Command(ctx, []string{"./prog", "write", "/dev/shm/" + name}).Output()
	if err != nil || strings.TrimSpace(string(out)) != "/dev/shm/"+name+": written" {
		t.Fatalf("write /dev/shm: %q, %v", out, err)
	}
	if _, err := os.Stat("/dev/shm/" + name); err == nil {
		os.Remove("/dev/shm/" + name)
		t.Fatalf("the program wrote the host's /dev/shm")
	}
	// Each command gets a /dev/shm of its own.
	if out, err := s.Command(ctx, []string{"sh", "-c", "ls -A /dev/shm; stat -c %a /dev/shm"}).Output(); err != nil || string(out) != "1777\n" {
		t.Errorf("a fresh command's /dev/shm: %q, %v, want empty and mode 1777", out, err)
	}

	if out, err := s.Command(ctx, []string{"stat", "-f", "-c", "%T", "/dev/shm", "/dev/mqueue"}).Output(); err != nil || string(out) != "tmpfs\nmqueue\n" {
		t.Errorf("file systems of /dev/shm and /dev/mqueue: %q, %v, want tmpfs and mqueue", out, err)
	}

	// Bounded: 128 MiB, half the memory bound.
	cmd := s.Command(ctx, []string{"sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=160 2>&1"})
	out, err = cmd.Output()
	if err == nil || !strings.Contains(string(out), "No space left on device") {
		t.Fatalf("160 MiB into /dev/shm: %q, %v; want No space left on device", out, err)
	}

	if !strings.Contains(s.Limits(), "cgroup") {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no memory cgroup in CI: %s", s.Limits())
		}
		t.Skipf("memory cgroup not writable here: %s", s.Limits())
	}
	// Counted: 192 MiB fit in 256 MiB alone, not beside 120 MiB in /dev/shm.
	if out, err := s.Command(ctx, []string{"./prog", "alloc", "192"}).Output(); err != nil {
		t.Fatalf("192 MiB alone under 256 MiB: %q, %v", out, err)
	}
	cmd = s.Command(ctx, []string{"sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=120 2>/dev/null && exec ./prog alloc 192"})
	out, err = cmd.Output()
	if got, want := s.Describe(err, cmd.ProcessState), "killed: memory limit (256 MiB)"; got != want {
		t.Fatalf("192 MiB beside 120 MiB in /dev/shm: %q, Describe = %q, want %q", out, got, want)
	}
}
