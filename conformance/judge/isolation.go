package judge

import (
	"context"
	"os"
)

// clientEnv is the client's environment: a minimal PATH, HOME (its scratch
// folder), a UTF-8 locale, then the run's own variables.
func clientEnv(o *Options, home string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	env := []string{"PATH=" + path, "HOME=" + home, "LANG=C.UTF-8", "PYTHONUNBUFFERED=1", "PYTHONIOENCODING=utf-8", "PYTHONDONTWRITEBYTECODE=1"}
	return append(env, o.Env...)
}

// NamespacesAvailable reports whether cases can run in network namespaces
// of their own on this machine, and if not, why.
func NamespacesAvailable() (bool, string) { return namespacesAvailable() }

// namespacesAvailable reports whether cases can run in network namespaces.
func namespacesAvailable() (bool, string) {
	return false, "this build has no sandbox"
}

// newPlace makes the place a case runs in.
func newPlace(ctx context.Context, o *Options, isolated bool) (place, error) {
	h, err := newHostPlace(o.Dir, nil)
	if err != nil {
		return nil, err
	}
	h.env = clientEnv(o, h.dir)
	return h, nil
}
