package judge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/stepkit/stepkit/sandbox"
)

// place is where one case runs: the client's scratch folder and the network
// the judge listens on and the client dials. A sandbox gives each case a
// network namespace of its own (so the judge listens on 127.0.0.1:1379
// there); the host place shares the host's network.
type place interface {
	Isolated() bool
	WorkDir() string
	Listen(ctx context.Context, network, addr string) (net.Listener, error)
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	Command(ctx context.Context, argv []string) *sandbox.Cmd
	Close() error
}

// maxClientDir bounds the folder copied for each case.
const maxClientDir = 256 << 20

// hostPlace runs the client on the host network, in a scratch copy of its
// folder, in a process group of its own that is killed with the place.
type hostPlace struct {
	dir  string
	env  []string
	cmds []*exec.Cmd
}

func newHostPlace(src string, env []string) (*hostPlace, error) {
	dir, err := os.MkdirTemp("", "stepkit-client-")
	if err != nil {
		return nil, fmt.Errorf("scratch folder: %w", err)
	}
	if src != "" {
		if err := copyTree(src, dir, maxClientDir); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	return &hostPlace{dir: dir, env: env}, nil
}

func (h *hostPlace) Isolated() bool  { return false }
func (h *hostPlace) WorkDir() string { return h.dir }

func (h *hostPlace) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, network, addr)
}

func (h *hostPlace) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (h *hostPlace) Command(ctx context.Context, argv []string) *sandbox.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = h.dir
	cmd.Env = h.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The time limit ends the whole process group, so that a client's
	// children do not outlive it.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	h.cmds = append(h.cmds, cmd)
	return &sandbox.Cmd{Cmd: cmd}
}

func (h *hostPlace) Close() error {
	for _, c := range h.cmds {
		if c.Process != nil {
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		}
	}
	return os.RemoveAll(h.dir)
}

// copyTree copies the regular files, folders and symbolic links of src
// into dst, at most limit bytes in all.
func copyTree(src, dst string, limit int64) error {
	var total int64
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("client folder: %w", err)
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			if rel == "." {
				return nil
			}
			return os.MkdirAll(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("client folder: %w", err)
			}
			return os.Symlink(l, to)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return fmt.Errorf("client folder: %w", err)
			}
			total += info.Size()
			if total > limit {
				return fmt.Errorf("client folder %s holds more than %d MiB", src, limit>>20)
			}
			return copyFile(p, to, info.Mode().Perm())
		}
		return nil // sockets, devices, pipes: not part of a client
	})
}

func copyFile(from, to string, perm fs.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("client folder: %w", err)
	}
	defer in.Close()
	// No fork while the copy is open for writing: a child forked by
	// another case meanwhile would hold it until its exec, and running the
	// copied program then fails with "text file busy".
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm|0o200)
	if err != nil {
		return fmt.Errorf("scratch copy: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("scratch copy of %s: %w", from, err)
	}
	return out.Close()
}

// errNoPort is the reason a case cannot run on the host network when the
// template has no {port} and port 1379 is taken.
var errNoPort = errors.New("namespaces are unavailable, the template has no {port}, and port 1379 on 127.0.0.1 is in use")

// reachable waits until a connection made where the client runs reaches
// l, and accepts and closes that connection: a namespace's loopback may
// still be coming up when the namespace is made, and a client that meets
// "network is unreachable" would be judged for the judge's haste.
func reachable(ctx context.Context, p place, l net.Listener) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	var last error
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		c, err := p.DialContext(ctx, "tcp", l.Addr().String())
		if err == nil {
			c.Close()
			select {
			case err := <-accepted:
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		last = err
		select {
		case <-ctx.Done():
			l.Close()
			<-accepted
			return fmt.Errorf("the judge cannot be reached where the client runs: %w", last)
		case <-time.After(delay):
		}
	}
}
