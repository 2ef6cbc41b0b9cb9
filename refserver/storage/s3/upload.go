package s3

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/minio/minio-go/v7"

	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/spec"
)

// planDoc is tmp/USER/KEY/plan.json.
type planDoc struct {
	storage.Plan
	// ID names the generation: the folder of this plan's blocks.
	ID string `json:"id"`
}

// upload is what a server knows of an upload in progress: a subset of the
// blocks in the store (those listed when it was loaded and those it wrote
// since), so when it knows of every block, every block is there. Its
// fields are guarded by the key's lock.
type upload struct {
	plan     storage.Plan
	id       string
	etag     string    // of plan.json
	checked  time.Time // when plan.json last had etag
	received []bool
	count    int64
	// The MD5 covers blocks [0, hashed), as this server wrote them in
	// order; the rest is read back on completion.
	h      hash.Hash
	hashed int64
	active atomic.Int64 // unix nanoseconds of the last block

	// spool is this server's copy of the blocks it stored, at their
	// offsets, in an unlinked temporary file: when it holds every block,
	// the file is completed from it, without reading the blocks back from
	// the store. Nil when it could not be made or written.
	spool    *os.File
	spooled  []bool
	nspooled int64

	// runs are the block objects known; src[i] indexes the newest run
	// holding block i (-1: none known).
	runs []run
	src  []int32

	// Gathered uploads (parts.go): the multipart upload of the file ("" if
	// none is known), the parts being gathered, and the CRC-32s of the
	// blocks of stored parts, by the part's ETag.
	mp    string
	pend  map[int]*gathering
	marks map[string][]uint32
}

// run is one block object, or one part of the multipart upload: the blocks
// it lists, in that order, written together at seq, which orders the
// writes of a block sent more than once.
type run struct {
	name  string
	index []int64
	seq   uint64
	own   bool   // written by this server, so its bytes are in the spool
	part  int    // the part number, for a part (0: a block object)
	etag  string // of a part
}

// runName names the object of blocks index written at seq: the indexes in
// order, stretches of consecutive ones as FIRST-LAST, then .SEQ in hex.
func runName(dir string, index []int64, seq uint64) string {
	var b strings.Builder
	b.WriteString(dir)
	for i := 0; i < len(index); {
		j := i
		for j+1 < len(index) && index[j+1] == index[j]+1 {
			j++
		}
		if i > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", index[i], index[j])
		} else {
			fmt.Fprintf(&b, "%d", index[i])
		}
		i = j + 1
	}
	fmt.Fprintf(&b, ".%016x", seq)
	return b.String()
}

// parseRun reads a run object's name; ok is false for anything else, or
// for an index outside [0, total) or listed twice.
func parseRun(name string, total int64) (index []int64, seq uint64, ok bool) {
	head, tail, found := strings.Cut(name, ".")
	if !found || len(tail) != 16 {
		return nil, 0, false
	}
	seq, err := strconv.ParseUint(tail, 16, 64)
	if err != nil {
		return nil, 0, false
	}
	seen := make(map[int64]bool)
	for _, item := range strings.Split(head, ",") {
		a, b, isRange := strings.Cut(item, "-")
		f, err1 := strconv.ParseInt(a, 10, 64)
		l, err2 := f, error(nil)
		if isRange {
			l, err2 = strconv.ParseInt(b, 10, 64)
		}
		if err1 != nil || err2 != nil || f < 0 || l < f || l >= total || l-f > 1<<16 {
			return nil, 0, false
		}
		for i := f; i <= l; i++ {
			if seen[i] {
				return nil, 0, false
			}
			seen[i] = true
			index = append(index, i)
		}
	}
	return index, seq, len(index) > 0
}

// runLen is the size of the object of blocks index.
func runLen(p storage.Plan, index []int64) int64 {
	var n int64
	for _, i := range index {
		n += spec.BlockLen(p.Size, p.BlockSize, i)
	}
	return n
}

// addRun records a run object, and its blocks as received.
func (u *upload) addRun(r run) {
	k := int32(len(u.runs))
	u.runs = append(u.runs, r)
	for _, i := range r.index {
		if u.src[i] < 0 || u.runs[u.src[i]].seq <= r.seq {
			u.src[i] = k
		}
		if !u.received[i] {
			u.received[i] = true
			u.count++
		}
	}
}

func newUpload(p planDoc, etag string) *upload {
	u := &upload{plan: p.Plan, id: p.ID, etag: etag, checked: time.Now(), received: make([]bool, p.TotalBlock), h: md5.New(),
		src: make([]int32, p.TotalBlock), pend: make(map[int]*gathering), marks: make(map[string][]uint32)}
	for i := range u.src {
		u.src[i] = -1
	}
	if f, err := os.CreateTemp("", "stepkit-s3-spool-"); err == nil {
		os.Remove(f.Name())
		u.spool, u.spooled = f, make([]bool, p.TotalBlock)
	}
	return u
}

// release closes the spool; the upload is no longer used by this server.
func (u *upload) release() {
	if u.spool != nil {
		u.spool.Close()
		u.spool = nil
	}
}

// spoolWhole reports whether the spool holds the newest bytes of every
// block: the file can be completed from it.
func (u *upload) spoolWhole() bool {
	if u.spool == nil || u.nspooled < u.plan.TotalBlock {
		return false
	}
	for _, k := range u.src {
		if k < 0 || !u.runs[k].own {
			return false
		}
	}
	return true
}

// forget drops what this server knows of user's upload of key.
func (s *Store) forget(user, key string) {
	if v, ok := s.uploads.LoadAndDelete(ukey(user, key)); ok {
		v.(*upload).release()
	}
}

// Plan returns the upload's plan.
func (u *upload) Plan() storage.Plan { return u.plan }

// errReplaced is returned when another server replaced or removed an
// upload this server was taking blocks of.
// It is a kind of ErrNotFound: the client is told that the key has no
// plan (or no longer this one) and plans again.
var errReplaced = fmt.Errorf("the upload was restarted or removed by another request: %w", storage.ErrNotFound)

func (s *Store) readPlan(user, key string) (planDoc, string, error) {
	b, info, err := s.get(s.planName(user, key))
	if isNotFound(err) {
		return planDoc{}, "", storage.ErrNotFound
	}
	if err != nil {
		return planDoc{}, "", fmt.Errorf("read upload plan: %w", err)
	}
	var p planDoc
	if err := json.Unmarshal(b, &p); err != nil || p.Size <= 0 || p.BlockSize <= 0 || p.ID == "" ||
		p.TotalBlock != spec.TotalBlocks(p.Size, p.BlockSize) || p.TotalBlock > 1<<27 {
		return planDoc{}, "", fmt.Errorf("upload plan of %s/%s is damaged", user, key)
	}
	return p, info.ETag, nil
}

// Upload returns the upload in progress of key. What this server knows is
// trusted for Config.Revalidate; then the plan's ETag is checked, and an
// upload replaced elsewhere is loaded again from the store.
func (s *Store) Upload(user, key string) (storage.Upload, error) {
	u, err := s.upload(user, key, false)
	if err != nil {
		return nil, err
	}
	return u, nil
}

// upload is Upload; fresh asks the store even within Config.Revalidate.
func (s *Store) upload(user, key string, fresh bool) (*upload, error) {
	uk := ukey(user, key)
	if v, ok := s.uploads.Load(uk); ok {
		u := v.(*upload)
		if !fresh && time.Since(u.checked) < s.cfg.Revalidate {
			return u, nil
		}
		info, err := s.stat(s.planName(user, key))
		if err == nil && info.ETag == u.etag {
			u.checked = time.Now()
			return u, nil
		}
		if err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("check upload plan: %w", err)
		}
		s.forget(user, key)
	}
	p, etag, err := s.readPlan(user, key)
	if err != nil {
		return nil, err
	}
	u := newUpload(p, etag)
	if err := s.refresh(user, key, u); err != nil {
		u.release()
		return nil, err
	}
	s.uploads.Store(uk, u)
	return u, nil
}

// refresh adds to u the blocks the store holds.
func (s *Store) refresh(user, key string, u *upload) error {
	dir := s.blockDir(user, key, u.id)
	known := make(map[string]bool, len(u.runs))
	for _, r := range u.runs {
		known[r.name] = true
	}
	var last time.Time
	parts := false
	err := s.list(dir, false, func(o minio.ObjectInfo) bool {
		if strings.TrimPrefix(o.Key, dir) == "multipart" {
			parts = true
		}
		index, seq, ok := parseRun(strings.TrimPrefix(o.Key, dir), u.plan.TotalBlock)
		if !ok || o.Size != runLen(u.plan, index) {
			return true
		}
		if !known[o.Key] {
			u.addRun(run{name: o.Key, index: index, seq: seq})
		}
		if o.LastModified.After(last) {
			last = o.LastModified
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("list blocks: %w", err)
	}
	if parts || u.mp != "" {
		if err := s.loadParts(user, key, u); err != nil {
			return err
		}
	}
	if last.UnixNano() > u.active.Load() {
		u.active.Store(last.UnixNano())
	}
	return nil
}

// planAttempts bounds how often PlanUpload plans again after the plan it
// read was replaced before its conditional write.
const planAttempts = 4

// errPlanRaced is returned by planOnce when the plan it read was replaced
// (or one was created) between its read and its conditional write.
var errPlanRaced = errors.New("the upload plan changed between its read and its write")

// PlanUpload writes a new plan with a new generation. It replaces only the
// plan it read. When another write changed the plan in between, the key is
// planned again under the plan now there, up to planAttempts times: that
// write may come from a request still running, or from a server that died
// with its write in flight, and in both cases the key is an upload in
// progress, which FILE SAVE restarts. Only a key completed meanwhile, or
// one planned again at every attempt, gives ErrExists.
func (s *Store) PlanUpload(user, key string, size, blockSize int64, now time.Time) (storage.Plan, int64, error) {
	for attempt := 1; ; attempt++ {
		p, old, err := s.planOnce(user, key, size, blockSize, now)
		if !errors.Is(err, errPlanRaced) {
			return p, old, err
		}
		if _, ferr := s.statFile(user, key); ferr == nil {
			return storage.Plan{}, 0, storage.ErrExists
		} else if !errors.Is(ferr, storage.ErrNotFound) {
			return storage.Plan{}, 0, ferr
		}
		if attempt == planAttempts {
			return storage.Plan{}, 0, fmt.Errorf("%w: planned again by other requests at each of %d attempts", storage.ErrExists, attempt)
		}
	}
}

// planOnce reads the plan of key, then writes a new one on condition that
// the plan is still the one read; errPlanRaced if it is not.
func (s *Store) planOnce(user, key string, size, blockSize int64, now time.Time) (storage.Plan, int64, error) {
	var old int64
	cond, oldID := "create", ""
	if u, err := s.upload(user, key, true); err == nil {
		old, cond, oldID = u.plan.Size, u.etag, u.id
	} else if !errors.Is(err, storage.ErrNotFound) {
		return storage.Plan{}, 0, err
	}
	p := planDoc{Plan: storage.Plan{Size: size, BlockSize: blockSize, TotalBlock: spec.TotalBlocks(size, blockSize)}, ID: uuid.NewString()}
	b, _ := json.Marshal(&p)
	if s.beforePlanWrite != nil {
		s.beforePlanWrite(user, key)
	}
	info, err := s.put(s.planName(user, key), b, cond, nil)
	if isPrecondition(err) || cond != "create" && isNotFound(err) {
		// Replaced, created or (If-Match on a plan gone) removed since
		// the read: by an upload completed meanwhile, for one.
		s.forget(user, key)
		return storage.Plan{}, 0, errPlanRaced
	}
	if err != nil {
		return storage.Plan{}, 0, fmt.Errorf("write upload plan: %w", err)
	}
	if oldID != "" {
		// The old generation's blocks are debris now; a failure here
		// leaves them for the sweep.
		s.abortGeneration(user, key, oldID)
		s.removeAll(s.blockDir(user, key, oldID))
	}
	s.forget(user, key)
	u := newUpload(p, info.ETag)
	u.active.Store(now.UnixNano())
	s.uploads.Store(ukey(user, key), u)
	return p.Plan, old, nil
}

// DropUpload removes the plan, then its blocks.
func (s *Store) DropUpload(user, key string, su storage.Upload) error {
	s.forget(user, key)
	s.abortGeneration(user, key, su.(*upload).id)
	if err := s.remove(s.planName(user, key)); err != nil {
		return fmt.Errorf("remove upload plan: %w", err)
	}
	if err := s.removeAll(s.tmpDir(user, key)); err != nil {
		return fmt.Errorf("remove upload: %w", err)
	}
	return nil
}

// WriteBlock stores one block: WriteBlocks of a run of one.
func (s *Store) WriteBlock(user, key string, su storage.Upload, index int64, block []byte, now time.Time) (*storage.FileMeta, error) {
	return s.WriteBlocks(user, key, su, []int64{index}, [][]byte{block}, now)
}

// WriteBlocks stores blocks index[j] = blocks[j] as one object, without
// the key's lock, so that blocks of one upload go to the store in parallel
// from several connections, and a client's pipelined blocks cost one
// request. The answer is given once the store has them, so acknowledged
// blocks survive the loss of this server.
func (s *Store) WriteBlocks(user, key string, su storage.Upload, index []int64, blocks [][]byte, now time.Time) (*storage.FileMeta, error) {
	u := su.(*upload)
	if err := checkBlocks(u.plan, index, blocks); err != nil {
		return nil, err
	}
	data := blocks[0]
	if len(blocks) > 1 {
		data = make([]byte, 0, runLen(u.plan, index))
		for _, b := range blocks {
			data = append(data, b...)
		}
	}
	r := run{index: index, seq: uint64(time.Now().UnixNano()), own: true}
	r.name = runName(s.blockDir(user, key, u.id), index, r.seq)
	if _, err := s.put(r.name, data, "", nil); err != nil {
		return nil, fmt.Errorf("write %d blocks from %d: %w", len(index), index[0], err)
	}
	unlock := s.Lock(user, key)
	defer unlock()
	cur, err := s.upload(user, key, false)
	if err != nil {
		return nil, err
	}
	if cur.id != u.id {
		return nil, storage.ErrNotFound // replaced meanwhile: the blocks are debris
	}
	u = cur
	u.take(index, blocks)
	u.addRun(r)
	u.active.Store(now.UnixNano())
	if u.count < u.plan.TotalBlock {
		return nil, nil
	}
	return s.finish(user, key, u)
}

// take keeps blocks in the spool and hashes those next in order, then those
// after them the spool holds (blocks that arrived ahead of their turn).
func (u *upload) take(index []int64, blocks [][]byte) {
	for j, i := range index {
		b := blocks[j]
		if u.spool != nil {
			if _, err := u.spool.WriteAt(b, i*u.plan.BlockSize); err != nil {
				u.release()
			} else if !u.spooled[i] {
				u.spooled[i] = true
				u.nspooled++
			}
		}
		if i < u.hashed {
			// A block hashed already was sent again, maybe with other
			// bytes: hash again from the start.
			u.h.Reset()
			u.hashed = 0
		}
		if i == u.hashed {
			u.h.Write(b)
			u.hashed++
		}
	}
	var buf []byte
	for u.spool != nil && u.hashed < u.plan.TotalBlock && u.spooled[u.hashed] {
		i := u.hashed
		if k := u.src[i]; k >= 0 && !u.runs[k].own {
			break // its newest bytes came through another server
		}
		n := spec.BlockLen(u.plan.Size, u.plan.BlockSize, i)
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		if _, err := u.spool.ReadAt(buf[:n], i*u.plan.BlockSize); err != nil {
			break
		}
		u.h.Write(buf[:n])
		u.hashed++
	}
}

// completeIfWhole completes key's upload if the store holds every block,
// or returns ErrNotFound. The caller holds the key's lock.
func (s *Store) completeIfWhole(user, key string) (*storage.FileMeta, error) {
	u, err := s.upload(user, key, true)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, storage.ErrNotFound
		}
		return nil, err
	}
	if u.count < u.plan.TotalBlock {
		if err := s.refresh(user, key, u); err != nil {
			return nil, err
		}
	}
	if u.count < u.plan.TotalBlock {
		return nil, storage.ErrNotFound
	}
	return s.finish(user, key, u)
}

// finish writes the completed file from the blocks in the store: its MD5
// first, then the file as one object carrying it, created only if no file
// is there (another server may have completed the same upload), then the
// upload is removed.
func (s *Store) finish(user, key string, u *upload) (*storage.FileMeta, error) {
	uk := ukey(user, key)
	// The plan must still be this one: a block written to a replaced
	// generation completes nothing.
	p, _, err := s.readPlan(user, key)
	if err == nil && p.ID != u.id {
		err = errReplaced
		if p.Size == u.plan.Size && p.BlockSize == u.plan.BlockSize && u.spoolWhole() {
			// Another server planned the key again, with the same plan,
			// while this one still trusted its memory of the old plan
			// (Config.Revalidate). Every block the client sent is in
			// the spool: to the client they are blocks of the key's
			// plan, as on a local store, so the file is completed.
			err = nil
		}
	}
	if errors.Is(err, storage.ErrNotFound) {
		err = errReplaced
	}
	if err != nil {
		s.forget(user, key)
		if m, ferr := s.statFile(user, key); ferr == nil {
			return m, nil // completed by another server
		}
		return nil, err
	}
	if u.mp != "" {
		return s.finishParts(user, key, u)
	}
	// The file's bytes: this server's spool when it holds every block,
	// else the blocks read back from the store.
	var body io.Reader
	if u.spoolWhole() {
		body = io.NewSectionReader(u.spool, 0, u.plan.Size)
		if u.hashed < u.plan.TotalBlock {
			off := u.hashed * u.plan.BlockSize
			if _, err := io.Copy(u.h, io.NewSectionReader(u.spool, off, u.plan.Size-off)); err != nil {
				return nil, fmt.Errorf("hash upload: %w", err)
			}
			u.hashed = u.plan.TotalBlock
		}
	} else {
		// Some block's newest bytes came through another server: hash
		// what the store holds, all of it.
		u.h.Reset()
		u.hashed = 0
		if u.hashed < u.plan.TotalBlock {
			err := s.readBlocks(u, u.hashed, func(b []byte) error { _, err := u.h.Write(b); return err })
			if err != nil {
				return nil, fmt.Errorf("hash upload: %w", err)
			}
			u.hashed = u.plan.TotalBlock
		}
		pr, pw := io.Pipe()
		defer pr.CloseWithError(errors.New("upload ended"))
		go func() {
			pw.CloseWithError(s.readBlocks(u, 0, func(b []byte) error { _, err := pw.Write(b); return err }))
		}()
		body = pr
	}
	sum := hex.EncodeToString(u.h.Sum(nil))
	ctx, cancel := s.ctxFor(u.plan.Size)
	defer cancel()
	opts := minio.PutObjectOptions{DisableContentSha256: true, DisableMultipart: true, UserMetadata: map[string]string{metaMD5: sum}}
	opts.SetMatchETagExcept("*")
	info, err := s.cl.PutObject(ctx, s.bucket, s.fileName(user, key), body, u.plan.Size, opts)
	var m *storage.FileMeta
	switch {
	case isPrecondition(err):
		if m, err = s.statFile(user, key); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("write completed file: %w", err)
	default:
		mt := info.LastModified
		if mt.IsZero() {
			mt = time.Now()
		}
		m = &storage.FileMeta{Size: u.plan.Size, MD5: sum, ModTime: mt.UnixNano()}
		s.files.Store(uk, &fileEntry{meta: m, etag: info.ETag, checked: time.Now()})
	}
	s.forget(user, key)
	// The file is whole in the store: removing the upload may fail and
	// leave debris for the sweep, never a second copy to complete.
	if err := s.remove(s.planName(user, key)); err == nil {
		s.removeAll(s.tmpDir(user, key))
	}
	return m, nil
}

// readWindow is how many block objects are read from the store at once
// when a file is assembled.
const readWindow = 16

// piece is blocks [from, to] of the file, stored one after the other at
// byte off of run object r.
type piece struct {
	r        run
	off      int64
	from, to int64
}

// readBlocks reads the blocks [from, TotalBlock) of u from the store in
// order, each from the newest object holding it, several objects at a
// time, and gives the bytes to fn.
func (s *Store) readBlocks(u *upload, from int64, fn func([]byte) error) error {
	// Where each block is inside its run object.
	offs := make(map[string]map[int64]int64)
	var pieces []piece
	for i := from; i < u.plan.TotalBlock; i++ {
		if u.src[i] < 0 {
			return fmt.Errorf("block %d is not in the store", i)
		}
		r := u.runs[u.src[i]]
		at, ok := offs[r.name]
		if !ok {
			at = make(map[int64]int64, len(r.index))
			var off int64
			for _, k := range r.index {
				at[k] = off
				off += spec.BlockLen(u.plan.Size, u.plan.BlockSize, k)
			}
			offs[r.name] = at
		}
		// Blocks next to each other in the file and in the object are
		// read with one ranged GET.
		if n := len(pieces); n > 0 && pieces[n-1].r.name == r.name && pieces[n-1].to == i-1 &&
			at[i] == at[i-1]+spec.BlockLen(u.plan.Size, u.plan.BlockSize, i-1) {
			pieces[n-1].to = i
		} else {
			pieces = append(pieces, piece{r: r, off: at[i], from: i, to: i})
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		b   []byte
		err error
	}
	pending := make(chan chan result, readWindow)
	go func() {
		defer close(pending)
		for _, p := range pieces {
			ch := make(chan result, 1)
			select {
			case pending <- ch:
			case <-ctx.Done():
				return
			}
			go func() {
				b, err := s.readPiece(ctx, u.plan, p)
				ch <- result{b, err}
			}()
		}
	}()
	for ch := range pending {
		r := <-ch
		if r.err != nil {
			return r.err
		}
		if err := fn(r.b); err != nil {
			return err
		}
	}
	return nil
}

// readPiece reads blocks [p.from, p.to] from their run object.
func (s *Store) readPiece(ctx context.Context, plan storage.Plan, p piece) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	off := p.off
	want := min((p.to+1)*plan.BlockSize, plan.Size) - p.from*plan.BlockSize
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(off, off+want-1); err != nil {
		return nil, err
	}
	rc, _, _, err := s.core.GetObject(ctx, s.bucket, p.r.name, opts)
	if err != nil {
		return nil, fmt.Errorf("read blocks %d to %d: %w", p.from, p.to, err)
	}
	defer rc.Close()
	b := make([]byte, want+1)
	n, err := io.ReadFull(rc, b)
	if err != io.ErrUnexpectedEOF || int64(n) != want {
		if err == nil || err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("%d bytes, want %d", n, want)
		}
		return nil, fmt.Errorf("read blocks %d to %d: %w", p.from, p.to, err)
	}
	return b[:n], nil
}
