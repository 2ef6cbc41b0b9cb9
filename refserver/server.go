package refserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/refserver/storage/local"
	"github.com/stepkit/stepkit/spec"
	"golang.org/x/time/rate"
)

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown or
// Close.
var ErrServerClosed = errors.New("refserver: server closed")

// Server is a STEP server. Create it with New; it is safe for concurrent
// use, and one Server may Serve several listeners.
type Server struct {
	cfg   Config
	log   *slog.Logger
	auth  authenticator
	store storage.Backend
	met   *Metrics

	budget *frameBudget                  // frame memory of all connections
	byIP   map[string]map[*conn]struct{} // connections counted, by remote address, under mu

	nextID     atomic.Uint64
	open       atomic.Int64 // connections counted against MaxConns, changed under mu
	inShutdown atomic.Bool
	users      sync.Map // user -> *userState

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	connWG    sync.WaitGroup
	stop      chan struct{} // closed by Shutdown and Close
	stopOnce  sync.Once
	sweepDone chan struct{}
}

// userState is what the server keeps per user: the rate limiter and the
// bytes counted against the quota.
type userState struct {
	limiter   *rate.Limiter
	usageOnce sync.Once
	usageErr  error
	usage     atomic.Int64
}

// New returns a Server for cfg, with its storage root opened (and created
// if needed). Uploads abandoned for longer than cfg.UploadMaxAge are
// removed in the background until Shutdown or Close.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	st := cfg.Storage
	if st == nil {
		if st, err = local.Open(cfg.Root, cfg.SyncBlocks); err != nil {
			return nil, err
		}
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		store:     st,
		met:       cfg.Metrics,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		budget:    newFrameBudget(cfg.MaxFrameMemory),
		byIP:      make(map[string]map[*conn]struct{}),
		stop:      make(chan struct{}),
		sweepDone: make(chan struct{}),
	}
	if cfg.Accounts != nil {
		s.auth = accountAuth{acc: cfg.Accounts, ttl: cfg.TokenTTL}
	} else {
		s.auth = courseAuth{}
	}
	go s.sweepLoop()
	return s, nil
}

// Mode is "course" or "account".
func (s *Server) Mode() string {
	if s.cfg.Accounts != nil {
		return "account"
	}
	return "course"
}

// storageName names where the server keeps its data, for the logs.
func (s *Server) storageName() string {
	if st, ok := s.cfg.Storage.(fmt.Stringer); ok {
		return st.String()
	}
	return fmt.Sprintf("%T", s.cfg.Storage)
}

// Config returns the server's configuration, defaults applied.
func (s *Server) Config() Config { return s.cfg }

// ListenAndServe listens on the TCP address addr and serves it.
func (s *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("refserver: listen: %w", err)
	}
	return s.Serve(l)
}

// Serve accepts connections on l and serves each in its own goroutine. It
// closes l when it returns, and returns ErrServerClosed after Shutdown or
// Close.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	where, name := "root", s.cfg.Root
	if s.cfg.Storage != nil {
		where, name = "storage", s.storageName()
	}
	s.log.Info("serving", "addr", l.Addr().String(), where, name, "mode", s.Mode(), "block_size", s.cfg.BlockSize)
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("refserver: accept: %w", err)
		}
		backoff = 0
		c := s.track(nc, s.nextID.Add(1))
		if c == nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			continue
		}
		go c.serve()
	}
}

// refuse answers a connection over a cap with one ERROR/503 frame.
func (s *Server) refuse(nc net.Conn, id uint64, msg string) {
	s.log.Warn("connection refused", "conn", id, "remote", nc.RemoteAddr().String(), "reason", msg)
	resp := spec.NewResponse(spec.OpError, spec.TypeError, spec.StatusServiceBusy, msg)
	b, _ := spec.EncodeFrame(resp)
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write(b)
	lingerClose(nc)
}

// lingerClose closes nc after sending FIN and draining what the peer still
// sends for a moment: closing a socket with unread input would reset the
// connection and could destroy the last response before it is read.
func lingerClose(nc net.Conn) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		nc.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		io.CopyN(io.Discard, nc, 1<<20)
	}
	nc.Close()
}

// Shutdown stops the server gracefully: it closes the listeners, lets
// every request in flight finish and be answered, closes connections as
// they become idle, and waits for all of them until ctx ends. Connections
// still open then are closed and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.beginClose()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() {
			break
		}
		select {
		case <-ctx.Done():
			s.closeAll()
			s.finish()
			return ctx.Err()
		case <-tick.C:
		}
	}
	s.finish()
	return nil
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.beginClose()
	s.closeAll()
	s.finish()
	return nil
}

func (s *Server) beginClose() {
	s.mu.Lock()
	s.inShutdown.Store(true)
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
}

// finish waits for the connections and the sweeper, then closes storage.
func (s *Server) finish() {
	s.connWG.Wait()
	<-s.sweepDone
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.log.Warn("close storage", "err", err)
		}
		s.store = nil
		s.log.Info("server stopped")
	}
}

// closeIdle wakes the connections waiting for a request, so that they
// close, and reports whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.idle.Load() {
			c.nc.SetReadDeadline(time.Now())
		}
	}
	return len(s.conns) == 0
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.nc.Close()
	}
}

func (s *Server) sweepLoop() {
	defer close(s.sweepDone)
	if s.cfg.UploadMaxAge < 0 {
		return
	}
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.SweepUploads()
		}
	}
}

// SweepUploads removes the uploads that received no block for longer than
// Config.UploadMaxAge and returns how many it removed. The server calls it
// every Config.SweepInterval.
func (s *Server) SweepUploads() int {
	if s.cfg.UploadMaxAge < 0 {
		return 0
	}
	s.mu.Lock()
	st := s.store
	s.mu.Unlock()
	if st == nil {
		return 0
	}
	removed := st.Sweep(s.cfg.Now().Add(-s.cfg.UploadMaxAge))
	for _, r := range removed {
		s.release(r.User, r.Size)
		s.log.Info("abandoned upload removed", "user", r.User, "key", r.Key, "size", r.Size)
	}
	return len(removed)
}

func (s *Server) user(name string) *userState {
	if v, ok := s.users.Load(name); ok {
		return v.(*userState)
	}
	us := &userState{}
	if s.cfg.RateLimit > 0 {
		us.limiter = rate.NewLimiter(rate.Limit(s.cfg.RateLimit), s.cfg.RateBurst)
	}
	v, _ := s.users.LoadOrStore(name, us)
	return v.(*userState)
}

// reserve counts delta more bytes against user's quota, or reports false
// if that would exceed it.
func (s *Server) reserve(user string, delta int64) (bool, error) {
	if s.cfg.Quota == 0 {
		return true, nil
	}
	if s.shared() {
		// Other servers write too: count from the storage each time.
		n, err := s.store.Usage(user)
		if err != nil {
			return false, err
		}
		s.user(user).usage.Store(n)
		return delta <= 0 || n+delta <= s.cfg.Quota, nil
	}
	us := s.user(user)
	us.usageOnce.Do(func() {
		n, err := s.store.Usage(user)
		us.usage.Store(n)
		us.usageErr = err
	})
	if us.usageErr != nil {
		return false, us.usageErr
	}
	for {
		cur := us.usage.Load()
		if delta > 0 && cur+delta > s.cfg.Quota {
			return false, nil
		}
		if us.usage.CompareAndSwap(cur, cur+delta) {
			return true, nil
		}
	}
}

// shared reports whether other servers write to the storage too.
func (s *Server) shared() bool {
	sh, ok := s.store.(storage.Shared)
	return ok && sh.Shared()
}

// release gives back delta bytes of user's quota.
func (s *Server) release(user string, delta int64) {
	if s.cfg.Quota == 0 || delta == 0 || s.shared() {
		return
	}
	s.user(user).usage.Add(-delta)
}

// Usage is the number of bytes user stores, as counted against the quota
// (0 when no quota is configured).
func (s *Server) Usage(user string) int64 {
	if s.cfg.Quota == 0 {
		return 0
	}
	s.reserve(user, 0)
	return s.user(user).usage.Load()
}
