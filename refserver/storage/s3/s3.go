// Package s3 keeps the STEP server's data in an S3-compatible object store
// (SeaweedFS, MinIO, Ceph RGW, AWS S3), so that several servers can share
// it: any server can take any request.
//
// # Layout
//
// Under the bucket and an optional prefix P:
//
//	P/data/USER/KEY              a DATA document (the saved request's JSON)
//	P/file/USER/KEY              a completed file, one object, whole; its MD5 in
//	                             the metadata x-amz-meta-stepkit-md5
//	P/tmp/USER/KEY/plan.json     an upload in progress: its plan and generation ID
//	P/tmp/USER/KEY/ID/LIST.SEQ   ... blocks LIST (0-15, 3,7,11) of generation ID, written at SEQ
//
// # Sharing the store
//
// A server keeps nothing another server needs: an upload's received blocks
// are the block objects of its plan's generation, so an upload begun on one
// server continues on another, which lists them. Writes that must not race
// across servers are conditional: a DATA document and a completed file are
// created with If-None-Match: * (of two servers, one wins; the other sees
// the key exist), and a plan replaces only the plan it read (If-Match its
// ETag). Blocks are written under the generation of their plan, so the
// blocks of a restarted upload never mix with the new plan's. A completed
// file is written once its MD5 is known, with the MD5 in its metadata, and
// only after its plan was checked to be still current.
//
// # Speed
//
// A block is acknowledged only once it is in the store. Store implements
// storage.RunWriter: the server hands it the blocks a client pipelined,
// stored as one object, so an upload costs a request per run, not per
// block. The server also keeps the blocks it stored in an unlinked local
// file (the spool) and completes a file from it when it holds the newest
// bytes of every block, without reading the blocks back from the store.
//
// Every call to the store has a deadline (Config.RequestTimeout, longer in
// proportion to size for whole files); a store that is slow or down gives
// errors, never half-written objects.
package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/stepkit/stepkit/refserver/storage"
)

// Defaults of Config.
const (
	DefaultRequestTimeout = 10 * time.Second
	// DefaultRevalidate is how long a server trusts what it remembers of
	// a completed file or an upload before asking the store again.
	DefaultRevalidate = time.Second
)

// minRate is the slowest transfer rate a whole-file read or write is given
// time for, on top of Config.RequestTimeout.
const minRate = 8 << 20 // bytes per second

// metaMD5 is the user metadata holding a completed file's MD5.
const metaMD5 = "Stepkit-Md5"

// Config says which bucket to use and how to reach it.
type Config struct {
	// Endpoint is the store's URL, http://host:port or https://host:port.
	Endpoint string
	// Bucket must exist.
	Bucket string
	// Prefix is put before every object name ("" or a path such as
	// "step/"; a missing final slash is added).
	Prefix string
	// Region is the bucket's region (default us-east-1).
	Region string
	// AccessKey and SecretKey sign requests; when both are empty they come
	// from the environment variables AWS_ACCESS_KEY_ID,
	// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (no variables: anonymous
	// requests).
	AccessKey, SecretKey, SessionToken string
	// RequestTimeout bounds each call to the store (default 10s).
	RequestTimeout time.Duration
	// Revalidate is how long what a server remembers of a file or upload
	// is trusted before the store is asked again (default 1s).
	Revalidate time.Duration
}

// Store is a storage.Backend on an S3 bucket.
type Store struct {
	cl     *minio.Client
	core   minio.Core
	bucket string
	prefix string
	cfg    Config

	seed  maphash.Seed
	locks [lockStripes]sync.Mutex

	files   sync.Map // user/key -> *fileEntry, completed files seen
	uploads sync.Map // user/key -> *upload, uploads this server took blocks of
	sums    sync.Map // ETag -> MD5 hex, of files stored without their MD5

	// beforePlanWrite, if set (by tests), runs between PlanUpload's read
	// of the plan and its conditional write.
	beforePlanWrite func(user, key string)
}

const lockStripes = 4096

var _ storage.Backend = (*Store)(nil)

// Open connects to the store and checks that the bucket exists.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("s3 endpoint %q: want http://host:port or https://host:port", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, errors.New("s3: no bucket named")
	}
	if cfg.Prefix != "" && !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if strings.HasPrefix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("s3 prefix %q must not start with /", cfg.Prefix)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Revalidate <= 0 {
		cfg.Revalidate = DefaultRevalidate
	}
	var creds *credentials.Credentials
	if cfg.AccessKey != "" || cfg.SecretKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	} else {
		creds = credentials.NewEnvAWS()
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: cfg.RequestTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.RequestTimeout,
		ResponseHeaderTimeout: cfg.RequestTimeout,
		ExpectContinueTimeout: time.Second,
	}
	cl, err := minio.New(u.Host, &minio.Options{
		Creds:        creds,
		Secure:       u.Scheme == "https",
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath,
		Transport:    tr,
		MaxRetries:   2,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	s := &Store{cl: cl, core: minio.Core{Client: cl}, bucket: cfg.Bucket, prefix: cfg.Prefix, cfg: cfg, seed: maphash.MakeSeed()}
	ctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer cancel()
	ok, err := cl.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3 bucket %q at %s: %w", cfg.Bucket, cfg.Endpoint, err)
	}
	if !ok {
		return nil, fmt.Errorf("s3 bucket %q at %s does not exist", cfg.Bucket, cfg.Endpoint)
	}
	return s, nil
}

// String names the bucket, for the server's logs.
func (s *Store) String() string {
	return "s3:" + s.cfg.Endpoint + "/" + s.bucket + "/" + s.prefix
}

// Shared reports true: several servers may use one bucket and prefix.
func (s *Store) Shared() bool { return true }

// Close forgets what the server remembers; the store keeps everything.
func (s *Store) Close() error {
	s.uploads.Range(func(k, v any) bool {
		v.(*upload).release()
		s.uploads.Delete(k)
		return true
	})
	s.files.Clear()
	return nil
}

func ukey(user, key string) string { return user + "/" + key }

// Lock locks user's key against the other requests of this server.
func (s *Store) Lock(user, key string) func() {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(user)
	h.WriteByte(0)
	h.WriteString(key)
	mu := &s.locks[h.Sum64()%lockStripes]
	mu.Lock()
	return mu.Unlock
}

// Object names.
func (s *Store) dataName(user, key string) string { return s.prefix + "data/" + user + "/" + key }
func (s *Store) fileName(user, key string) string { return s.prefix + "file/" + user + "/" + key }
func (s *Store) tmpDir(user, key string) string   { return s.prefix + "tmp/" + user + "/" + key + "/" }
func (s *Store) planName(user, key string) string { return s.tmpDir(user, key) + "plan.json" }
func (s *Store) blockDir(user, key, id string) string {
	return s.tmpDir(user, key) + id + "/"
}

// ctx returns a context for one call to the store.
func (s *Store) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
}

// ctxFor returns a context for a call moving size bytes.
func (s *Store) ctxFor(size int64) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.cfg.RequestTimeout+time.Duration(size/minRate)*time.Second)
}

func errCode(err error) (string, int) {
	r := minio.ToErrorResponse(err)
	return r.Code, r.StatusCode
}

func isNotFound(err error) bool {
	code, st := errCode(err)
	return code == "NoSuchKey" || code == "NotFound" || st == http.StatusNotFound
}

func isPrecondition(err error) bool {
	code, st := errCode(err)
	return code == "PreconditionFailed" || st == http.StatusPreconditionFailed
}

// put writes one small object; cond is "" or "create" (If-None-Match: *)
// or an ETag the object must still have (If-Match).
func (s *Store) put(name string, data []byte, cond string, meta map[string]string) (minio.UploadInfo, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	opts := minio.PutObjectOptions{DisableContentSha256: true, UserMetadata: meta, DisableMultipart: true}
	switch cond {
	case "":
	case "create":
		opts.SetMatchETagExcept("*")
	default:
		opts.SetMatchETag(cond)
	}
	return s.cl.PutObject(ctx, s.bucket, name, bytes.NewReader(data), int64(len(data)), opts)
}

// get reads one small object whole.
func (s *Store) get(name string) ([]byte, minio.ObjectInfo, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rc, info, _, err := s.core.GetObject(ctx, s.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, info, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return b, info, err
}

func (s *Store) stat(name string) (minio.ObjectInfo, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	return s.cl.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
}

func (s *Store) remove(name string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	err := s.cl.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{})
	if err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

// list calls fn for each object (or, with delim, each common prefix) under
// prefix, stopping early when fn returns false.
func (s *Store) list(prefix string, delim bool, fn func(minio.ObjectInfo) bool) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A listing is a request per page of 1000 names: the watchdog gives
	// up when no name came for Config.RequestTimeout.
	dog := time.AfterFunc(s.cfg.RequestTimeout, cancel)
	defer dog.Stop()
	for obj := range s.cl.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: !delim}) {
		dog.Reset(s.cfg.RequestTimeout)
		if obj.Err != nil {
			if isNotFound(obj.Err) {
				return nil
			}
			return obj.Err
		}
		if !fn(obj) {
			return nil
		}
	}
	return nil
}

// removeAll removes every object under prefix.
func (s *Store) removeAll(prefix string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// As in list: the watchdog gives up when nothing moved for
	// Config.RequestTimeout.
	dog := time.AfterFunc(s.cfg.RequestTimeout, cancel)
	defer dog.Stop()
	objs := s.cl.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true})
	var listErr error
	results, err := s.cl.RemoveObjectsWithIter(ctx, s.bucket, func(yield func(minio.ObjectInfo) bool) {
		for o := range objs {
			dog.Reset(s.cfg.RequestTimeout)
			if o.Err != nil {
				if !isNotFound(o.Err) {
					listErr = o.Err
				}
				return
			}
			if !yield(o) {
				return
			}
		}
	}, minio.RemoveObjectsOptions{})
	if err != nil {
		return fmt.Errorf("remove %s: %w", prefix, err)
	}
	for r := range results {
		dog.Reset(s.cfg.RequestTimeout)
		if r.Err != nil && !isNotFound(r.Err) {
			return fmt.Errorf("remove %s: %w", r.ObjectName, r.Err)
		}
	}
	if listErr != nil {
		return fmt.Errorf("list %s: %w", prefix, listErr)
	}
	return nil
}

// names returns the names of the "folders" directly under prefix.
func (s *Store) names(prefix string) ([]string, error) {
	var out []string
	err := s.list(prefix, true, func(o minio.ObjectInfo) bool {
		if n, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, prefix), "/"); ok && storage.CheckName(n) == nil {
			out = append(out, n)
		}
		return true
	})
	return out, err
}

// ---- DATA documents ----

func (s *Store) SaveData(user, key string, doc []byte) error {
	_, err := s.put(s.dataName(user, key), doc, "create", nil)
	if isPrecondition(err) {
		return storage.ErrExists
	}
	if err != nil {
		return fmt.Errorf("write document: %w", err)
	}
	return nil
}

func (s *Store) Data(user, key string) ([]byte, error) {
	b, _, err := s.get(s.dataName(user, key))
	if isNotFound(err) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read document: %w", err)
	}
	return b, nil
}

func (s *Store) DeleteData(user, key string) (int64, error) {
	name := s.dataName(user, key)
	info, err := s.stat(name)
	if isNotFound(err) {
		return 0, storage.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("stat document: %w", err)
	}
	if err := s.remove(name); err != nil {
		return 0, fmt.Errorf("delete document: %w", err)
	}
	return info.Size, nil
}

// ---- completed files ----

// fileEntry is what a server remembers of a completed file.
type fileEntry struct {
	meta    *storage.FileMeta
	etag    string
	checked time.Time
}

// Completed returns a completed file's metadata. What the server saw less
// than Config.Revalidate ago is answered from memory. A file not in the
// store but whose upload has every block (taken by several servers, so
// none saw them all) is completed now.
func (s *Store) Completed(user, key string) (*storage.FileMeta, error) {
	if v, ok := s.files.Load(ukey(user, key)); ok {
		if e := v.(*fileEntry); time.Since(e.checked) < s.cfg.Revalidate {
			return e.meta, nil
		}
	}
	m, err := s.statFile(user, key)
	if !errors.Is(err, storage.ErrNotFound) {
		return m, err
	}
	unlock := s.Lock(user, key)
	defer unlock()
	return s.completeIfWhole(user, key)
}

// CompletedLocked asks the store.
func (s *Store) CompletedLocked(user, key string) (*storage.FileMeta, error) {
	m, err := s.statFile(user, key)
	if !errors.Is(err, storage.ErrNotFound) {
		return m, err
	}
	return s.completeIfWhole(user, key)
}

// statFile reads a completed file's metadata from the store. A file stored
// without its MD5 (copied in by hand) has it computed once per version.
func (s *Store) statFile(user, key string) (*storage.FileMeta, error) {
	uk := ukey(user, key)
	name := s.fileName(user, key)
	info, err := s.stat(name)
	if isNotFound(err) {
		s.files.Delete(uk)
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("stat file: %w", err)
	}
	if v, ok := s.files.Load(uk); ok {
		if e := v.(*fileEntry); e.etag == info.ETag {
			s.files.Store(uk, &fileEntry{meta: e.meta, etag: e.etag, checked: time.Now()})
			return e.meta, nil
		}
	}
	sum := strings.ToLower(info.UserMetadata[metaMD5])
	if len(sum) != 32 {
		if v, ok := s.sums.Load(info.ETag); ok {
			sum = v.(string)
		} else if b, _, err := s.get(s.sumDir(user, key) + info.ETag); err == nil && len(b) == 32 {
			// A file completed from parts: its MD5 beside it.
			sum = string(b)
			s.sums.Store(info.ETag, sum)
		} else if sum, err = s.hashObject(name, info); err != nil {
			return nil, err
		}
	}
	m := &storage.FileMeta{Size: info.Size, MD5: sum, ModTime: info.LastModified.UnixNano()}
	s.files.Store(uk, &fileEntry{meta: m, etag: info.ETag, checked: time.Now()})
	return m, nil
}

func (s *Store) hashObject(name string, info minio.ObjectInfo) (string, error) {
	ctx, cancel := s.ctxFor(info.Size)
	defer cancel()
	opts := minio.GetObjectOptions{}
	opts.SetMatchETag(info.ETag)
	rc, _, _, err := s.core.GetObject(ctx, s.bucket, name, opts)
	if err != nil {
		return "", fmt.Errorf("read file: %w", err)
	}
	defer rc.Close()
	h := md5.New()
	if _, err := io.Copy(h, rc); err != nil {
		return "", fmt.Errorf("hash file: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	s.sums.Store(info.ETag, sum)
	return sum, nil
}

// OpenCompleted opens the version of the file m describes: every read is
// bound to its ETag.
func (s *Store) OpenCompleted(user, key string, m *storage.FileMeta) (storage.File, error) {
	var etag string
	if v, ok := s.files.Load(ukey(user, key)); ok && v.(*fileEntry).meta == m {
		etag = v.(*fileEntry).etag
	} else {
		// Not the version remembered: ask the store which one it has.
		cur, err := s.statFile(user, key)
		if err != nil {
			return nil, err
		}
		v, ok := s.files.Load(ukey(user, key))
		if !ok || cur.Size != m.Size || cur.MD5 != m.MD5 {
			return nil, storage.ErrNotFound // replaced meanwhile
		}
		etag = v.(*fileEntry).etag
	}
	return &object{s: s, name: s.fileName(user, key), size: m.Size, etag: etag}, nil
}

func (s *Store) DeleteFile(user, key string) (int64, error) {
	if u, err := s.upload(user, key, true); err == nil {
		size := u.Plan().Size
		if err := s.DropUpload(user, key, u); err != nil {
			return 0, err
		}
		return size, storage.ErrInProgress
	} else if !errors.Is(err, storage.ErrNotFound) {
		return 0, err
	}
	m, err := s.statFile(user, key)
	if err != nil {
		return 0, err
	}
	if err := s.remove(s.fileName(user, key)); err != nil {
		return 0, fmt.Errorf("delete file: %w", err)
	}
	s.files.Delete(ukey(user, key))
	s.removeAll(s.sumDir(user, key))
	return m.Size, nil
}

func (s *Store) CreateEmpty(user, key string) (*storage.FileMeta, error) {
	sum := hex.EncodeToString(md5.New().Sum(nil))
	info, err := s.put(s.fileName(user, key), nil, "create", map[string]string{metaMD5: sum})
	if isPrecondition(err) {
		return nil, storage.ErrExists
	}
	if err != nil {
		return nil, fmt.Errorf("write empty file: %w", err)
	}
	m := &storage.FileMeta{Size: 0, MD5: sum, ModTime: info.LastModified.UnixNano()}
	if info.LastModified.IsZero() {
		m.ModTime = time.Now().UnixNano()
	}
	s.files.Store(ukey(user, key), &fileEntry{meta: m, etag: info.ETag, checked: time.Now()})
	return m, nil
}

// ---- usage and sweeping ----

// Usage counts, from the store, the bytes user keeps: completed files,
// DATA documents and planned uploads.
func (s *Store) Usage(user string) (int64, error) {
	var total int64
	for _, dir := range []string{s.prefix + "file/" + user + "/", s.prefix + "data/" + user + "/"} {
		err := s.list(dir, true, func(o minio.ObjectInfo) bool {
			if !strings.HasSuffix(o.Key, "/") {
				total += o.Size
			}
			return true
		})
		if err != nil {
			return 0, fmt.Errorf("measure %s: %w", dir, err)
		}
	}
	keys, err := s.names(s.prefix + "tmp/" + user + "/")
	if err != nil {
		return 0, fmt.Errorf("measure uploads: %w", err)
	}
	for _, key := range keys {
		if p, _, err := s.readPlan(user, key); err == nil {
			total += p.Size
		}
	}
	return total, nil
}

// Sweep removes the uploads that received nothing since before cutoff:
// judged by the store's modification times, so that any server may sweep,
// and several at once remove nothing twice that matters.
func (s *Store) Sweep(cutoff time.Time) []storage.Swept {
	var out []storage.Swept
	users, _ := s.names(s.prefix + "tmp/")
	for _, user := range users {
		if user[0] == '.' {
			continue
		}
		keys, _ := s.names(s.prefix + "tmp/" + user + "/")
		for _, key := range keys {
			unlock := s.Lock(user, key)
			if r, ok := s.sweepOne(user, key, cutoff); ok {
				out = append(out, r)
			}
			unlock()
		}
	}
	s.sweepMultipart(cutoff)
	return out
}

func (s *Store) sweepOne(user, key string, cutoff time.Time) (storage.Swept, bool) {
	if v, ok := s.uploads.Load(ukey(user, key)); ok && v.(*upload).active.Load() >= cutoff.UnixNano() {
		return storage.Swept{}, false
	}
	// Anything modified since cutoff, plan or block, keeps the upload.
	recent := false
	err := s.list(s.tmpDir(user, key), false, func(o minio.ObjectInfo) bool {
		recent = !o.LastModified.Before(cutoff)
		return !recent
	})
	if err != nil || recent {
		return storage.Swept{}, false
	}
	p, _, perr := s.readPlan(user, key)
	if err := s.remove(s.planName(user, key)); err != nil {
		return storage.Swept{}, false
	}
	s.forget(user, key)
	if perr == nil {
		s.abortGeneration(user, key, p.ID)
	}
	if err := s.removeAll(s.tmpDir(user, key)); err != nil {
		return storage.Swept{}, false
	}
	if perr != nil {
		p.Size = 0
	}
	return storage.Swept{User: user, Key: key, Size: p.Size}, true
}
