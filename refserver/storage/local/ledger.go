package local

import (
	"fmt"
	"sync"
	"syscall"
)

// ledger reserves the room of uploads on a file system where allocating
// ahead costs more than it saves: on tmpfs, fallocate clears every page it
// allocates (73 ms for 256 MiB on a 2-core VM), all of it before FILE SAVE
// can be answered, and the blocks overwrite those pages at once. There, a
// FILE SAVE is checked against the file system's free space less what the
// uploads in progress of this store still need, and pages are allocated
// as blocks are written. Another writer can still fill the file system;
// a block that then meets it is answered as on any full disk.
type ledger struct {
	mu      sync.Mutex
	dir     string
	uploads map[*upload]int64 // the bytes each reserved, file and record
}

func newLedger(dir string) *ledger {
	return &ledger{dir: dir, uploads: make(map[*upload]int64)}
}

// reserve sets the sizes of u's files, sparse, and records their room, or
// fails with ENOSPC when the file system does not have it.
func (l *ledger) reserve(u *upload) error {
	want := u.plan.Size + u.plan.TotalBlock
	l.mu.Lock()
	defer l.mu.Unlock()
	free, err := freeBytes(l.dir)
	if err != nil {
		return fmt.Errorf("reserve %d bytes: %w", want, err)
	}
	need := want
	for v, n := range l.uploads {
		need += max(0, n-allocated(v.f)-allocated(v.rf))
	}
	if need > free {
		return fmt.Errorf("reserve %d bytes (%d free, %d promised to uploads in progress): %w",
			want, free, need-want, syscall.ENOSPC)
	}
	if err := u.f.Truncate(u.plan.Size); err != nil {
		return err
	}
	if err := u.rf.Truncate(u.plan.TotalBlock); err != nil {
		return err
	}
	l.uploads[u] = want
	return nil
}

// add records the room of u, loaded from an earlier run, unchecked.
func (l *ledger) add(u *upload) {
	l.mu.Lock()
	l.uploads[u] = u.plan.Size + u.plan.TotalBlock
	l.mu.Unlock()
}

// release gives back u's room: it is completed, removed or forgotten.
func (l *ledger) release(u *upload) {
	l.mu.Lock()
	delete(l.uploads, u)
	l.mu.Unlock()
}
