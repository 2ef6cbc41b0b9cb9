package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults for a zero Config.
const (
	DefaultMemory = 1 << 30         // 1 GiB per process tree
	DefaultCPU    = 2 * time.Minute // CPU time per process tree
)

// Bounds every untrusted command gets besides memory and CPU.
const (
	maxOpenFiles = 1024
	// maxFileSize is the largest file a program may write. It is above
	// the largest size the conformance suite plans (2^32 + 1 bytes), so
	// that a server which plans a file by seeking to its end, as the
	// course's does, answers in a sandbox as it does on a laptop.
	maxFileSize = 8 << 30
	maxProcs    = 256 // tasks per command (pids cgroup)
	tmpSize     = 64 << 20
)

// The unprivileged identity of untrusted programs ("nobody"/"nogroup").
const (
	untrustedUID  = 65534
	untrustedGID  = 65534
	untrustedUser = "nobody"
)

// hostName is the host name inside a sandbox. Its /etc/hosts names it
// and localhost, as a Debian install does, so that a program resolving
// either gets a loopback address: the host's own name and file would
// resolve to nothing reachable, or to nothing at all.
const hostName = "stepkit-sandbox"

// hostsFile is the sandbox's /etc/hosts. localhost is IPv4 only, so that
// a client dialling "localhost" reaches a judge on 127.0.0.1 first.
const hostsFile = "127.0.0.1\tlocalhost\n" +
	"127.0.1.1\t" + hostName + "\n" +
	"::1\tip6-localhost ip6-loopback\n"

// sandboxPath is the PATH of untrusted commands: the system's own tools
// only, never the grader's (which may point into directories the
// unprivileged uid cannot read).
const sandboxPath = "/usr/local/bin:/usr/bin:/bin"

// Config says what a Sandbox runs and how tightly.
type Config struct {
	// Dir is the folder copied into a fresh scratch folder, the programs'
	// working directory; "" means an empty scratch folder.
	Dir string
	// Memory bounds the memory of each command's process tree in bytes;
	// 0 means DefaultMemory.
	Memory int64
	// CPU bounds the CPU time of each command; 0 means DefaultCPU.
	CPU time.Duration
	// Env is the environment of commands, on top of a minimal PATH, HOME
	// and LANG; the caller's own environment is not passed on.
	Env []string
	// Fallback makes New return a sandbox on the host network, with plain
	// resource limits, when namespaces cannot be made, instead of failing.
	Fallback bool

	// tools overrides the programs looked up on PATH (bwrap, nsenter,
	// setpriv, cat); tests use it to make isolation unavailable.
	tools map[string]string
	// noCgroup makes the sandbox skip cgroups, as on a machine without
	// writable cgroup v1 memory and pids controllers.
	noCgroup bool
	// noUserns makes commands drop privileges with setpriv, as on a
	// machine where an unprivileged bwrap cannot make a user namespace.
	noUserns bool
}

func (c *Config) memory() int64 {
	if c.Memory > 0 {
		return c.Memory
	}
	return DefaultMemory
}

func (c *Config) cpu() time.Duration {
	if c.CPU > 0 {
		return c.CPU
	}
	return DefaultCPU
}

// A Sandbox is a network namespace with loopback up plus a scratch folder;
// untrusted commands run inside both, trusted ones share its network.
type Sandbox struct {
	cfg     Config
	workDir string
	hosts   string // the file bound on /etc/hosts; "" when not isolated
	why     string // why not isolated; "" when isolated
	tools   tools

	// Isolated sandboxes only.
	holder    *exec.Cmd // keeps the namespaces alive
	lifeline  *os.File  // write end of the holder's stdin; closing it ends the holder
	initPID   int       // pid 1 of the holder's pid namespace (host pid)
	initFD    int       // pidfd of initPID: readable once the namespace is empty
	netns     int       // fd of the holder's network namespace
	nsPath    string    // /proc/PID/ns, the holder's namespaces for nsenter; "" without a holder
	netnsPath string    // the network namespace as a path, for nsenter
	cgroups   *cgroups  // nil when cgroups are not used
	userns    bool      // bwrap runs as the unprivileged uid, in a user namespace of its own
	memLimit  string    // what bounds memory: "cgroup" or "RLIMIT_AS"

	mu     sync.Mutex
	cmds   []*command
	closed bool

	// nsMu keeps Close from closing netns while a socket is being made
	// or a command started with it (the descriptor's number could name
	// something else).
	nsMu sync.RWMutex

	// testHookHeld, when set, runs while a command's bwrap is held
	// (startBlocked); an error it returns fails the start.
	testHookHeld func() error
}

// command is one command handed out by Command or Trusted.
type command struct {
	cmd       *exec.Cmd
	untrusted bool
	cg        *commandCgroup // nil without cgroups
}

// tools are the absolute paths of the programs a sandbox runs.
type tools struct {
	bwrap, nsenter, setpriv, cat string
}

func lookTools(over map[string]string) (tools, error) {
	var t tools
	for _, x := range []struct {
		name string
		dst  *string
	}{{"bwrap", &t.bwrap}, {"nsenter", &t.nsenter}, {"setpriv", &t.setpriv}, {"cat", &t.cat}} {
		name := x.name
		if p, ok := over[name]; ok {
			name = p
		}
		p, err := exec.LookPath(name)
		if err != nil {
			return t, fmt.Errorf("%s not found (install bubblewrap and util-linux)", x.name)
		}
		*x.dst = p
	}
	return t, nil
}

// Available reports whether isolated sandboxes can be made on this
// machine, and if not, why, in one line.
func Available() (ok bool, why string) {
	return available(&Config{})
}

func available(cfg *Config) (bool, string) {
	t, err := lookTools(cfg.tools)
	if err != nil {
		return false, "sandbox: " + err.Error()
	}
	if os.Geteuid() != 0 {
		// nsenter and setpriv need it, and only root can chown the
		// scratch folder to the unprivileged uid.
		return false, "sandbox: isolation needs root"
	}
	if _, ok := bwrapWorks.Load(t.bwrap); ok {
		return true, ""
	}
	out, err := exec.Command(t.bwrap, "--unshare-net", "--unshare-pid", "--die-with-parent",
		"--as-pid-1", "--dev-bind", "/", "/", "--", "true").CombinedOutput()
	if err != nil {
		return false, fmt.Sprintf("sandbox: bwrap cannot make namespaces: %s", oneLine(out, err))
	}
	bwrapWorks.Store(t.bwrap, struct{}{})
	return true, ""
}

// bwrapWorks holds the bwrap programs seen making namespaces: whether
// they can is a fact of the machine, tried once per process rather than
// for every sandbox (three process starts fewer for each). A failure is
// not remembered; the next sandbox tries again.
var bwrapWorks sync.Map // path → struct{}

// New creates a sandbox: a network namespace with loopback up, held open
// until Close, and the scratch copy of cfg.Dir. When namespaces cannot be
// made it returns an error naming why, unless cfg.Fallback, in which case
// the sandbox uses the host network and Isolated reports false.
func New(ctx context.Context, cfg Config) (*Sandbox, error) {
	if cfg.Memory < 0 || cfg.CPU < 0 {
		return nil, fmt.Errorf("sandbox: negative limit (memory %d, CPU %v)", cfg.Memory, cfg.CPU)
	}
	if cfg.Dir != "" {
		fi, err := os.Stat(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("sandbox: folder to copy: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("sandbox: folder to copy: %s is not a directory", cfg.Dir)
		}
	}
	sweepStale()
	s := &Sandbox{cfg: cfg, netns: -1, initFD: -1}
	ok, why := available(&cfg)
	if !ok && !cfg.Fallback {
		return nil, errors.New(why)
	}
	s.why = why
	if ok {
		s.tools, _ = lookTools(cfg.tools)
	}
	if err := s.makeWorkDir(); err != nil {
		return nil, err
	}
	if !cfg.noCgroup && os.Geteuid() == 0 {
		cg, err := newCgroups()
		if err == nil {
			s.cgroups = cg
		}
	}
	if ok {
		if err := s.writeHosts(); err != nil {
			s.Close()
			return nil, err
		}
		// With cgroups, which hold every process of a command, the network
		// namespace needs no process; without them, the holder's pid
		// namespace is what takes the commands down.
		start := s.startHolder
		if s.cgroups != nil {
			start = s.makeNetns
		}
		if err := start(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	if s.cgroups != nil {
		s.memLimit = "cgroup"
	} else {
		s.memLimit = "RLIMIT_AS"
	}
	if ok && s.cgroups != nil && !cfg.noUserns {
		s.userns = s.usernsWorks(ctx)
	}
	return s, nil
}

// usernsWorks says whether bwrap, started as the unprivileged uid, can
// make the user namespace and the rest of a command's sandbox here: it
// runs true through that very chain once per process and bwrap program.
// The answer is a fact of the machine (its kernel's settings), so a
// failure is remembered too; the chain with setpriv is used then.
func (s *Sandbox) usernsWorks(ctx context.Context) bool {
	if v, ok := usernsTried.Load(s.tools.bwrap); ok {
		return v.(bool)
	}
	s.userns = true
	err := s.Command(ctx, []string{"true"}).Run()
	if ctx.Err() != nil {
		return false // not an answer: the next sandbox tries again
	}
	usernsTried.Store(s.tools.bwrap, err == nil)
	return err == nil
}

// usernsTried holds, by bwrap program, whether an unprivileged bwrap
// could make a command's sandbox (usernsWorks).
var usernsTried sync.Map // path → bool

// makeWorkDir makes the scratch folder and copies cfg.Dir into it, owned
// by the unprivileged uid when the sandbox is isolated.
func (s *Sandbox) makeWorkDir() error {
	dir, err := os.MkdirTemp("", stalePrefix+ownerTag()+"-")
	if err != nil {
		return fmt.Errorf("sandbox: scratch folder: %w", err)
	}
	s.workDir = dir
	if s.cfg.Dir != "" {
		// No fork while the copy holds files open for writing: a child
		// forked meanwhile would hold them until its exec, and running a
		// copied program then fails with "text file busy".
		syscall.ForkLock.RLock()
		err := os.CopyFS(dir, os.DirFS(s.cfg.Dir))
		syscall.ForkLock.RUnlock()
		if err != nil {
			os.RemoveAll(dir)
			return fmt.Errorf("sandbox: copy %s: %w", s.cfg.Dir, err)
		}
	}
	if s.why != "" || os.Geteuid() != 0 {
		return nil
	}
	err = filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, untrustedUID, untrustedGID)
	})
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("sandbox: scratch folder owner: %w", err)
	}
	return nil
}

// writeHosts writes the file untrusted commands see as /etc/hosts,
// beside the scratch folder and named like it, so that a sweep of stale
// sandboxes removes it too.
func (s *Sandbox) writeHosts() error {
	f, err := os.CreateTemp("", stalePrefix+ownerTag()+"-*.hosts")
	if err != nil {
		return fmt.Errorf("sandbox: hosts file: %w", err)
	}
	s.hosts = f.Name()
	_, err = f.WriteString(hostsFile)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(s.hosts, 0o644)
	}
	if err != nil {
		return fmt.Errorf("sandbox: hosts file: %w", err)
	}
	return nil
}

// makeNetns makes the sandbox's network namespace with no process in it:
// a locked thread unshares a new one, brings its loopback up and opens
// it, and that descriptor keeps it alive until Close, or until the grader
// ends. Three process starts fewer than a holder, for every sandbox.
func (s *Sandbox) makeNetns(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	fd := -1
	err := onThreadIn(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("new network namespace: %w", err)
		}
		return nil
	}, func() error {
		var err error
		if fd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("open network namespace: %w", err)
		}
		return loopbackUp()
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return fmt.Errorf("sandbox: %w", err)
	}
	s.netns = fd
	// nsenter (Trusted) opens the namespace through this process's
	// descriptor.
	s.netnsPath = "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(fd)
	return nil
}

// loopbackUp brings up lo in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// startHolder starts the process that holds the namespaces: bwrap makes a
// network namespace (bringing loopback up) and a pid namespace, and
// reports the pid of the namespace's init on its info fd.
func (s *Sandbox) startHolder(ctx context.Context) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer r.Close()
	// The holder's program reads a pipe that only this process can
	// write: should this process die without Close, the pipe ends, the
	// program and the namespace's init exit, and the kernel kills the
	// rest of the namespace.
	lr, lw, err := os.Pipe()
	if err != nil {
		w.Close()
		return fmt.Errorf("sandbox: %w", err)
	}
	defer lr.Close()
	// cat is the namespace's init itself (--as-pid-1): bwrap's own init
	// would report its exit before it is reaped, leaving it to the
	// machine's init. Orphans in the namespace stay zombies until Close.
	// Its /proc is the namespace's own: untrusted commands' bwrap runs in
	// the holder's pid and mount namespaces and reads its children there.
	// bwrap reports the pid before it has set the namespaces up (mounts,
	// loopback); the shell says "ready" once they are, before it becomes
	// cat.
	rr, rw, err := os.Pipe()
	if err != nil {
		w.Close()
		lw.Close()
		return fmt.Errorf("sandbox: %w", err)
	}
	defer rr.Close()
	h := exec.Command(s.tools.bwrap, "--unshare-net", "--unshare-pid", "--as-pid-1", "--die-with-parent",
		"--dev-bind", "/", "/", "--proc", "/proc", "--info-fd", "3", "--",
		"/bin/sh", "-c", `echo ready >&4 && exec 4>&- && exec "$0"`, s.tools.cat)
	h.Stdin = lr
	h.ExtraFiles = []*os.File{w, rw}
	h.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	var stderr strings.Builder
	h.Stderr = &stderr
	if err := h.Start(); err != nil {
		w.Close()
		lw.Close()
		rw.Close()
		return fmt.Errorf("sandbox: start namespace holder: %w", err)
	}
	w.Close()
	rw.Close()
	s.holder = h
	s.lifeline = lw

	type info struct {
		ChildPID int `json:"child-pid"`
	}
	got := make(chan error, 1)
	var in info
	go func() {
		if err := json.NewDecoder(r).Decode(&in); err != nil {
			got <- err
			return
		}
		line, err := bufio.NewReader(rr).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("holder says %q", line)
		}
		got <- err
	}()
	select {
	case err = <-got:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil || in.ChildPID <= 0 {
		// The whole group, not bwrap alone: bwrap's child, the
		// namespace's init to be, may not yet have asked to die with it
		// and would hold the holder's stderr open, on which Wait waits.
		lw.Close()
		syscall.Kill(-h.Process.Pid, syscall.SIGKILL)
		h.Wait()
		s.holder, s.lifeline = nil, nil
		if err == nil || errors.Is(err, io.EOF) {
			err = errors.New(strings.TrimSpace(stderr.String()))
		}
		return fmt.Errorf("sandbox: namespace holder: %w", err)
	}
	s.initPID = in.ChildPID
	s.nsPath = "/proc/" + strconv.Itoa(in.ChildPID) + "/ns/"
	// The pidfd pins the init: its pid cannot name another process later.
	s.initFD, err = unix.PidfdOpen(in.ChildPID, 0)
	if err != nil {
		return fmt.Errorf("sandbox: pidfd of namespace init: %w", err)
	}
	s.netns, err = unix.Open(s.nsPath+"net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sandbox: open network namespace: %w", err)
	}
	s.netnsPath = s.nsPath + "net"
	return nil
}

// Isolated reports whether the sandbox has its own namespaces.
func (s *Sandbox) Isolated() bool { return s.why == "" }

// Why says why the sandbox is not isolated; "" when it is.
func (s *Sandbox) Why() string { return s.why }

// WorkDir is the scratch copy, an absolute path on the host.
func (s *Sandbox) WorkDir() string { return s.workDir }

// Limits describes the bounds untrusted commands get, for reports:
// "memory 1 GiB (cgroup), CPU 2m0s".
func (s *Sandbox) Limits() string {
	return fmt.Sprintf("memory %s (%s), CPU %v", formatBytes(s.cfg.memory()), s.memLimit, s.cfg.cpu())
}

// env is the environment of every command.
func (s *Sandbox) env() []string {
	env := []string{"PATH=" + sandboxPath, "HOME=" + s.workDir, "LANG=C.UTF-8", "TMPDIR=/tmp"}
	if s.Isolated() {
		// Programs ask who they are (getpass.getuser, logging, temp
		// names); the caller's name would be wrong, none at all an error.
		env = append(env, "USER="+untrustedUser, "LOGNAME="+untrustedUser)
	}
	return append(env, s.cfg.Env...)
}

// Command returns a command for an untrusted program: inside the
// sandbox's namespaces with WorkDir as working folder and the only
// writable place besides a private /tmp, the rest of the file system
// read-only, no capabilities, the unprivileged uid, memory and CPU
// bounded, killed with the sandbox. argv[0] is looked up in WorkDir when
// it contains a slash, else on the sandbox PATH. Errors (empty argv, a
// program not found, a closed sandbox) are returned by Start.
func (s *Sandbox) Command(ctx context.Context, argv []string) *Cmd {
	c := &command{untrusted: true}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return &Cmd{Cmd: failed(ctx, errors.New("sandbox: closed"))}
	}
	prog, err := s.resolve(argv)
	if err != nil {
		return &Cmd{Cmd: failed(ctx, err)}
	}
	if s.cgroups != nil {
		cg, err := s.cgroups.command(s.cfg.memory())
		if err != nil {
			return &Cmd{Cmd: failed(ctx, err)}
		}
		c.cg = cg
	}
	// Without cgroups, or without isolation, a shell sets the limits and
	// joins the groups before anything untrusted runs; every process after
	// it inherits both. An isolated command with cgroups needs no shell:
	// startBlocked does both from here while bwrap waits.
	var args []string
	if c.cg == nil || !s.Isolated() {
		args = append(args, "/bin/sh", "-c", s.limitScript(), "stepkit-sandbox")
		if c.cg != nil {
			args = append(args, c.cg.procs()...)
		}
		args = append(args, "--")
	}
	if !s.Isolated() {
		args = append(args, prog)
		args = append(args, argv[1:]...)
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = s.workDir
		cmd.Env = s.env()
		// A process group of its own, so that Close kills what it forked.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Cancel = func() error {
			if c.cg != nil {
				c.cg.kill()
			}
			return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		c.cmd = cmd
		return &Cmd{Cmd: s.track(c)}
	}
	// With cgroups, the command's first process is started from a thread
	// inside the sandbox's network namespace (startInside), and bwrap makes
	// its pid namespace under the host's: every process of the command is
	// in its cgroups, which Close empties and waits for. Without them,
	// nsenter also puts it in the holder's pid namespace, so that the end
	// of the holder's init takes it down; bwrap must then run in the
	// holder's mount namespace too, because it reads /proc/PID of the
	// child it makes.
	//
	// The program runs as the unprivileged uid with no capabilities.
	// Where the machine lets an unprivileged bwrap make a user namespace,
	// bwrap itself is started as that uid (the user namespace maps it to
	// itself, bwrap drops every capability, and the program can make no
	// user namespace of its own); otherwise bwrap runs as root and setpriv
	// drops the privileges, a process start more.
	drop := []string{s.tools.setpriv, "--reuid=" + strconv.Itoa(untrustedUID), "--regid=" + strconv.Itoa(untrustedGID),
		"--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"}
	var cred *syscall.Credential
	switch {
	case c.cg == nil:
		args = append(args, s.tools.nsenter, "--net="+s.nsPath+"net", "--pid="+s.nsPath+"pid", "--mount="+s.nsPath+"mnt", "--", s.tools.bwrap)
	case s.userns:
		args = append(args, s.tools.bwrap, "--info-fd", "3", "--block-fd", "4", "--unshare-user", "--disable-userns")
		cred = &syscall.Credential{Uid: untrustedUID, Gid: untrustedGID, Groups: []uint32{}}
		drop = nil
	default:
		args = append(args, s.tools.bwrap, "--info-fd", "3", "--block-fd", "4")
	}
	args = append(args,
		"--ro-bind", "/", "/",
		"--dev", "/dev",
		// POSIX semaphores and shared memory (Python's multiprocessing
		// locks and queues) live in /dev/shm: a private tmpfs, whose
		// pages count against the writer's memory cgroup.
		"--perms", "1777", "--size", strconv.FormatInt(s.shmSize(), 10), "--tmpfs", "/dev/shm",
		"--mqueue", "/dev/mqueue",
		"--proc", "/proc",
		"--perms", "1777", "--size", strconv.Itoa(tmpSize), "--tmpfs", "/tmp",
		"--tmpfs", "/run", // host sockets (connect works on read-only mounts)
		"--ro-bind", s.hosts, "/etc/hosts",
		"--hostname", hostName,
		"--bind", s.workDir, s.workDir,
		"--chdir", s.workDir,
		"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
		"--die-with-parent", "--new-session",
		"--")
	args = append(args, drop...)
	args = append(args, prog)
	args = append(args, argv[1:]...)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = s.workDir
	cmd.Env = s.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	if c.cg != nil {
		// When ctx is done, kill the whole tree, not only bwrap.
		cmd.Cancel = func() error {
			c.cg.kill()
			return cmd.Process.Kill()
		}
	}
	c.cmd = cmd
	s.track(c)
	if c.cg == nil {
		return &Cmd{Cmd: cmd}
	}
	return &Cmd{Cmd: cmd, start: func() error { return s.startBlocked(cmd, c.cg) }}
}

// Cmd is a command of a sandbox: an exec.Cmd whose Start (and Run, Output,
// CombinedOutput) starts it as the sandbox needs. Start it through these
// methods, never through the embedded exec.Cmd's own. A Cmd made of an
// exec.Cmd alone, &Cmd{Cmd: c}, starts as c would.
type Cmd struct {
	*exec.Cmd
	start func() error // nil: the exec.Cmd's own Start
}

// Start starts the command; see exec.Cmd.Start.
func (c *Cmd) Start() error {
	if c.start == nil || c.Cmd.Err != nil {
		return c.Cmd.Start()
	}
	return c.start()
}

// Run starts the command and waits for it; see exec.Cmd.Run.
func (c *Cmd) Run() error {
	if err := c.Start(); err != nil {
		return err
	}
	return c.Wait()
}

// Output runs the command and returns its standard output; see
// exec.Cmd.Output, whose ExitError carries the standard error too.
func (c *Cmd) Output() ([]byte, error) {
	if c.Stdout != nil {
		return nil, errors.New("exec: Stdout already set")
	}
	var stdout, stderr bytes.Buffer
	c.Stdout = &stdout
	captureErr := c.Stderr == nil
	if captureErr {
		c.Stderr = &stderr
	}
	err := c.Run()
	var ee *exec.ExitError
	if captureErr && errors.As(err, &ee) {
		ee.Stderr = stderr.Bytes()
	}
	return stdout.Bytes(), err
}

// CombinedOutput runs the command and returns its standard output and
// standard error together; see exec.Cmd.CombinedOutput.
func (c *Cmd) CombinedOutput() ([]byte, error) {
	if c.Stdout != nil || c.Stderr != nil {
		return nil, errors.New("exec: Stdout or Stderr already set")
	}
	var b bytes.Buffer
	c.Stdout, c.Stderr = &b, &b
	err := c.Run()
	return b.Bytes(), err
}

// startInside starts cmd from an OS thread switched into the sandbox's
// network namespace, so that the command's first process is born there
// and the chain needs no nsenter (a process less for every command). The
// thread is switched back afterwards; if that fails, the command is
// killed (its parent-death signal would kill it anyway) and the thread
// stays locked, so that the runtime discards it.
func (s *Sandbox) startInside(cmd *exec.Cmd) error {
	err := s.inNetns(cmd.Start)
	var leave *leaveError
	if errors.As(err, &leave) && cmd.Process != nil {
		cmd.Process.Kill()
		go cmd.Wait()
	}
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	return nil
}

// startBlocked starts an isolated command whose bwrap reports its child
// on fd 3 and waits on fd 4 before it forks the command: from here, the
// two join the command's cgroups and the child gets the resource limits,
// then the child goes on, so that every process of the command inherits
// both, with no shell in the chain to set them (a process start fewer
// for every command). bwrap is started inside the network namespace
// (startInside).
func (s *Sandbox) startBlocked(cmd *exec.Cmd, cg *commandCgroup) error {
	infoR, infoW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer infoR.Close()
	blockR, blockW, err := os.Pipe()
	if err != nil {
		infoW.Close()
		return fmt.Errorf("sandbox: %w", err)
	}
	defer blockW.Close()
	cmd.ExtraFiles = []*os.File{infoW, blockR}
	err = s.startInside(cmd)
	infoW.Close()
	blockR.Close()
	if err != nil {
		return err
	}
	var in struct {
		ChildPID int `json:"child-pid"`
	}
	infoR.SetReadDeadline(time.Now().Add(bwrapReportWait))
	err = json.NewDecoder(infoR).Decode(&in)
	if err == nil && in.ChildPID <= 0 {
		err = errors.New("no child pid")
	}
	if err != nil {
		err = fmt.Errorf("bwrap's report: %w", err)
	}
	if err == nil {
		err = cg.join(cmd.Process.Pid, in.ChildPID)
	}
	if err == nil {
		err = s.limit(in.ChildPID)
	}
	if err == nil && s.testHookHeld != nil {
		err = s.testHookHeld()
	}
	if err == nil {
		_, err = blockW.Write([]byte{'1'})
	}
	if err != nil {
		// Killed before the pipe closes: on end of file bwrap would go on.
		if in.ChildPID > 0 {
			unix.Kill(in.ChildPID, unix.SIGKILL)
		}
		cmd.Process.Kill()
		go cmd.Wait()
		return fmt.Errorf("sandbox: start: %w", err)
	}
	return nil
}

// bwrapReportWait bounds the wait for bwrap's report of its child, which
// comes as soon as it has cloned it.
const bwrapReportWait = 30 * time.Second

// limit sets a process's resource limits, those limitScript sets with
// ulimit where cgroups bound memory: CPU time (soft at the bound, hard a
// second later), open files, file size, no core dumps. A bwrap started
// as the unprivileged uid has a child of that uid, whose limits only a
// process with CAP_SYS_RESOURCE or of the same real uid and gid may set;
// root in a container often lacks the capability, so the limits are set
// from a thread whose real ids are the child's for the moment (asThe).
func (s *Sandbox) limit(pid int) error {
	if s.userns {
		return asThe(untrustedUID, untrustedGID, func() error { return s.setLimits(pid) })
	}
	return s.setLimits(pid)
}

// asThe runs fn on an OS thread of its own whose real uid and gid are uid
// and gid (effective and saved ones stay, and with them the
// capabilities), and switches the thread back afterwards. The thread
// belongs to a goroutine started for the purpose: one that cannot switch
// back stays locked and ends with that goroutine, so that the runtime
// discards it and no other code runs with its ids. Credentials are a
// thread's own in Linux: raw setresuid and setresgid change this thread
// alone, where Go's syscall.Setresuid would change every thread.
func asThe(uid, gid int, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		const keep = ^uintptr(0) // -1: leave this id as it is
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), keep, keep); e != 0 {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("real gid %d: %w", gid, e)
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), keep, keep); e != 0 {
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, 0, keep, keep); e != 0 {
				done <- fmt.Errorf("real gid back: %w", e)
				return // the thread stays locked and ends with this goroutine
			}
			runtime.UnlockOSThread()
			done <- fmt.Errorf("real uid %d: %w", uid, e)
			return
		}
		err := fn()
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, 0, keep, keep); e != 0 {
			done <- errors.Join(err, fmt.Errorf("real uid back: %w", e))
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, 0, keep, keep); e != 0 {
			done <- errors.Join(err, fmt.Errorf("real gid back: %w", e))
			return
		}
		runtime.UnlockOSThread()
		done <- err
	}()
	return <-done
}

// setLimits sets pid's limits (see limit).
func (s *Sandbox) setLimits(pid int) error {
	cpu := uint64(cpuSeconds(s.cfg.cpu()))
	for _, l := range []struct {
		resource int
		cur, max uint64
		name     string
	}{
		{unix.RLIMIT_CPU, cpu, cpu + 1, "CPU time"},
		{unix.RLIMIT_NOFILE, maxOpenFiles, maxOpenFiles, "open files"},
		{unix.RLIMIT_FSIZE, maxFileSize, maxFileSize, "file size"},
		{unix.RLIMIT_CORE, 0, 0, "core size"},
	} {
		if err := unix.Prlimit(pid, l.resource, &unix.Rlimit{Cur: l.cur, Max: l.max}, nil); err != nil {
			return fmt.Errorf("limit %s: %w", l.name, err)
		}
	}
	return nil
}

// limitScript is the shell that starts an untrusted command without
// cgroups or without isolation: it sets
// the resource limits (soft CPU at the bound, hard a second later; open
// files; file size, in ulimit's 512-byte blocks; no core dumps; address
// space only where no memory cgroup bounds it), writes its pid into the
// cgroup.procs files given before "--" and runs what follows. Doing both
// in the shell that is already there spares a process in the chain.
func (s *Sandbox) limitScript() string {
	cpu := cpuSeconds(s.cfg.cpu())
	var b strings.Builder
	fmt.Fprintf(&b, "ulimit -S -t %d && ulimit -H -t %d && ulimit -n %d && ulimit -f %d && ulimit -c 0",
		cpu, cpu+1, maxOpenFiles, maxFileSize/512)
	if s.cgroups == nil {
		fmt.Fprintf(&b, " && ulimit -v %d", s.cfg.memory()/1024)
	}
	b.WriteString(` || exit 126; p=$$; while [ "$1" != -- ]; do echo $p > "$1" || exit 126; shift; done; shift; exec "$@"`)
	return b.String()
}

// shmSize bounds /dev/shm: half the memory bound, as Linux bounds a
// machine's /dev/shm to half its memory, so that a program filling it
// gets "No space left on device" before the memory limit kills it.
func (s *Sandbox) shmSize() int64 {
	return s.cfg.memory() / 2
}

// Trusted returns a command for a trusted program that joins only the
// sandbox's network (the host network when not isolated); it runs with
// the caller's environment and file system. Close kills it too.
func (s *Sandbox) Trusted(ctx context.Context, argv []string) *exec.Cmd {
	if len(argv) == 0 || argv[0] == "" {
		return failed(ctx, errors.New("sandbox: empty command"))
	}
	var cmd *exec.Cmd
	if s.Isolated() {
		cmd = exec.CommandContext(ctx, s.tools.nsenter, append([]string{"--net=" + s.netnsPath, "--"}, argv...)...)
		if _, err := exec.LookPath(argv[0]); err != nil {
			cmd.Err = fmt.Errorf("sandbox: %s: not found", argv[0])
		}
	} else {
		cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return s.track(&command{cmd: cmd})
}

// failed is a command whose Start returns err.
func failed(ctx context.Context, err error) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "/nonexistent")
	cmd.Err = err
	return cmd
}

func (s *Sandbox) track(c *command) *exec.Cmd {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.cmd.Err = errors.New("sandbox: closed")
		return c.cmd
	}
	s.cmds = append(s.cmds, c)
	return c.cmd
}

// resolve finds the program argv[0] names as the sandboxed program would:
// a path with a slash relative to WorkDir, a bare name on the sandbox
// PATH, so that "not found" is an error from Start, not an exit status.
func (s *Sandbox) resolve(argv []string) (string, error) {
	if len(argv) == 0 || argv[0] == "" {
		return "", errors.New("sandbox: empty command")
	}
	name := argv[0]
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(s.workDir, p)
		}
		if err := executable(p); err != nil {
			return "", fmt.Errorf("sandbox: %s: %w", name, err)
		}
		return p, nil
	}
	for _, dir := range filepath.SplitList(sandboxPath) {
		p := filepath.Join(dir, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("sandbox: %s: not found", name)
}

func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errors.New("not found")
		}
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	if fi.Mode()&0o111 == 0 {
		return errors.New("not executable")
	}
	return nil
}

// Listen creates a listener inside the sandbox's network namespace (on
// the host network when not isolated).
func (s *Sandbox) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := s.inNetns(func() error {
		var err error
		ln, err = (&net.ListenConfig{}).Listen(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox: listen %s: %w", addr, err)
	}
	return ln, nil
}

// DialContext connects to addr inside the sandbox's network namespace (on
// the host network when not isolated).
func (s *Sandbox) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := s.inNetns(func() error {
		// No fast fallback: it would dial from another goroutine, on a
		// thread in the host's namespace.
		var err error
		conn, err = (&net.Dialer{FallbackDelay: -1}).DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox: dial %s: %w", addr, err)
	}
	return conn, nil
}

// inNetns runs fn on an OS thread switched into the sandbox's network
// namespace; sockets fn creates stay in that namespace. The thread is
// switched back afterwards; if that fails, it stays locked so that the
// runtime discards it when the goroutine ends.
func (s *Sandbox) inNetns(fn func() error) error {
	if !s.Isolated() {
		return fn()
	}
	s.nsMu.RLock()
	defer s.nsMu.RUnlock()
	if s.netns < 0 {
		return errors.New("sandbox closed")
	}
	return onThreadIn(func() error {
		if err := unix.Setns(s.netns, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("enter network namespace: %w", err)
		}
		return nil
	}, fn)
}

// onThreadIn runs fn on an OS thread that enter has switched into another
// network namespace (setns into one, or unshare a new one), then switches
// the thread back. If switching back fails, the error wraps a leaveError
// and the thread stays locked, so that the runtime discards it when the
// goroutine ends. While a thread is locked, the runtime makes its new
// threads from a template thread, so none inherits the namespace.
func onThreadIn(enter, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := enter(); err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			done <- errors.Join(ferr, &leaveError{err})
			return // the thread stays locked and ends with this goroutine
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// leaveError is a thread's failure to switch back to its own network
// namespace after it made something inside the sandbox's.
type leaveError struct{ err error }

func (e *leaveError) Error() string { return "leave network namespace: " + e.err.Error() }
func (e *leaveError) Unwrap() error { return e.err }

// Close kills every process of the sandbox (trusted ones included),
// waits until the namespaces are empty, releases them and removes the
// scratch folder.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cmds := s.cmds
	s.mu.Unlock()

	var errs []error
	if s.holder != nil {
		// Killing the holder's init makes the kernel kill every process in
		// its pid namespace, including the nested ones of untrusted
		// commands, and only then lets the init exit. (--die-with-parent
		// alone does not always take the init down.) The holder's bwrap
		// then reaps the init and exits by itself; killing it first would
		// leave the init a zombie for the machine's init to reap.
		if s.initFD >= 0 {
			if err := unix.PidfdSendSignal(s.initFD, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("sandbox: kill namespace init: %w", err))
			}
			if err := waitExit(s.initFD, 30*time.Second); err != nil {
				errs = append(errs, fmt.Errorf("sandbox: namespace init %d: %w", s.initPID, err))
			}
		}
		s.lifeline.Close()
		exited := make(chan struct{})
		go func() { s.holder.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			s.holder.Process.Kill()
			<-exited
		}
	}
	// What is left: trusted commands, untrusted ones' first processes
	// (whose bwrap children die with them; the rest of each command is in
	// its cgroups, emptied below) and, when not isolated, process groups.
	for _, c := range cmds {
		if c.cmd.Process == nil {
			continue
		}
		if !s.Isolated() && c.untrusted {
			syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		}
		c.cmd.Process.Kill()
	}
	if s.initFD >= 0 {
		unix.Close(s.initFD)
	}
	s.nsMu.Lock()
	if s.netns >= 0 {
		unix.Close(s.netns)
		s.netns = -1
	}
	s.nsMu.Unlock()
	for _, c := range cmds {
		if c.cg != nil {
			if err := c.cg.remove(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if s.cgroups != nil {
		if err := s.cgroups.remove(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.hosts != "" {
		if err := os.Remove(s.hosts); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("sandbox: remove hosts file: %w", err))
		}
	}
	if s.workDir != "" {
		if err := os.RemoveAll(s.workDir); err != nil {
			errs = append(errs, fmt.Errorf("sandbox: remove scratch folder: %w", err))
		}
	}
	return errors.Join(errs...)
}

// waitExit waits until the process behind pidfd has exited.
func waitExit(pidfd int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return errors.New("still running")
		}
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(min(left, time.Second)/time.Millisecond)+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		if n > 0 {
			return nil
		}
	}
}

func cpuSeconds(d time.Duration) int64 {
	sec := int64((d + time.Second - 1) / time.Second)
	return max(sec, 1)
}

func oneLine(out []byte, err error) string {
	msg := strings.TrimSpace(string(out))
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if msg == "" {
		return err.Error()
	}
	return msg
}

// formatBytes writes n in the largest binary unit that divides it.
func formatBytes(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}
