package s3

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/spec"
)

// Gathered uploads. A block stored as a block object is written twice: once
// as that object, again into the completed file. A client that keeps enough
// of an upload in flight (STEP.md EXT-8) has its blocks gathered instead
// into the parts of an S3 multipart upload of the completed file itself,
// each written once: part n holds blocks [(n-1)·B, n·B) of the plan, B fixed
// by the plan alone (partBlocks), so that every server cuts the same parts.
// A block's answer waits until its part is stored, which is why the client
// must keep at least a part in flight. The store then completes the file
// from its parts without moving their bytes.
//
// Under the generation's folder:
//
//	multipart            the multipart upload's ID, created with If-None-Match: *
//	part-NNNNN.ETAG      the CRC-32 of each block of part NNNNN stored with ETAG
//
// A server that takes over an upload lists the parts (ListParts), so it
// knows which blocks are stored. A block sent again after its part was
// stored (its answer was lost with the server that stored it) is compared
// with its part's record: the same bytes need no write. A part that mixes
// blocks of parts and of block objects is written again, at completion,
// from the block objects and the spool.

const (
	// partTarget is the size a part is made of whole blocks to reach:
	// above S3's smallest part (5 MiB), few requests per file.
	partTarget = 8 << 20
	// minPart is S3's smallest part but the last.
	minPart = 5 << 20
	// maxParts is the most parts of one S3 multipart upload.
	maxParts = 10000
	// gatherWindow is the window a client keeps in flight for its blocks
	// to be gathered: two parts, so that one is stored while the next
	// arrives.
	gatherWindow = 2 * partTarget
	// holdLimit is how long gathered blocks wait for the rest of their
	// part before they are stored alone, as block objects: a client that
	// stopped midway gets its answers all the same.
	holdLimit = 2 * time.Second
)

// partBlocks is the number of blocks of a part of plan p.
func partBlocks(p storage.Plan) int64 {
	if p.BlockSize >= minPart {
		return max(1, (p.TotalBlock+maxParts-1)/maxParts)
	}
	return max((partTarget+p.BlockSize-1)/p.BlockSize, (p.TotalBlock+maxParts-1)/maxParts)
}

// gatherable reports whether the blocks of plan p are gathered into parts:
// a file of at least a part, whose parts fit half the window.
func gatherable(p storage.Plan) bool {
	return p.Size >= partTarget && partBlocks(p)*p.BlockSize <= gatherWindow/2
}

// numParts is the number of parts of plan p.
func numParts(p storage.Plan) int {
	pb := partBlocks(p)
	return int((p.TotalBlock + pb - 1) / pb)
}

// partOf is the part (1-based) holding block i.
func partOf(p storage.Plan, i int64) int { return int(i/partBlocks(p)) + 1 }

// partRange is the blocks [first, end) of part n.
func partRange(p storage.Plan, n int) (first, end int64) {
	pb := partBlocks(p)
	first = int64(n-1) * pb
	return first, min(first+pb, p.TotalBlock)
}

// partLen is the size of part n.
func partLen(p storage.Plan, n int) int64 {
	first, end := partRange(p, n)
	return min(end*p.BlockSize, p.Size) - first*p.BlockSize
}

func (s *Store) markerName(user, key, id string) string {
	return s.blockDir(user, key, id) + "multipart"
}
func (s *Store) recordName(user, key, id string, n int, etag string) string {
	return fmt.Sprintf("%spart-%05d.%s", s.blockDir(user, key, id), n, etag)
}
func (s *Store) sumDir(user, key string) string { return s.prefix + "sum/" + user + "/" + key + "/" }

// gathering is a part whose blocks are being gathered.
type gathering struct {
	blocks  map[int64][]byte
	done    chan struct{} // closed once stored, failed or dropped
	taken   bool          // a caller is storing it
	dropped bool          // given up: each caller stores its own blocks
	err     error
}

// UploadWindow is the window a client keeps in flight for its blocks to be
// gathered into parts.
func (s *Store) UploadWindow() int64 { return gatherWindow }

// share is the blocks of one part given by one WriteBlocksGathered call.
type share struct {
	n      int
	g      *gathering
	index  []int64
	blocks [][]byte
	store  bool // this call stores the part
}

// WriteBlocksGathered adds the blocks to their parts. A call whose blocks
// complete a part stores it; the others wait for that, or, after holdLimit
// without the rest of their part, store their own blocks as WriteBlocks
// does.
func (s *Store) WriteBlocksGathered(user, key string, su storage.Upload, index []int64, blocks [][]byte, now time.Time) (*storage.FileMeta, error) {
	u := su.(*upload)
	if err := checkBlocks(u.plan, index, blocks); err != nil {
		return nil, err
	}
	if !gatherable(u.plan) {
		return s.WriteBlocks(user, key, su, index, blocks, now)
	}
	unlock := s.Lock(user, key)
	cur, err := s.upload(user, key, false)
	if err != nil {
		unlock()
		return nil, err
	}
	if cur.id != u.id {
		unlock()
		return nil, storage.ErrNotFound
	}
	u = cur
	var shares []*share
	byPart := make(map[int]*share)
	for j, i := range index {
		b := blocks[j]
		n := partOf(u.plan, i)
		if u.storedAlready(s, user, key, n, i, b) {
			continue
		}
		sh := byPart[n]
		if sh == nil {
			sh = &share{n: n}
			byPart[n] = sh
			shares = append(shares, sh)
		}
		sh.index = append(sh.index, i)
		sh.blocks = append(sh.blocks, b)
	}
	for _, sh := range shares {
		g := u.pend[sh.n]
		if g == nil {
			g = &gathering{blocks: make(map[int64][]byte), done: make(chan struct{})}
			u.pend[sh.n] = g
		}
		for j, i := range sh.index {
			g.blocks[i] = sh.blocks[j]
		}
		sh.g = g
		if u.partReady(sh.n, g) && s.fillPart(u, sh.n, g) == nil {
			g.taken, sh.store = true, true
			delete(u.pend, sh.n)
		}
	}
	u.active.Store(now.UnixNano())
	unlock()

	var m *storage.FileMeta
	var errs []error
	for _, sh := range shares {
		if !sh.store {
			continue
		}
		mm, err := s.storeGathered(user, key, u, sh.n, sh.g, now)
		sh.g.err = err
		close(sh.g.done)
		if mm != nil {
			m = mm
		}
		errs = append(errs, err)
	}
	for _, sh := range shares {
		if sh.store {
			continue
		}
		t := time.NewTimer(holdLimit)
		select {
		case <-sh.g.done:
		case <-t.C:
			unlock := s.Lock(user, key)
			if !sh.g.taken && !sh.g.dropped {
				sh.g.dropped = true
				if u.pend[sh.n] == sh.g {
					delete(u.pend, sh.n)
				}
				close(sh.g.done)
			}
			unlock()
			<-sh.g.done
		}
		t.Stop()
		if !sh.g.dropped {
			errs = append(errs, sh.g.err)
			continue
		}
		mm, err := s.WriteBlocks(user, key, u, sh.index, sh.blocks, now)
		if mm != nil {
			m = mm
		}
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// checkBlocks checks the indexes and lengths of blocks of plan p.
func checkBlocks(p storage.Plan, index []int64, blocks [][]byte) error {
	if len(index) == 0 || len(index) != len(blocks) {
		return fmt.Errorf("%d indexes for %d blocks", len(index), len(blocks))
	}
	seen := make(map[int64]bool, len(index))
	for j, i := range index {
		if i < 0 || i >= p.TotalBlock || seen[i] {
			return fmt.Errorf("block %d is outside the plan or given twice", i)
		}
		seen[i] = true
		if int64(len(blocks[j])) != spec.BlockLen(p.Size, p.BlockSize, i) {
			return storage.ErrBlockLen
		}
	}
	return nil
}

// storedAlready reports whether block i's newest bytes in the store are in
// part n and equal to b (by the part's record): a block sent again whose
// answer was lost. The caller holds the key's lock.
func (u *upload) storedAlready(s *Store, user, key string, n int, i int64, b []byte) bool {
	k := u.src[i]
	if k < 0 || u.runs[k].part != n {
		return false
	}
	r := u.runs[k]
	sums, ok := u.marks[r.etag]
	if !ok {
		data, _, err := s.get(s.recordName(user, key, u.id, n, r.etag))
		first, end := partRange(u.plan, n)
		if err != nil || int64(len(data)) != 4*(end-first) {
			return false // no record: the block is stored again
		}
		sums = make([]uint32, end-first)
		for j := range sums {
			sums[j] = binary.BigEndian.Uint32(data[4*j:])
		}
		u.marks[r.etag] = sums
	}
	first, _ := partRange(u.plan, n)
	return sums[i-first] == crc32.ChecksumIEEE(b)
}

// partReady reports whether part n can be stored: each of its blocks
// gathered in g or readable from where it is stored. The caller holds the
// key's lock.
func (u *upload) partReady(n int, g *gathering) bool {
	first, end := partRange(u.plan, n)
	for i := first; i < end; i++ {
		if g.blocks[i] == nil && !u.readable(i) {
			return false
		}
	}
	return true
}

// readable reports whether block i's newest bytes can be read: from a block
// object, or from the spool when this server stored them.
func (u *upload) readable(i int64) bool {
	k := u.src[i]
	if k < 0 {
		return false
	}
	if r := u.runs[k]; r.part == 0 || (r.own && u.spool != nil && u.spooled[i]) {
		return true
	}
	return false
}

// fillPart reads into g the blocks of part n it lacks, from where they are
// stored (the caller has checked that they can be read). The caller holds
// the key's lock.
func (s *Store) fillPart(u *upload, n int, g *gathering) error {
	first, end := partRange(u.plan, n)
	for i := first; i < end; i++ {
		if g.blocks[i] == nil {
			b, err := s.readBlock(u, i)
			if err != nil {
				return err
			}
			g.blocks[i] = b
		}
	}
	return nil
}

// storeGathered stores part n from the blocks in g, whole, and records it.
func (s *Store) storeGathered(user, key string, u *upload, n int, g *gathering, now time.Time) (*storage.FileMeta, error) {
	first, end := partRange(u.plan, n)
	index := make([]int64, 0, end-first)
	blocks := make([][]byte, 0, end-first)
	for i := first; i < end; i++ {
		index = append(index, i)
		blocks = append(blocks, g.blocks[i])
	}
	r, err := s.putPart(user, key, u, n, blocks)
	if err != nil {
		return nil, err
	}
	unlock := s.Lock(user, key)
	defer unlock()
	cur, err := s.upload(user, key, false)
	if err != nil {
		return nil, err
	}
	if cur.id != u.id {
		return nil, storage.ErrNotFound
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

// readBlock reads block i's newest bytes: from the spool when this server
// stored them, else from its block object. The caller has checked that it
// is readable.
func (s *Store) readBlock(u *upload, i int64) ([]byte, error) {
	n := spec.BlockLen(u.plan.Size, u.plan.BlockSize, i)
	r := u.runs[u.src[i]]
	if r.own && u.spool != nil && u.spooled[i] {
		b := make([]byte, n)
		if _, err := u.spool.ReadAt(b, i*u.plan.BlockSize); err != nil {
			return nil, fmt.Errorf("read block %d from the spool: %w", i, err)
		}
		return b, nil
	}
	if r.part != 0 {
		return nil, fmt.Errorf("block %d is only in part %d, stored by another server", i, r.part)
	}
	var off int64
	for _, k := range r.index {
		if k == i {
			break
		}
		off += spec.BlockLen(u.plan.Size, u.plan.BlockSize, k)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	return s.readPiece(ctx, u.plan, piece{r: r, off: off, from: i, to: i})
}

// multipart returns the upload's multipart upload, starting it if none is
// recorded: of two servers starting one at once, the one whose record is
// written first wins, and the other drops its own. The caller holds the
// key's lock.
func (s *Store) multipart(user, key string, u *upload) (string, error) {
	if u.mp != "" {
		return u.mp, nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	id, err := s.core.NewMultipartUpload(ctx, s.bucket, s.fileName(user, key), minio.PutObjectOptions{})
	if err != nil {
		return "", fmt.Errorf("start multipart upload: %w", err)
	}
	marker := s.markerName(user, key, u.id)
	if _, err := s.put(marker, []byte(id), "create", nil); err != nil {
		s.abortMultipart(user, key, id)
		if !isPrecondition(err) {
			return "", fmt.Errorf("record multipart upload: %w", err)
		}
		b, _, err := s.get(marker)
		if err != nil {
			return "", fmt.Errorf("read multipart upload: %w", err)
		}
		id = string(b)
	}
	u.mp = id
	return id, nil
}

func (s *Store) abortMultipart(user, key, id string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	err := s.core.AbortMultipartUpload(ctx, s.bucket, s.fileName(user, key), id)
	if err != nil && !isNotFound(err) && !isNoUpload(err) {
		return err
	}
	return nil
}

func isNoUpload(err error) bool {
	code, _ := errCode(err)
	return code == "NoSuchUpload"
}

// abortGeneration aborts the multipart upload of generation id, if it has
// one: its parts are debris, as its block objects are.
func (s *Store) abortGeneration(user, key, id string) {
	if id == "" {
		return
	}
	b, _, err := s.get(s.markerName(user, key, id))
	if err == nil && len(b) > 0 {
		s.abortMultipart(user, key, string(b))
	}
}

// putPart writes blocks, the whole of part n, as that part, then its
// record, and returns the part's run.
func (s *Store) putPart(user, key string, u *upload, n int, blocks [][]byte) (run, error) {
	unlock := s.Lock(user, key)
	mp, err := s.multipart(user, key, u)
	unlock()
	if err != nil {
		return run{}, err
	}
	r, sums, err := s.writePart(user, key, u, mp, n, blocks)
	if err != nil {
		return run{}, err
	}
	unlock = s.Lock(user, key)
	u.marks[r.etag] = sums
	unlock()
	return r, nil
}

// putPartLocked is putPart for a caller holding the key's lock.
func (s *Store) putPartLocked(user, key string, u *upload, n int, blocks [][]byte) (run, error) {
	mp, err := s.multipart(user, key, u)
	if err != nil {
		return run{}, err
	}
	r, sums, err := s.writePart(user, key, u, mp, n, blocks)
	if err == nil {
		u.marks[r.etag] = sums
	}
	return r, err
}

// writePart stores part n of multipart upload mp, then the record of its
// blocks' CRC-32s, named by the part's ETag so that it describes that
// version of the part only.
func (s *Store) writePart(user, key string, u *upload, mp string, n int, blocks [][]byte) (run, []uint32, error) {
	size := partLen(u.plan, n)
	seq := uint64(time.Now().UnixNano())
	ctx, cancel := s.ctxFor(size)
	defer cancel()
	part, err := s.core.PutObjectPart(ctx, s.bucket, s.fileName(user, key), mp, n, newBlocksReader(blocks), size,
		minio.PutObjectPartOptions{DisableContentSha256: true})
	if err != nil {
		return run{}, nil, fmt.Errorf("write part %d: %w", n, err)
	}
	etag := strings.Trim(part.ETag, `"`)
	rec := make([]byte, 4*len(blocks))
	sums := make([]uint32, len(blocks))
	for j, b := range blocks {
		sums[j] = crc32.ChecksumIEEE(b)
		binary.BigEndian.PutUint32(rec[4*j:], sums[j])
	}
	if _, err := s.put(s.recordName(user, key, u.id, n, etag), rec, "", nil); err != nil {
		return run{}, nil, fmt.Errorf("record part %d: %w", n, err)
	}
	first, end := partRange(u.plan, n)
	index := make([]int64, 0, end-first)
	for i := first; i < end; i++ {
		index = append(index, i)
	}
	return run{part: n, etag: etag, index: index, seq: seq, own: true}, sums, nil
}

// loadParts adds to u the parts its multipart upload holds. The caller
// holds the key's lock.
func (s *Store) loadParts(user, key string, u *upload) error {
	if u.mp == "" {
		b, _, err := s.get(s.markerName(user, key, u.id))
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read multipart upload: %w", err)
		}
		u.mp = string(b)
	}
	known := make(map[string]bool)
	for _, r := range u.runs {
		if r.part != 0 {
			known[fmt.Sprint(r.part, r.etag)] = true
		}
	}
	marker := 0
	for {
		ctx, cancel := s.ctx()
		res, err := s.core.ListObjectParts(ctx, s.bucket, s.fileName(user, key), u.mp, marker, 1000)
		cancel()
		if isNoUpload(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list parts: %w", err)
		}
		for _, p := range res.ObjectParts {
			n, etag := p.PartNumber, strings.Trim(p.ETag, `"`)
			if n < 1 || n > numParts(u.plan) || p.Size != partLen(u.plan, n) || known[fmt.Sprint(n, etag)] {
				continue
			}
			first, end := partRange(u.plan, n)
			index := make([]int64, 0, end-first)
			for i := first; i < end; i++ {
				index = append(index, i)
			}
			u.addRun(run{part: n, etag: etag, index: index, seq: uint64(p.LastModified.UnixNano())})
		}
		if !res.IsTruncated || res.NextPartNumberMarker <= marker {
			return nil
		}
		marker = res.NextPartNumberMarker
	}
}

// partWhole reports whether every block of part n has its newest bytes in
// the stored part n, and returns its ETag.
func (u *upload) partWhole(n int) (string, bool) {
	first, end := partRange(u.plan, n)
	etag := ""
	for i := first; i < end; i++ {
		k := u.src[i]
		if k < 0 || u.runs[k].part != n {
			return "", false
		}
		if etag == "" {
			etag = u.runs[k].etag
		} else if u.runs[k].etag != etag {
			return "", false
		}
	}
	return etag, true
}

// finishParts completes a file whose blocks are in parts (at least one):
// the parts that are not whole are written from the blocks' objects and
// the spool, the MD5 taken (from the spool, or read back from the file),
// and the multipart upload completed if no file is there.
func (s *Store) finishParts(user, key string, u *upload) (*storage.FileMeta, error) {
	var parts []minio.CompletePart
	for n := 1; n <= numParts(u.plan); n++ {
		etag, ok := u.partWhole(n)
		if !ok {
			first, end := partRange(u.plan, n)
			var blocks [][]byte
			for i := first; i < end; i++ {
				b, err := s.readBlock(u, i)
				if err != nil {
					return nil, fmt.Errorf("write part %d: %w", n, err)
				}
				blocks = append(blocks, b)
			}
			r, err := s.putPartLocked(user, key, u, n, blocks)
			if err != nil {
				return nil, err
			}
			u.addRun(r)
			etag = r.etag
		}
		parts = append(parts, minio.CompletePart{PartNumber: n, ETag: etag})
	}
	var sum string
	if u.spoolWhole() {
		if u.hashed < u.plan.TotalBlock {
			off := u.hashed * u.plan.BlockSize
			if _, err := io.Copy(u.h, io.NewSectionReader(u.spool, off, u.plan.Size-off)); err != nil {
				return nil, fmt.Errorf("hash upload: %w", err)
			}
			u.hashed = u.plan.TotalBlock
		}
		sum = fmt.Sprintf("%x", u.h.Sum(nil))
	}
	ctx, cancel := s.ctx()
	defer cancel()
	opts := minio.PutObjectOptions{}
	opts.SetMatchETagExcept("*")
	name := s.fileName(user, key)
	info, err := s.core.CompleteMultipartUpload(ctx, s.bucket, name, u.mp, parts, opts)
	if isPrecondition(err) || isNoUpload(err) {
		// Completed by another server, or a file is there.
		s.forget(user, key)
		return s.statFile(user, key)
	}
	if err != nil {
		return nil, fmt.Errorf("complete file: %w", err)
	}
	etag := strings.Trim(info.ETag, `"`)
	if sum == "" {
		// Some blocks came through another server: the file is read
		// back once to take its MD5.
		st, err := s.stat(name)
		if err != nil {
			return nil, fmt.Errorf("stat file: %w", err)
		}
		etag = st.ETag
		if sum, err = s.hashObject(name, st); err != nil {
			return nil, err
		}
	}
	s.sums.Store(etag, sum)
	// The MD5 is kept beside the file, named by the file's ETag, so that
	// it describes this version only. Without it a server reads the file
	// to take its MD5.
	s.put(s.sumDir(user, key)+etag, []byte(sum), "", nil)
	m := &storage.FileMeta{Size: u.plan.Size, MD5: sum, ModTime: time.Now().UnixNano()}
	if st, err := s.stat(name); err == nil && st.ETag == etag {
		m.ModTime = st.LastModified.UnixNano()
	}
	s.files.Store(ukey(user, key), &fileEntry{meta: m, etag: etag, checked: time.Now()})
	s.forget(user, key)
	if err := s.remove(s.planName(user, key)); err == nil {
		s.removeAll(s.tmpDir(user, key))
	}
	return m, nil
}

// sweepMultipart aborts the multipart uploads of files started before
// cutoff that no upload in progress records: left by a server that died
// between starting one and recording it.
func (s *Store) sweepMultipart(cutoff time.Time) {
	ctx, cancel := s.ctx()
	defer cancel()
	dir := s.prefix + "file/"
	for mu := range s.cl.ListIncompleteUploads(ctx, s.bucket, dir, true) {
		if mu.Err != nil {
			return
		}
		if !mu.Initiated.Before(cutoff) {
			continue
		}
		user, key, ok := strings.Cut(strings.TrimPrefix(mu.Key, dir), "/")
		if !ok {
			continue
		}
		if p, _, err := s.readPlan(user, key); err == nil {
			if b, _, err := s.get(s.markerName(user, key, p.ID)); err == nil && string(b) == mu.UploadID {
				continue // recorded by an upload in progress
			}
		}
		s.abortMultipart(user, key, mu.UploadID)
	}
}

// blocksReader reads blocks one after the other, without joining them,
// and can seek back (the client retries a request from the start).
type blocksReader struct {
	blocks [][]byte
	off    int64
	size   int64
}

func newBlocksReader(blocks [][]byte) *blocksReader {
	r := &blocksReader{blocks: blocks}
	for _, b := range blocks {
		r.size += int64(len(b))
	}
	return r
}

func (r *blocksReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	n := 0
	at := int64(0)
	for _, b := range r.blocks {
		end := at + int64(len(b))
		if r.off < end && n < len(p) {
			c := copy(p[n:], b[r.off-at:])
			n += c
			r.off += int64(c)
		}
		at = end
		if n == len(p) {
			break
		}
	}
	return n, nil
}

func (r *blocksReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	}
	if offset < 0 {
		return 0, errors.New("seek before the start")
	}
	r.off = offset
	return offset, nil
}
