package judge

import (
	"context"
	"os"

	"github.com/stepkit/stepkit/sandbox"
)

// clientEnv is the client's environment besides what the place sets
// (PATH, HOME, a UTF-8 locale): unbuffered Python output, so that what a
// killed client printed last is not lost, the judge's TZ when it has one,
// then the run's own variables.
func clientEnv(o *Options) []string {
	env := []string{"PYTHONUNBUFFERED=1", "PYTHONIOENCODING=utf-8", "PYTHONDONTWRITEBYTECODE=1"}
	// Course tokens carry the login time in the server's zone, and course
	// clients rebuild them in theirs: the judging server's zone is the
	// client's too (TZ if set, else the /etc/localtime both see).
	if tz, ok := os.LookupEnv("TZ"); ok {
		env = append(env, "TZ="+tz)
	}
	return append(env, o.Env...)
}

// NamespacesAvailable reports whether cases can run in network namespaces
// of their own on this machine, and if not, why.
func NamespacesAvailable() (bool, string) { return sandbox.Available() }

func namespacesAvailable() (bool, string) { return sandbox.Available() }

// newPlace makes the place a case runs in: a sandbox with a network
// namespace of its own, or the host.
func newPlace(ctx context.Context, o *Options, isolated bool) (place, error) {
	if isolated {
		sb, err := sandbox.New(ctx, sandbox.Config{Dir: o.Dir, Env: clientEnv(o), Memory: o.Memory, CPU: o.CPU})
		if err != nil {
			return nil, err
		}
		return sandboxPlace{sb}, nil
	}
	h, err := newHostPlace(o.Dir, nil)
	if err != nil {
		return nil, err
	}
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	h.env = append([]string{"PATH=" + path, "HOME=" + h.dir, "LANG=C.UTF-8"}, clientEnv(o)...)
	return h, nil
}

// sandboxPlace runs the client in a sandbox: the judge listens in its
// network namespace, the client runs there as an unprivileged user with
// the scratch copy as its only writable folder.
type sandboxPlace struct{ *sandbox.Sandbox }

// describe names how a client ended, the sandbox's limits included.
func (s sandboxPlace) describe(err error, state *os.ProcessState) string {
	return s.Sandbox.Describe(err, state)
}

// explain says which of the sandbox's restrictions the client ran into.
func (s sandboxPlace) explain(output, ended string) string {
	return s.Sandbox.Explain(output, ended)
}

var _ place = sandboxPlace{}
var _ describer = sandboxPlace{}
var _ explainer = sandboxPlace{}

// explainer is a place that can tell a failure its restrictions caused
// ("denied writing /etc/x: outside the submission's folder") from the
// program's own.
type explainer interface {
	explain(output, ended string) string
}

// describer is a place that can say how a command ended better than its
// exit status alone (a limit that killed it).
type describer interface {
	describe(err error, state *os.ProcessState) string
}
