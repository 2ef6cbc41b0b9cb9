package local

import (
	"time"

	"github.com/stepkit/stepkit/refserver/storage"
)

// The storage.Backend methods of Store: each is one of the store's own
// operations, named as the interface names it.

var _ storage.Backend = (*Store)(nil)

func checkName(s string) error { return storage.CheckName(s) }

// Plan returns the upload's plan.
func (u *upload) Plan() storage.Plan { return u.plan }

func (s *Store) Lock(user, key string) func() { return s.lock(user, key) }

func (s *Store) SaveData(user, key string, doc []byte) error { return s.dataSave(user, key, doc) }

func (s *Store) Data(user, key string) ([]byte, error) { return s.dataGet(user, key) }

func (s *Store) DeleteData(user, key string) (int64, error) { return s.dataDelete(user, key) }

func (s *Store) Completed(user, key string) (*storage.FileMeta, error) { return s.completed(user, key) }

func (s *Store) CompletedLocked(user, key string) (*storage.FileMeta, error) {
	return s.completedLocked(user, key)
}

func (s *Store) OpenCompleted(user, key string, _ *storage.FileMeta) (storage.File, error) {
	f, err := s.openCompleted(user, key)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (s *Store) DeleteFile(user, key string) (int64, error) { return s.fileDelete(user, key) }

func (s *Store) CreateEmpty(user, key string) (*storage.FileMeta, error) {
	return s.createEmpty(user, key)
}

func (s *Store) Upload(user, key string) (storage.Upload, error) {
	u, err := s.uploadLocked(user, key)
	if err != nil {
		return nil, err
	}
	return u, nil
}

func (s *Store) PlanUpload(user, key string, size, blockSize int64, now time.Time) (storage.Plan, int64, error) {
	return s.planUpload(user, key, size, blockSize, now)
}

func (s *Store) DropUpload(user, key string, u storage.Upload) error {
	return s.dropUpload(user, key, u.(*upload))
}

func (s *Store) WriteBlock(user, key string, u storage.Upload, index int64, block []byte, now time.Time) (*storage.FileMeta, error) {
	return s.writeBlockLocked(user, key, u, index, block, now, false)
}

var _ storage.BatchWriter = (*Store)(nil)

func (s *Store) WriteBlockBatched(user, key string, u storage.Upload, index int64, block []byte, now time.Time) (*storage.FileMeta, error) {
	return s.writeBlockLocked(user, key, u, index, block, now, true)
}

// writeBlockLocked stores a block under the key's lock, once it knows the
// upload is still the key's: the server does not hold the lock across a
// block, so that a backend may take blocks of one upload from several
// connections at once.
func (s *Store) writeBlockLocked(user, key string, u storage.Upload, index int64, block []byte, now time.Time, hold bool) (*storage.FileMeta, error) {
	unlock := s.lock(user, key)
	defer unlock()
	if cur, ok := s.uploads.Load(ukey(user, key)); !ok || cur != u {
		return nil, errNotFound // removed or replaced meanwhile
	}
	return s.writeBlockBatched(user, key, u.(*upload), index, block, now, hold)
}

func (s *Store) CommitBlocks(user, key string, u storage.Upload) error {
	return s.commitBlocks(user, key, u.(*upload))
}

func (s *Store) Usage(user string) (int64, error) { return s.usage(user) }

func (s *Store) Sweep(cutoff time.Time) []storage.Swept {
	var out []storage.Swept
	for _, r := range s.sweep(cutoff) {
		out = append(out, storage.Swept{User: r.user, Key: r.key, Size: r.size})
	}
	return out
}

func (s *Store) Close() error { return s.close() }
