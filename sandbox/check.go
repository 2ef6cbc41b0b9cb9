package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// A CheckReport says what a program can and cannot do in a sandbox made
// from a Config: the lines of Probe run inside it, and the bounds set
// from outside (memory, tasks).
type CheckReport struct {
	Isolated bool        `json:"isolated"`
	Why      string      `json:"why,omitempty"` // why not isolated
	Items    []CheckItem `json:"items"`
}

// Surprises are the items that went otherwise than a program may rely on.
func (r *CheckReport) Surprises() []CheckItem {
	var out []CheckItem
	for _, it := range r.Items {
		if it.Surprise() {
			out = append(out, it)
		}
	}
	return out
}

// probeName is the probe's copy in the scratch folder.
const probeName = ".stepkit-probe"

// Check makes a sandbox from cfg, as a grader would for a submission,
// runs probe inside it and reports what a program there can and cannot
// do. probe is the command line of a program that runs Probe; its
// program is copied into the scratch folder first, since the grader's
// own folders may be closed to the unprivileged uid. When cfg.Fallback
// lets the sandbox run on the host network, "--host" is added to the
// probe's arguments and the report says why.
func Check(ctx context.Context, cfg Config, probe []string) (*CheckReport, error) {
	if len(probe) == 0 {
		return nil, errors.New("sandbox check: no probe program")
	}
	s, err := New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	dst := filepath.Join(s.WorkDir(), probeName)
	if err := copyProgram(probe[0], dst); err != nil {
		return nil, fmt.Errorf("sandbox check: %w", err)
	}
	if s.Isolated() && os.Geteuid() == 0 {
		if err := os.Chown(dst, untrustedUID, untrustedGID); err != nil {
			return nil, fmt.Errorf("sandbox check: %w", err)
		}
	}
	argv := append([]string{"./" + probeName}, probe[1:]...)
	if !s.Isolated() {
		argv = append(argv, "--host")
	}
	cmd := s.Command(ctx, argv)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("sandbox check: the probe %s: %s", s.Describe(err, cmd.ProcessState), lastLine(stderr.Bytes()))
	}
	rep := &CheckReport{Isolated: s.Isolated(), Why: s.Why()}
	if err := json.Unmarshal(out, &rep.Items); err != nil {
		return nil, fmt.Errorf("sandbox check: the probe's report: %w", err)
	}
	mem := fmt.Sprintf("%s per program and its children", formatBytes(s.cfg.memory()))
	if s.cgroups != nil {
		mem += " (memory cgroup, no swap; what it keeps in /tmp and /dev/shm counts); a program above it is killed"
	} else {
		mem += " (RLIMIT_AS, per process): an allocation above it fails inside the program"
	}
	rep.Items = append(rep.Items, CheckItem{Kind: KindLimit, What: "memory", Detail: mem})
	if s.cgroups != nil {
		rep.Items = append(rep.Items, CheckItem{Kind: KindLimit, What: "tasks", Detail: fmt.Sprintf("%d processes and threads (pids cgroup)", maxProcs)})
	}
	return rep, nil
}

// copyProgram copies an executable, holding off forks while it is open
// for writing (see makeWorkDir).
func copyProgram(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// WriteText writes the report line by line: "can", "cannot", "limit" or
// "info", what, and the detail; a line that went otherwise than a
// program may rely on is marked "UNEXPECTED".
func (r *CheckReport) WriteText(w io.Writer) error {
	var b strings.Builder
	if r.Isolated {
		b.WriteString("sandbox: isolated, as a graded submission runs (own network, pid, IPC and mount namespaces)\n")
	} else {
		fmt.Fprintf(&b, "sandbox: NOT isolated (%s): programs run on the host network as the grader's user\n", r.Why)
	}
	for _, it := range r.Items {
		word := it.Kind
		if it.Kind == KindCan && !it.OK {
			word = "cannot"
		}
		line := fmt.Sprintf("  %-7s %s", word, it.What)
		if it.Detail != "" {
			line += ": " + it.Detail
		}
		if it.Surprise() {
			line += "   <- UNEXPECTED"
		}
		b.WriteString(line + "\n")
	}
	if n := len(r.Surprises()); n > 0 {
		fmt.Fprintf(&b, "%d unexpected: programs that rely on them fail here\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
