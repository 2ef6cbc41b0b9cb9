package refserver

import (
	"errors"
	"syscall"
	"time"

	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/spec"
)

// StatusInsufficientStorage answers a request the storage has no room for:
// a FILE SAVE whose file's space cannot be reserved, an UPLOAD or DATA
// SAVE that met a full disk (STEP.md Appendix B).
const StatusInsufficientStorage spec.Status = 507

// DefaultFullDiskUploadMaxAge is the default Config.FullDiskUploadMaxAge.
const DefaultFullDiskUploadMaxAge = 10 * time.Minute

// noSpace reports whether err says the storage is full.
func noSpace(err error) bool {
	return errors.Is(err, storage.ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// makeRoom removes, for a FILE SAVE that found no room, the uploads that
// received nothing for Config.FullDiskUploadMaxAge: on a full disk they
// give their space to new uploads long before the regular sweep would.
// It reports whether it removed any. The caller holds no key lock.
func (s *Server) makeRoom() bool {
	if s.cfg.FullDiskUploadMaxAge < 0 {
		return false
	}
	s.mu.Lock()
	st := s.store
	s.mu.Unlock()
	if st == nil {
		return false
	}
	removed := st.Sweep(s.cfg.Now().Add(-s.cfg.FullDiskUploadMaxAge))
	for _, r := range removed {
		s.release(r.User, r.Size)
		s.log.Warn("storage full: idle upload removed to make room", "user", r.User, "key", r.Key, "size", r.Size)
	}
	return len(removed) > 0
}

// full answers a request the storage had no room for.
func (c *conn) full(op spec.Operation, t spec.Type, what string, err error) *spec.Message {
	c.log.Warn("storage full", "what", what, "err", err)
	return reply(op, t, StatusInsufficientStorage, "Insufficient storage: no room left to "+what+".")
}
