package grade

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/stepkit/stepkit/sandbox"
)

// hostBox runs a submission on the host network, in a scratch copy of its
// folder, as its own process group: what grading falls back to where
// network namespaces cannot be made.
type hostBox struct {
	dir  string
	why  string
	cmds []*exec.Cmd
}

func newHostBox(cfg BoxConfig, why string) (*hostBox, error) {
	dir, err := os.MkdirTemp("", "stepkit-grade-")
	if err != nil {
		return nil, err
	}
	if cfg.Dir != "" {
		if err := copyTree(cfg.Dir, dir); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("copy %s: %w", cfg.Dir, err)
		}
	}
	return &hostBox{dir: dir, why: why}, nil
}

func (b *hostBox) Isolated() bool  { return false }
func (b *hostBox) Why() string     { return b.why }
func (b *hostBox) WorkDir() string { return b.dir }

func (b *hostBox) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (b *hostBox) Command(ctx context.Context, argv []string) *sandbox.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = b.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	b.cmds = append(b.cmds, cmd)
	return &sandbox.Cmd{Cmd: cmd}
}

func (b *hostBox) Trusted(ctx context.Context, argv []string) *exec.Cmd {
	return b.Command(ctx, argv).Cmd
}

func (b *hostBox) Describe(err error, state *os.ProcessState) string {
	return describeExit(err, state)
}

func (b *hostBox) Close() error {
	for _, c := range b.cmds {
		if c.Process != nil {
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		}
	}
	return os.RemoveAll(b.dir)
}

// copyTree copies the regular files and folders of src into dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			info, _ := d.Info()
			return os.WriteFile(to, b, info.Mode().Perm()|0o200)
		}
		return nil // links and devices are not part of a submission
	})
}
