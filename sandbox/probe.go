package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kinds of CheckItem.
const (
	KindCan   = "can"   // something tried: OK says whether it worked
	KindLimit = "limit" // a bound in force
	KindInfo  = "info"  // a fact about the place (identity, what is installed)
)

// A CheckItem is one line of a sandbox check.
type CheckItem struct {
	Kind string `json:"kind"`
	What string `json:"what"`
	// OK says whether it worked; Want whether a program may rely on it
	// working (or, false, on it failing). Both only for KindCan.
	OK     bool   `json:"ok"`
	Want   bool   `json:"want"`
	Detail string `json:"detail,omitempty"`
}

// Surprise reports whether the item went otherwise than a program may
// rely on.
func (i CheckItem) Surprise() bool { return i.Kind == KindCan && i.OK != i.Want }

// Probe tries, from inside a sandbox, what programs commonly do and
// writes one JSON array of CheckItems to w. It is what Check runs in the
// sandbox. isolated says whether it runs in a sandbox's namespaces: on
// the host network it binds free ports instead of 1379 and leaves the
// system's folders alone.
func Probe(ctx context.Context, w io.Writer, isolated bool) error {
	var items []CheckItem
	can := func(what string, want bool, err error, detail string) {
		it := CheckItem{Kind: KindCan, What: what, OK: err == nil, Want: want, Detail: detail}
		if err != nil {
			it.Detail = errText(err)
		}
		items = append(items, it)
	}
	info := func(what, detail string) {
		items = append(items, CheckItem{Kind: KindInfo, What: what, Detail: detail})
	}
	limit := func(what, detail string) {
		items = append(items, CheckItem{Kind: KindLimit, What: what, Detail: detail})
	}

	name := "?"
	if u, err := user.LookupId(strconv.Itoa(os.Getuid())); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	caps := "none"
	if c := statusField("CapEff"); strings.Trim(c, "0") != "" {
		caps = c
	}
	info("identity", fmt.Sprintf("uid %d (%s), gid %d, USER=%s LOGNAME=%s, capabilities %s",
		os.Getuid(), name, os.Getgid(), os.Getenv("USER"), os.Getenv("LOGNAME"), caps))
	cwd, _ := os.Getwd()
	info("folder", fmt.Sprintf("%s, HOME=%s, TMPDIR=%s, PATH=%s", cwd, os.Getenv("HOME"), os.Getenv("TMPDIR"), os.Getenv("PATH")))
	info("machine", fmt.Sprintf("host name %s, %d CPUs", host, runtime.NumCPU()))

	// Network.
	port := "1379"
	if !isolated {
		port = "0" // the host's 1379 may be taken; a submission gets {port}
	}
	for _, addr := range []string{"127.0.0.1:" + port, "0.0.0.0:" + port} {
		ln, err := net.Listen("tcp", addr)
		detail := ""
		if err == nil {
			detail = "listening on " + ln.Addr().String()
			ln.Close()
		}
		can("bind "+addr, true, err, detail)
	}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		ln.Close()
		info("IPv6 loopback", "::1 can be bound")
	} else {
		info("IPv6 loopback", "none: "+errText(err))
	}
	for _, n := range []struct{ what, name string }{{"resolve localhost", "localhost"}, {"resolve its host name " + host, host}} {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err := net.DefaultResolver.LookupHost(rctx, n.name)
		cancel()
		can(n.what, true, err, strings.Join(addrs, " "))
	}
	if isolated {
		d := net.Dialer{Timeout: 3 * time.Second}
		c, err := d.DialContext(ctx, "tcp", "1.1.1.1:53")
		if err == nil {
			c.Close()
		}
		can("reach the network (1.1.1.1:53)", false, err, "connected")
	}

	// Files.
	tag := fmt.Sprintf(".stepkit-probe-%d", os.Getpid())
	home := os.Getenv("HOME")
	for _, d := range []struct{ what, dir string }{
		{"write its folder", cwd}, {"write /tmp", "/tmp"}, {"write /dev/shm", "/dev/shm"}, {"write $HOME", home},
	} {
		detail := ""
		if !strings.HasSuffix(d.what, d.dir) {
			detail = d.dir
		}
		can(d.what, true, tryWrite(filepath.Join(d.dir, tag)), detail)
	}
	if isolated {
		for _, dir := range []string{"/etc", "/var/tmp", "/usr/local"} {
			can("write "+dir, false, tryWrite(filepath.Join(dir, tag)), "written")
		}
	}
	can("write /dev/null, read /dev/urandom", true, devices(), "")

	// Processes.
	can("fork and exec /bin/true", true, exec.CommandContext(ctx, "/bin/true").Run(), "")
	can("threads (16 OS threads)", true, threads(16), "")
	can("POSIX semaphore (sem_open in /dev/shm)", true, semaphore(tag), "")
	can("POSIX message queue (mq_open)", true, messageQueue(tag), "")
	if py, err := exec.LookPath("python3"); err == nil {
		out, err := exec.CommandContext(ctx, py, "-c",
			"import multiprocessing as m\nif __name__ == '__main__':\n q = m.Queue(); p = m.Process(target=q.put, args=(1,)); p.start(); q.get(timeout=30); p.join()").CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%v: %s", err, lastLine(out))
		}
		can("python3 multiprocessing.Queue with a worker process", true, err, "")
	}
	var installed []string
	for _, t := range []struct{ name, flag string }{{"python3", "--version"}, {"node", "--version"}, {"cc", "--version"}, {"java", "-version"}, {"go", "version"}} {
		p, err := exec.LookPath(t.name)
		if err != nil {
			continue
		}
		out, _ := exec.CommandContext(ctx, p, t.flag).CombinedOutput()
		installed = append(installed, fmt.Sprintf("%s (%s)", t.name, firstLine(out)))
	}
	if len(installed) == 0 {
		installed = []string{"none of python3, node, cc, java, go"}
	}
	info("installed", strings.Join(installed, ", "))

	// Limits as the program sees them.
	for _, r := range []struct {
		what     string
		resource int
		unit     func(uint64) string
	}{
		{"CPU time (RLIMIT_CPU)", unix.RLIMIT_CPU, func(n uint64) string { return (time.Duration(n) * time.Second).String() }},
		{"file size (RLIMIT_FSIZE)", unix.RLIMIT_FSIZE, func(n uint64) string { return formatBytes(int64(n)) }},
		{"open files (RLIMIT_NOFILE)", unix.RLIMIT_NOFILE, func(n uint64) string { return strconv.FormatUint(n, 10) }},
		{"address space (RLIMIT_AS)", unix.RLIMIT_AS, func(n uint64) string { return formatBytes(int64(n)) }},
		{"core dumps (RLIMIT_CORE)", unix.RLIMIT_CORE, func(n uint64) string { return formatBytes(int64(n)) }},
	} {
		var rl unix.Rlimit
		if err := unix.Getrlimit(r.resource, &rl); err != nil {
			limit(r.what, errText(err))
			continue
		}
		show := func(n uint64) string {
			if n == unix.RLIM_INFINITY {
				return "unlimited"
			}
			return r.unit(n)
		}
		d := show(rl.Cur)
		if rl.Max != rl.Cur {
			d += ", hard " + show(rl.Max)
		}
		limit(r.what, d)
	}
	for _, dir := range []string{"/tmp", "/dev/shm"} {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			limit(dir, errText(err))
			continue
		}
		size := int64(st.Blocks) * st.Bsize
		free := int64(st.Bavail) * st.Bsize
		limit(dir+" size", fmt.Sprintf("%s, %s free", roundBytes(size), roundBytes(free)))
	}
	return json.NewEncoder(w).Encode(items)
}

func tryWrite(path string) error {
	err := os.WriteFile(path, []byte("x"), 0o644)
	if err == nil {
		os.Remove(path)
	}
	return err
}

func devices() error {
	if err := os.WriteFile("/dev/null", []byte("x"), 0); err != nil {
		return err
	}
	f, err := os.Open("/dev/urandom")
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.ReadFull(f, make([]byte, 16))
	return err
}

// threads starts n goroutines each on an OS thread of its own.
func threads(n int) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	release := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			errs <- nil
			<-release
		}()
	}
	for range n {
		<-errs
	}
	close(release)
	wg.Wait()
	return nil
}

// semaphore does what glibc's sem_open does: a file /dev/shm/sem.NAME,
// sized and mapped shared.
func semaphore(tag string) error {
	path := "/dev/shm/sem" + tag
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer unix.Unlink(path)
	defer unix.Close(fd)
	if err := unix.Ftruncate(fd, 32); err != nil {
		return err
	}
	m, err := unix.Mmap(fd, 0, 32, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	m[0] = 1
	return unix.Munmap(m)
}

// messageQueue opens and removes a POSIX message queue.
func messageQueue(tag string) error {
	name, err := unix.BytePtrFromString(strings.TrimPrefix(tag, "."))
	if err != nil {
		return err
	}
	fd, _, e := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(name)), unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600, 0, 0, 0)
	if e != 0 {
		return e
	}
	unix.Close(int(fd))
	if _, _, e := unix.Syscall(unix.SYS_MQ_UNLINK, uintptr(unsafe.Pointer(name)), 0, 0); e != 0 {
		return e
	}
	return nil
}

// statusField is a field of /proc/self/status.
func statusField(name string) string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// errText is an error without the operation and path the caller names.
func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	return err.Error()
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// roundBytes is n in MiB or GiB, rounded, for sizes that need not divide.
func roundBytes(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}
