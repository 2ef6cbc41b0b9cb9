package grade

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/stepkit/stepkit/sandbox"
)

// describeExit says in one line how a program ended.
func describeExit(err error, st *os.ProcessState) string {
	if st != nil {
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", st.ExitCode())
	}
	if err == nil {
		return "exited"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "stopped: time limit"
	}
	return err.Error()
}

// newSandbox makes the box of a submission: a sandbox, on the host
// network when namespaces are unavailable and cfg.Fallback is set.
func newSandbox(ctx context.Context, cfg BoxConfig) (Box, error) {
	sb, err := sandbox.New(ctx, sandbox.Config{Dir: cfg.Dir, Memory: cfg.Memory, CPU: cfg.CPU, Env: cfg.Env, Fallback: cfg.Fallback})
	if err != nil {
		return nil, err
	}
	return sb, nil
}

// IsolationAvailable reports whether submissions can run isolated on this
// machine, and if not, why.
func IsolationAvailable() (bool, string) { return sandbox.Available() }
