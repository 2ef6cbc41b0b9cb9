package judge

import (
	"context"
	"os"
)

// clientEnv is the client's environment besides what the place sets
// (PATH, HOME, a UTF-8 locale): unbuffered Python output, so that what a
// killed client printed last is not lost, then the run's own variables.
func clientEnv(o *Options) []string {
	env := []string{"PYTHONUNBUFFERED=1", "PYTHONIOENCODING=utf-8", "PYTHONDONTWRITEBYTECODE=1"}
	return append(env, o.Env...)
}

// NamespacesAvailable reports whether cases can run in network namespaces
// of their own on this machine, and if not, why.
func NamespacesAvailable() (bool, string) { return namespacesAvailable() }

func namespacesAvailable() (bool, string) { return false, "this build has no sandbox" }

// newPlace makes the place a case runs in.
func newPlace(ctx context.Context, o *Options, isolated bool) (place, error) {
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

// describer is a place that can say how a command ended better than its
// exit status alone (a limit that killed it).
type describer interface {
	describe(err error, state *os.ProcessState) string
}
