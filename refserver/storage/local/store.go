package local

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/spec"
)

// Storage layout under the root folder. User folders never start with a
// dot (a username's dots become underscores), so the staging folder
// tmp/.stage cannot collide with a user.
const (
	dirData  = "data" // data/USER/KEY: a DATA document, as JSON
	dirFile  = "file" // file/USER/KEY: a completed file, whole
	dirMeta  = "meta" // meta/USER/KEY: size and MD5 of file/USER/KEY (a cache, never fsynced)
	dirTmp   = "tmp"  // tmp/USER/KEY/: an upload in progress
	dirStage = "tmp/.stage"

	// Inside tmp/USER/KEY/: fixed names, so no key can collide with the
	// bookkeeping of another.
	upPlan     = "plan.json" // the upload plan
	upBlocks   = "blocks"    // the file, preallocated to its size
	upReceived = "received"  // one byte per block: 1 once it is written
)

const lockStripes = 4096

// writebackEvery is how many bytes of an upload may be written before the
// kernel is asked to start writing them to disk.
const writebackEvery = 8 << 20

// Errors of the store: the storage package's, mapped to statuses by the
// server.
var (
	errNotFound   = storage.ErrNotFound
	errInProgress = storage.ErrInProgress
	errExists     = storage.ErrExists
)

// Store is the storage root: DATA documents, completed files and uploads
// in progress. Every path it touches goes through an os.Root, so no name
// can reach outside the root folder, even through a symbolic link.
type Store struct {
	root       *os.Root
	dir        string
	syncBlocks bool
	// ledger reserves the room of uploads on tmpfs instead of fallocate;
	// nil elsewhere.
	ledger *ledger

	seed    maphash.Seed
	locks   [lockStripes]sync.Mutex // per key, striped
	unlocks [lockStripes]func()     // their Unlock methods, made once
	// last is, per stripe, the upload last looked up or planned under
	// its lock: the blocks of a transfer find their upload without
	// building a map key. Guarded by the stripe's lock.
	last     [lockStripes]lastUpload
	lastFile [lockStripes]lastCompleted

	blockPool sync.Pool   // *chunk: the digests' spans of uploads in memory
	spare     chunkBudget // chunks of uploads beyond their own few

	files   sync.Map // user/key -> *fileMeta, completed files
	uploads sync.Map // user/key -> *upload, uploads in progress
}

// fileMeta describes a completed file. A new value is made each time a
// key's file changes, so a pointer identifies one version of the file.
// It is stored as meta/USER/KEY.
type fileMeta = storage.FileMeta

// uploadPlan is the plan of an upload, stored as tmp/USER/KEY/plan.json.
type uploadPlan = storage.Plan

// upload is an upload in progress. Its fields are guarded by the key's
// stripe lock.
type upload struct {
	plan     uploadPlan
	f        *os.File // tmp/USER/KEY/blocks
	rf       *os.File // tmp/USER/KEY/received
	received []byte
	count    int64
	// The MD5 covers blocks [0, hashed) as they arrive in order; blocks
	// that arrive early are hashed when their turn comes, from the
	// digest's chunks ahead (stashed marks them) or else read back from
	// the file.
	d       *digest
	hashed  int64
	stashed []uint64 // a bit per block, made at the first block stashed
	// dirty counts the bytes written since writeback was last started.
	dirty  int64
	active atomic.Int64 // unix nanoseconds of the last block
	// Blocks [heldLo, heldHi) include every block stored whose record
	// (and fsync, when blocks are fsynced) is held back until
	// commitBlocks; heldLo == heldHi when none is.
	heldLo, heldHi int64
	closed         bool // closeFiles was called: the upload is gone
	ledger         *ledger
}

// Open opens (creating it if needed) the storage root dir. When syncBlocks
// is set, every block is fsynced before WriteBlock returns.
func Open(dir string, syncBlocks bool) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create storage root: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open storage root: %w", err)
	}
	s := &Store{root: root, dir: dir, syncBlocks: syncBlocks, seed: maphash.MakeSeed()}
	s.spare.max = defaultChunkBudget
	if onTmpfs(dir) {
		s.ledger = newLedger(dir)
	}
	for i := range s.locks {
		s.unlocks[i] = s.locks[i].Unlock
	}
	// Leftovers of writes interrupted by a crash are never referenced.
	if err := root.RemoveAll(dirStage); err != nil {
		root.Close()
		return nil, fmt.Errorf("clear staging folder: %w", err)
	}
	for _, d := range []string{dirData, dirFile, dirMeta, dirTmp, dirStage} {
		if err := root.MkdirAll(d, 0o755); err != nil {
			root.Close()
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	return s, nil
}

func (s *Store) close() error {
	s.uploads.Range(func(k, v any) bool {
		v.(*upload).closeFiles()
		s.uploads.Delete(k)
		return true
	})
	clear(s.last[:])
	clear(s.lastFile[:])
	return s.root.Close()
}

func ukey(user, key string) string { return user + "/" + key }

// lock locks the stripe of user's key and returns its unlock function.
func (s *Store) lock(user, key string) func() {
	i := s.stripe(user, key)
	s.locks[i].Lock()
	return s.unlocks[i]
}

func (s *Store) stripe(user, key string) uint64 {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(user)
	h.WriteByte(0)
	h.WriteString(key)
	return h.Sum64() % lockStripes
}

// lastUpload is an upload in progress and its names.
type lastUpload struct {
	user, key string
	u         *upload
}

// remember makes u the last upload of its stripe. The caller holds the
// key's lock.
func (s *Store) remember(user, key string, u *upload) {
	s.last[s.stripe(user, key)] = lastUpload{user, key, u}
}

func p(dir, user, key string) string { return filepath.Join(dir, user, key) }

// writeAtomic writes name whole: into a staging file renamed over name,
// so that name is never seen half written. When durable, the file and its
// folder are fsynced before it returns.
func (s *Store) writeAtomic(name string, data []byte, durable bool) error {
	var rnd [12]byte
	rand.Read(rnd[:])
	stage := filepath.Join(dirStage, hex.EncodeToString(rnd[:]))
	f, err := s.root.OpenFile(stage, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create staging file: %w", err)
	}
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.root.MkdirAll(filepath.Dir(name), 0o755)
	}
	if err == nil {
		err = s.root.Rename(stage, name)
	}
	if err != nil {
		s.root.Remove(stage)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if !durable {
		return nil
	}
	return s.syncDir(filepath.Dir(name))
}

func (s *Store) syncDir(name string) error {
	d, err := s.root.Open(name)
	if err != nil {
		return fmt.Errorf("open folder %s: %w", name, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync folder %s: %w", name, err)
	}
	return nil
}

// ---- DATA documents ----

// dataSave stores doc under user's key unless the key exists. The caller
// holds the key's lock.
func (s *Store) dataSave(user, key string, doc []byte) error {
	name := p(dirData, user, key)
	if _, err := s.root.Lstat(name); err == nil {
		return errExists
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stat %s: %w", name, err)
	}
	return s.writeAtomic(name, doc, true)
}

func (s *Store) dataGet(user, key string) ([]byte, error) {
	b, err := s.root.ReadFile(p(dirData, user, key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read document: %w", err)
	}
	return b, nil
}

// dataDelete removes a document and returns its size. The caller holds the
// key's lock.
func (s *Store) dataDelete(user, key string) (int64, error) {
	name := p(dirData, user, key)
	fi, err := s.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, errNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("stat document: %w", err)
	}
	if err := s.root.Remove(name); err != nil {
		return 0, fmt.Errorf("delete document: %w", err)
	}
	return fi.Size(), nil
}

// ---- completed files ----

// completed returns the metadata of user's completed file key, or
// errNotFound. Known files are answered without a lock.
func (s *Store) completed(user, key string) (*fileMeta, error) {
	// The file of a download in progress is its stripe's last: found
	// under the stripe's lock without building a map key.
	i := s.stripe(user, key)
	s.locks[i].Lock()
	defer s.locks[i].Unlock()
	if l := &s.lastFile[i]; l.m != nil && l.user == user && l.key == key {
		return l.m, nil
	}
	return s.completedLocked(user, key)
}

// lastCompleted is a completed file's metadata and its names.
type lastCompleted struct {
	user, key string
	m         *fileMeta
}

// setFile records m as user's completed file key (nil: there is none).
// The caller holds the key's lock.
func (s *Store) setFile(user, key string, m *fileMeta) {
	l := &s.lastFile[s.stripe(user, key)]
	if m == nil {
		s.files.Delete(ukey(user, key))
		if l.user == user && l.key == key {
			*l = lastCompleted{}
		}
		return
	}
	s.files.Store(ukey(user, key), m)
	*l = lastCompleted{user, key, m}
}

// completedLocked is completed for a caller holding the key's lock. A file
// found on disk is checked against its meta record; a file put there by
// hand (or a stale record) gets its MD5 computed and recorded.
func (s *Store) completedLocked(user, key string) (*fileMeta, error) {
	if m, ok := s.files.Load(ukey(user, key)); ok {
		s.lastFile[s.stripe(user, key)] = lastCompleted{user, key, m.(*fileMeta)}
		return m.(*fileMeta), nil
	}
	name := p(dirFile, user, key)
	fi, err := s.root.Stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("stat file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errNotFound
	}
	var m fileMeta
	b, err := s.root.ReadFile(p(dirMeta, user, key))
	if err != nil || json.Unmarshal(b, &m) != nil || m.Size != fi.Size() || m.ModTime != fi.ModTime().UnixNano() || len(m.MD5) != 32 {
		f, err := s.root.Open(name)
		if err != nil {
			return nil, fmt.Errorf("open file: %w", err)
		}
		h := md5.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("hash file: %w", err)
		}
		m = fileMeta{Size: n, MD5: hex.EncodeToString(h.Sum(nil)), ModTime: fi.ModTime().UnixNano()}
		if b, err := json.Marshal(&m); err == nil {
			if err := s.writeAtomic(p(dirMeta, user, key), b, false); err != nil {
				return nil, err
			}
		}
	}
	s.setFile(user, key, &m)
	return &m, nil
}

// openCompleted opens user's completed file key for reading.
func (s *Store) openCompleted(user, key string) (*os.File, error) {
	f, err := s.root.Open(p(dirFile, user, key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("open file: %w", err)
	}
	return f, nil
}

// fileDelete removes a completed file (returning its size) or an upload in
// progress (errInProgress, after removing it, with its planned size). The
// caller holds the key's lock.
func (s *Store) fileDelete(user, key string) (int64, error) {
	if u, err := s.uploadLocked(user, key); err == nil {
		size := u.plan.Size
		if err := s.dropUpload(user, key, u); err != nil {
			return 0, err
		}
		return size, errInProgress
	} else if !errors.Is(err, errNotFound) {
		return 0, err
	}
	m, err := s.completedLocked(user, key)
	if err != nil {
		return 0, err
	}
	if err := s.root.Remove(p(dirFile, user, key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("delete file: %w", err)
	}
	s.setFile(user, key, nil)
	if err := s.root.Remove(p(dirMeta, user, key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("delete file record: %w", err)
	}
	return m.Size, nil
}

// createEmpty stores an empty completed file at once (FILE SAVE of size 0).
func (s *Store) createEmpty(user, key string) (*fileMeta, error) {
	name := p(dirFile, user, key)
	if err := s.writeAtomic(name, nil, true); err != nil {
		return nil, err
	}
	fi, err := s.root.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("stat file: %w", err)
	}
	m := &fileMeta{Size: 0, MD5: hex.EncodeToString(md5.New().Sum(nil)), ModTime: fi.ModTime().UnixNano()}
	b, _ := json.Marshal(m)
	if err := s.writeAtomic(p(dirMeta, user, key), b, false); err != nil {
		return nil, err
	}
	s.setFile(user, key, m)
	return m, nil
}

// ---- uploads in progress ----

func (u *upload) closeFiles() {
	u.closed = true
	if u.ledger != nil {
		u.ledger.release(u)
	}
	u.d.wait()
	if u.f != nil {
		u.f.Close()
	}
	if u.rf != nil {
		u.rf.Close()
	}
}

// uploadLocked returns user's upload in progress of key, loading it from
// tmp/ after a restart, or errNotFound. The caller holds the key's lock.
func (s *Store) uploadLocked(user, key string) (*upload, error) {
	if l := &s.last[s.stripe(user, key)]; l.u != nil && l.user == user && l.key == key {
		return l.u, nil
	}
	uk := ukey(user, key)
	if v, ok := s.uploads.Load(uk); ok {
		s.remember(user, key, v.(*upload))
		return v.(*upload), nil
	}
	dir := p(dirTmp, user, key)
	b, err := s.root.ReadFile(filepath.Join(dir, upPlan))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read upload plan: %w", err)
	}
	var plan uploadPlan
	if err := json.Unmarshal(b, &plan); err != nil || plan.Size <= 0 || plan.BlockSize <= 0 ||
		plan.TotalBlock != spec.TotalBlocks(plan.Size, plan.BlockSize) {
		// A plan that does not parse was never completely written.
		s.root.RemoveAll(dir)
		return nil, errNotFound
	}
	u := &upload{plan: plan, d: newDigest(&s.blockPool, &s.spare, plan.Size)}
	u.f, err = s.root.OpenFile(filepath.Join(dir, upBlocks), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		// The file was moved to file/ by a completion the crash
		// interrupted before this folder was removed.
		s.root.RemoveAll(dir)
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("open upload: %w", err)
	}
	u.d.f = u.f
	u.rf, err = s.root.OpenFile(filepath.Join(dir, upReceived), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		u.closeFiles()
		return nil, fmt.Errorf("open upload progress: %w", err)
	}
	u.received = make([]byte, plan.TotalBlock)
	n, err := u.rf.ReadAt(u.received, 0)
	if err != nil && err != io.EOF {
		u.closeFiles()
		return nil, fmt.Errorf("read upload progress: %w", err)
	}
	for i := range u.received[:n] {
		if u.received[i] != 0 {
			u.received[i] = 1
			u.count++
		}
	}
	for i := n; i < len(u.received); i++ {
		u.received[i] = 0
	}
	if fi, err := u.rf.Stat(); err == nil {
		u.active.Store(fi.ModTime().UnixNano())
	}
	if s.ledger != nil {
		// Planned before a restart: what it still needs is promised.
		s.ledger.add(u)
		u.ledger = s.ledger
	}
	s.uploads.Store(uk, u)
	s.remember(user, key, u)
	return u, nil
}

// planUpload starts (or restarts) user's upload of key. It returns the
// size of the plan it replaced, if any. The caller holds the key's lock
// and has checked that the key is not completed.
func (s *Store) planUpload(user, key string, size, blockSize int64, now time.Time) (uploadPlan, int64, error) {
	var old int64
	if u, err := s.uploadLocked(user, key); err == nil {
		old = u.plan.Size
		if err := s.dropUpload(user, key, u); err != nil {
			return uploadPlan{}, 0, err
		}
	} else if !errors.Is(err, errNotFound) {
		return uploadPlan{}, 0, err
	}
	plan := uploadPlan{Size: size, BlockSize: blockSize, TotalBlock: spec.TotalBlocks(size, blockSize)}
	dir := p(dirTmp, user, key)
	if err := s.root.MkdirAll(dir, 0o755); err != nil {
		return uploadPlan{}, 0, fmt.Errorf("create upload folder: %w", err)
	}
	u := &upload{plan: plan, d: newDigest(&s.blockPool, &s.spare, plan.Size), received: make([]byte, plan.TotalBlock)}
	var err error
	// The file and its progress take their whole space now, so that an
	// upload the disk cannot hold is refused at once rather than at some
	// block, and one that is accepted does not run out of room.
	u.f, err = s.root.OpenFile(filepath.Join(dir, upBlocks), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err == nil {
		u.d.f = u.f
		u.rf, err = s.root.OpenFile(filepath.Join(dir, upReceived), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	}
	switch {
	case err != nil:
	case s.ledger != nil:
		if err = s.ledger.reserve(u); err == nil {
			u.ledger = s.ledger
		}
	default:
		if err = reserve(u.f, size); err == nil {
			err = reserve(u.rf, plan.TotalBlock)
		}
	}
	if err != nil {
		u.closeFiles()
		s.root.RemoveAll(dir)
		return uploadPlan{}, 0, fmt.Errorf("prepare upload: %w", err)
	}
	// The plan is written last: an upload folder without a plan is
	// ignored and removed. Like the blocks, it is fsynced only when
	// blocks are.
	b, _ := json.Marshal(&plan)
	if err := s.writeAtomic(filepath.Join(dir, upPlan), b, s.syncBlocks); err != nil {
		u.closeFiles()
		s.root.RemoveAll(dir)
		return uploadPlan{}, 0, err
	}
	u.active.Store(now.UnixNano())
	s.uploads.Store(ukey(user, key), u)
	s.remember(user, key, u)
	return plan, old, nil
}

// dropUpload removes an upload in progress. The caller holds the key's lock.
func (s *Store) dropUpload(user, key string, u *upload) error {
	u.closeFiles()
	s.uploads.Delete(ukey(user, key))
	if l := &s.last[s.stripe(user, key)]; l.u == u {
		*l = lastUpload{}
	}
	if err := s.root.RemoveAll(p(dirTmp, user, key)); err != nil {
		return fmt.Errorf("remove upload: %w", err)
	}
	return nil
}

// errBlockLen is returned by writeBlock for a block of the wrong length.
var errBlockLen = storage.ErrBlockLen

// writeBlock stores block index of an upload. When it was the last missing
// block, the file is completed and its metadata returned. With hold set,
// the record that the block arrived (and its fsync, with syncBlocks) may
// wait for commitBlocks. The caller holds the key's lock and has checked
// the index.
func (s *Store) writeBlockBatched(user, key string, u *upload, index int64, block []byte, now time.Time, hold bool) (*fileMeta, error) {
	want := spec.BlockLen(u.plan.Size, u.plan.BlockSize, index)
	if int64(len(block)) != want {
		return nil, errBlockLen
	}
	if u.received[index] != 0 && index < u.hashed {
		// A block hashed already was sent again, maybe with other
		// bytes: hash the file again from the start.
		u.d.reset()
		u.hashed = 0
		clear(u.stashed)
	}
	var written int64
	var err error
	switch {
	case index == u.hashed:
		// In order: the block joins the chunk that the digest writes
		// to the file whole, at the latest before its record.
		written, err = u.d.writeBlock(block)
	case u.d.stash(index*u.plan.BlockSize, block):
		// Ahead of the hash: in its place in the chunks ahead, written
		// with them, at the latest before its record.
		u.setStashed(index)
	default:
		_, err = u.f.WriteAt(block, index*u.plan.BlockSize)
		written = want
	}
	if err != nil {
		s.forget(user, key, u)
		return nil, fmt.Errorf("write block %d: %w", index, err)
	}
	u.wroteBack(written, s.syncBlocks)
	if u.received[index] == 0 {
		u.received[index] = 1
		u.count++
	}
	if u.heldLo == u.heldHi {
		u.heldLo, u.heldHi = index, index+1
	} else {
		u.heldLo, u.heldHi = min(u.heldLo, index), max(u.heldHi, index+1)
	}
	if !hold || u.count == u.plan.TotalBlock {
		if err := s.commitBlocks(user, key, u); err != nil {
			return nil, err
		}
	}
	u.active.Store(now.UnixNano())
	if index == u.hashed {
		u.hashed++
		u.hashArrived()
	}
	if u.count < u.plan.TotalBlock {
		return nil, nil
	}
	return s.finish(user, key, u)
}

// wroteBack counts n bytes written to the file and, every writebackEvery
// bytes, asks the kernel to start writing them to disk, so that the fsync
// that completes the upload has little left to do. Blocks fsynced as they
// come need none of it.
func (u *upload) wroteBack(n int64, synced bool) {
	if synced {
		return
	}
	if u.dirty += n; u.dirty >= writebackEvery {
		startWriteback(u.f)
		u.dirty = 0
	}
}

// forget drops u from memory after a failure to write blocks it marked
// as received: the next request loads the upload again from its folder,
// whose record names only blocks written before it. The caller holds
// the key's lock.
func (s *Store) forget(user, key string, u *upload) {
	u.closeFiles()
	s.uploads.CompareAndDelete(ukey(user, key), u)
	if l := &s.last[s.stripe(user, key)]; l.u == u {
		*l = lastUpload{}
	}
}

// commitBlocks writes the records held back by writeBlockBatched: one
// write of the span of the progress file they fall in, taken from memory,
// where a block is marked only once it is written. With syncBlocks the
// blocks are fsynced first, then the record: a group commit.
func (s *Store) commitBlocks(user, key string, u *upload) error {
	// Blocks that failed to reach the file are never acknowledged, even
	// once their upload is forgotten.
	if u.d.err != nil {
		return fmt.Errorf("write blocks: %w", u.d.err)
	}
	if u.closed || u.heldLo == u.heldHi {
		return nil
	}
	written, err := u.d.flush()
	if err != nil {
		s.forget(user, key, u)
		return fmt.Errorf("write blocks: %w", err)
	}
	u.wroteBack(written, s.syncBlocks)
	if s.syncBlocks {
		if err := u.f.Sync(); err != nil {
			return fmt.Errorf("sync blocks: %w", err)
		}
	}
	lo, hi := u.heldLo, u.heldHi
	if _, err := u.rf.WriteAt(u.received[lo:hi], lo); err != nil {
		return fmt.Errorf("record blocks %d to %d: %w", lo, hi-1, err)
	}
	if s.syncBlocks {
		if err := u.rf.Sync(); err != nil {
			return fmt.Errorf("sync progress: %w", err)
		}
	}
	u.heldLo, u.heldHi = 0, 0
	return nil
}

// hashArrived feeds the MD5 with the blocks that follow the ones hashed
// and arrived earlier (out of order, from another connection): from the
// digest's chunks ahead, or else read back from the file. The hash keeps
// up with the upload instead of reading them all at the end. A block
// that cannot be read back is left to hashRest, which fails the upload
// if it still cannot.
func (u *upload) hashArrived() {
	for u.hashed < u.plan.TotalBlock && u.received[u.hashed] != 0 {
		n := spec.BlockLen(u.plan.Size, u.plan.BlockSize, u.hashed)
		if u.isStashed(u.hashed) {
			// A failure is the digest's sticky error: commitBlocks
			// reports it before any record.
			w, _ := u.d.advance(n)
			u.dirty += w
			u.stashed[u.hashed/64] &^= 1 << (u.hashed % 64)
			u.hashed++
			continue
		}
		off := u.hashed * u.plan.BlockSize
		if err := u.d.readAt(u.f, off, n); err != nil {
			u.d.reset()
			u.hashed = 0
			clear(u.stashed)
			return
		}
		u.hashed++
	}
}

func (u *upload) setStashed(index int64) {
	if u.stashed == nil {
		u.stashed = make([]uint64, (u.plan.TotalBlock+63)/64)
	}
	u.stashed[index/64] |= 1 << (index % 64)
}

func (u *upload) isStashed(index int64) bool {
	return u.stashed != nil && u.stashed[index/64]&(1<<(index%64)) != 0
}

// finish completes an upload whose blocks have all arrived: it finishes
// the MD5, fsyncs the file and renames it into file/USER/KEY.
func (s *Store) finish(user, key string, u *upload) (*fileMeta, error) {
	if err := u.hashRest(); err != nil {
		return nil, err
	}
	// The disk writes the last blocks while the hash ends: the fsync then
	// has little left to wait for.
	if !s.syncBlocks {
		startWriteback(u.f)
	}
	sum := u.d.sum()
	if err := u.f.Sync(); err != nil {
		return nil, fmt.Errorf("sync upload: %w", err)
	}
	fi, err := u.f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat upload: %w", err)
	}
	m := &fileMeta{Size: u.plan.Size, MD5: hex.EncodeToString(sum), ModTime: fi.ModTime().UnixNano()}
	b, _ := json.Marshal(m)
	if err := s.writeAtomic(p(dirMeta, user, key), b, false); err != nil {
		return nil, err
	}
	if err := s.root.MkdirAll(filepath.Join(dirFile, user), 0o755); err != nil {
		return nil, fmt.Errorf("create user folder: %w", err)
	}
	if err := s.root.Rename(filepath.Join(p(dirTmp, user, key), upBlocks), p(dirFile, user, key)); err != nil {
		return nil, fmt.Errorf("move completed file: %w", err)
	}
	if err := s.syncDir(filepath.Join(dirFile, user)); err != nil {
		return nil, err
	}
	s.setFile(user, key, m)
	if err := s.dropUpload(user, key, u); err != nil {
		return nil, err
	}
	return m, nil
}

// hashRest feeds the MD5 with the blocks not hashed yet, read back from the
// file: the blocks that arrived out of order, or before a restart.
func (u *upload) hashRest() error {
	if u.hashed == u.plan.TotalBlock {
		return nil
	}
	off := u.hashed * u.plan.BlockSize
	if err := u.d.readFrom(io.NewSectionReader(u.f, off, u.plan.Size-off)); err != nil {
		return err
	}
	u.hashed = u.plan.TotalBlock
	return nil
}

// usage is the number of bytes user stores: completed files, planned
// uploads and DATA documents.
func (s *Store) usage(user string) (int64, error) {
	var total int64
	sum := func(dir string) error {
		d, err := s.root.Open(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer d.Close()
		ents, err := d.ReadDir(-1)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
				total += fi.Size()
			}
		}
		return nil
	}
	if err := sum(filepath.Join(dirFile, user)); err != nil {
		return 0, fmt.Errorf("measure files: %w", err)
	}
	if err := sum(filepath.Join(dirData, user)); err != nil {
		return 0, fmt.Errorf("measure documents: %w", err)
	}
	for _, key := range s.listDir(filepath.Join(dirTmp, user)) {
		var plan uploadPlan
		if b, err := s.root.ReadFile(filepath.Join(dirTmp, user, key, upPlan)); err == nil && json.Unmarshal(b, &plan) == nil {
			total += plan.Size
		}
	}
	return total, nil
}

func (s *Store) listDir(dir string) []string {
	d, err := s.root.Open(dir)
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	return names
}

// sweepResult is one upload removed by sweep.
type sweepResult struct {
	user, key string
	size      int64
}

// sweep removes the uploads that received nothing since before cutoff.
func (s *Store) sweep(cutoff time.Time) []sweepResult {
	var out []sweepResult
	for _, user := range s.listDir(dirTmp) {
		if checkName(user) != nil || user[0] == '.' {
			continue
		}
		for _, key := range s.listDir(filepath.Join(dirTmp, user)) {
			if checkName(key) != nil {
				continue
			}
			unlock := s.lock(user, key)
			if r, ok := s.sweepOne(user, key, cutoff); ok {
				out = append(out, r)
			}
			unlock()
		}
	}
	return out
}

// sweepOne removes user's upload of key if it is older than cutoff. An
// upload not in memory is judged by the time its progress file last
// changed, so that sweeping opens nothing. The caller holds the key's lock.
func (s *Store) sweepOne(user, key string, cutoff time.Time) (sweepResult, bool) {
	dir := p(dirTmp, user, key)
	if v, ok := s.uploads.Load(ukey(user, key)); ok {
		u := v.(*upload)
		if u.active.Load() >= cutoff.UnixNano() || s.dropUpload(user, key, u) != nil {
			return sweepResult{}, false
		}
		return sweepResult{user, key, u.plan.Size}, true
	}
	var plan uploadPlan
	b, err := s.root.ReadFile(filepath.Join(dir, upPlan))
	if err == nil && json.Unmarshal(b, &plan) == nil {
		fi, err := s.root.Stat(filepath.Join(dir, upReceived))
		if err != nil {
			fi, err = s.root.Stat(filepath.Join(dir, upPlan))
		}
		if err != nil || !fi.ModTime().Before(cutoff) {
			return sweepResult{}, false
		}
	} else if fi, err := s.root.Stat(dir); err != nil || !fi.ModTime().Before(cutoff) {
		// A folder without a usable plan is debris once it is old: a
		// plan may be on its way.
		return sweepResult{}, false
	}
	if err := s.root.RemoveAll(dir); err != nil {
		return sweepResult{}, false
	}
	return sweepResult{user, key, plan.Size}, true
}
