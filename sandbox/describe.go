package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Describe says in a few words how a command ended, for reports: "exit
// status 1", "signal: killed", "killed: CPU time limit", "did not start:
// python3: not found". err is what Start or Wait returned, state the
// command's ProcessState (nil if it never ran). Sandbox.Describe knows
// more: which limit killed a sandboxed program.
func Describe(err error, state *os.ProcessState) string {
	return describe(err, state, nil, nil)
}

// Describe is like the package's Describe for commands of this sandbox:
// it also names the limit that killed a program, "killed: memory limit
// (1 GiB)", "killed: CPU time limit (2m0s)".
func (s *Sandbox) Describe(err error, state *os.ProcessState) string {
	var c *command
	if state != nil {
		s.mu.Lock()
		for _, x := range s.cmds {
			if x.cmd.Process != nil && x.cmd.Process.Pid == state.Pid() {
				c = x
			}
		}
		s.mu.Unlock()
	}
	return describe(err, state, s, c)
}

func describe(err error, state *os.ProcessState, s *Sandbox, c *command) string {
	if state == nil {
		if err == nil {
			return "not started"
		}
		var ee *exec.Error
		if errors.As(err, &ee) {
			return fmt.Sprintf("did not start: %s: %v", ee.Name, ee.Err)
		}
		return "did not start: " + trimPrefix(err.Error())
	}
	ws, ok := state.Sys().(syscall.WaitStatus)
	if !ok {
		return state.String()
	}
	sig := syscall.Signal(-1)
	switch {
	case ws.Signaled():
		sig = ws.Signal()
	case c != nil && c.untrusted && s.Isolated() && ws.ExitStatus() > 128 && ws.ExitStatus() < 128+65:
		// bwrap reports a program killed by a signal as 128 + the signal.
		sig = syscall.Signal(ws.ExitStatus() - 128)
	}
	if sig == -1 {
		msg := fmt.Sprintf("exit status %d", ws.ExitStatus())
		if c != nil && c.cg != nil && c.cg.oomKills() > 0 {
			// A child was killed; the program itself went on.
			msg += fmt.Sprintf(" (a process was killed: memory limit (%s))", formatBytes(c.cg.memory))
		}
		return msg
	}
	if s != nil && c != nil && c.untrusted {
		if c.cg != nil && sig == syscall.SIGKILL && c.cg.oomKills() > 0 {
			return fmt.Sprintf("killed: memory limit (%s)", formatBytes(c.cg.memory))
		}
		cpu := s.cfg.cpu()
		used := cpuTime(state)
		if c.cg != nil {
			// bwrap does not always wait for its child, so the command's
			// rusage can miss the program's time; the cgroup has all of it.
			used = max(used, c.cg.cpuTime())
		}
		if sig == syscall.SIGXCPU || (sig == syscall.SIGKILL && used >= cpu) {
			return fmt.Sprintf("killed: CPU time limit (%v)", cpu)
		}
	} else if sig == syscall.SIGXCPU {
		return "killed: CPU time limit"
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("killed: %v", err)
	}
	return "signal: " + sigName(sig)
}

// cpuTime is the CPU time of a process and the children it waited for.
func cpuTime(state *os.ProcessState) time.Duration {
	return state.UserTime() + state.SystemTime()
}

func sigName(sig syscall.Signal) string {
	if sig == syscall.SIGKILL {
		return "killed"
	}
	return sig.String()
}

func trimPrefix(msg string) string {
	const p = "sandbox: "
	if len(msg) > len(p) && msg[:len(p)] == p {
		return msg[len(p):]
	}
	return msg
}
