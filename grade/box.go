package grade

import (
	"context"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/stepkit/stepkit/sandbox"
)

// Box is where one submission runs: a sandbox.Sandbox, or anything with
// its methods (tests wrap one to watch it).
type Box interface {
	Isolated() bool
	Why() string
	WorkDir() string
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	Command(ctx context.Context, argv []string) *sandbox.Cmd
	Trusted(ctx context.Context, argv []string) *exec.Cmd
	// Describe says in one line how a command of the box ended ("exit
	// status 1", "killed: memory limit (256 MiB)").
	Describe(err error, state *os.ProcessState) string
	Close() error
}

// explainer is a Box that can tell the failures its restrictions cause
// from the program's own (sandbox.Sandbox.Explain).
type explainer interface {
	Explain(output, ended string) string
}

// BoxConfig is what a Box is made from.
type BoxConfig struct {
	Dir      string        // the submission's folder, copied into the box
	Memory   int64         // bytes; 0: the sandbox's default
	CPU      time.Duration // CPU time; 0: the sandbox's default
	Env      []string
	Fallback bool // run on the host network when namespaces are unavailable
}
