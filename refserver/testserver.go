package refserver

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// StartTest starts a Server for a test on 127.0.0.1 at an ephemeral port.
// An empty cfg.Root is replaced by tb.TempDir() unless cfg.Storage is set. The server is shut down
// (and the test failed if Serve failed) when the test ends. It returns the
// address to dial, host:port.
func StartTest(tb testing.TB, cfg Config) (addr string, srv *Server) {
	tb.Helper()
	if cfg.Root == "" && cfg.Storage == nil {
		cfg.Root = tb.TempDir()
	}
	srv, err := New(cfg)
	if err != nil {
		tb.Fatalf("refserver.StartTest: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		tb.Fatalf("refserver.StartTest: listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; err != nil && !errors.Is(err, ErrServerClosed) {
			tb.Errorf("refserver: Serve: %v", err)
		}
	})
	return l.Addr().String(), srv
}
