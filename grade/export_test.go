package grade

import "context"

// NewHostBox makes boxes on the host network, as the sandbox does where
// namespaces are not available: tests grade with it to check that path.
func NewHostBox(_ context.Context, cfg BoxConfig) (Box, error) {
	return newHostBox(cfg, "namespaces turned off by the test")
}
