package refclient

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/stepkit/stepkit/spec"
)

// writebackEvery is how many bytes of a download may be written before
// the kernel is asked to start writing them to disk.
const writebackEvery = 8 << 20

// EmptyMD5 is the MD5 of no bytes.
const EmptyMD5 = "d41d8cd98f00b204e9800998ecf8427e"

// maxPlanBlockSize bounds the block_size a plan may announce: one block
// must fit in a frame the client accepts.
const maxPlanBlockSize = spec.DefaultMaxBinary

// Plan is an upload plan (FILE SAVE) or a download plan (FILE GET).
type Plan struct {
	Key        string `json:"key"`
	Size       int64  `json:"size"`
	BlockSize  int64  `json:"block_size"`
	TotalBlock int64  `json:"total_block"`
	MD5        string `json:"md5,omitempty"` // "" when the server sent none
}

// TransferOptions tune one upload or download.
type TransferOptions struct {
	// Restart ignores any journal and starts the transfer afresh.
	Restart bool
	// Progress, when set, is called with the number of bytes each
	// acknowledged block moved. It may be called from several goroutines.
	Progress func(n int64)
}

// UploadResult describes a finished upload.
type UploadResult struct {
	Plan      Plan   `json:"plan"`
	MD5       string `json:"md5"`        // of the local data
	ServerMD5 string `json:"server_md5"` // "" when the server reported none
	Verified  bool   `json:"verified"`   // MD5 and ServerMD5 were compared equal
	Resumed   bool   `json:"resumed"`    // the upload continued an earlier one
	Sent      int64  `json:"blocks_sent"`
	// Window is the number of blocks allowed in flight on each
	// connection (see Options.Window); PeakInFlight is the most that were
	// ever sent and not yet answered on one connection.
	Window       int   `json:"window"`
	PeakInFlight int64 `json:"peak_in_flight"`
	// Conns is the number of connections the blocks went over (see
	// Options.Conns).
	Conns int `json:"conns"`
	// Retried says the upload lost step with several blocks in flight
	// and was finished on a new connection with one block in flight.
	Retried bool `json:"retried,omitempty"`
}

// DownloadResult describes a finished download.
type DownloadResult struct {
	Plan     Plan   `json:"plan"`
	Path     string `json:"path,omitempty"`
	MD5      string `json:"md5"`      // of the received data
	Verified bool   `json:"verified"` // the plan carried an MD5 and it matched
	Resumed  bool   `json:"resumed"`
	Received int64  `json:"blocks_received"`
	// Window, PeakInFlight and Conns are as in UploadResult.
	Window       int   `json:"window"`
	PeakInFlight int64 `json:"peak_in_flight"`
	Conns        int   `json:"conns"`
}

// parsePlan reads a plan from resp. key and size are what was asked for
// (size < 0 when unknown); a plan that omits them is taken to agree.
func parsePlan(op spec.Operation, resp *spec.Message, key string, size int64) (Plan, error) {
	bad := func(format string, args ...any) (Plan, error) {
		return Plan{}, &ProtocolError{Op: op, Type: spec.TypeFile, Msg: fmt.Sprintf(format, args...), Response: resp}
	}
	p := Plan{Key: key, Size: size, BlockSize: spec.DefaultBlockSize, TotalBlock: -1}
	if resp.Has(spec.FieldKey) {
		k, err := resp.Key()
		if err != nil {
			return bad("plan: %v", err)
		}
		p.Key = k
	}
	if p.Key == "" {
		return bad("plan has no key")
	}
	if resp.Has(spec.FieldSize) {
		n, err := resp.Size()
		if err != nil {
			return bad("plan: %v", err)
		}
		if size >= 0 && n != size {
			return bad("plan size %d differs from the %d bytes asked for", n, size)
		}
		p.Size = n
	}
	if p.Size < 0 {
		return bad("plan has no size")
	}
	if resp.Has(spec.FieldBlockSize) {
		n, err := resp.BlockSize()
		if err != nil {
			return bad("plan: %v", err)
		}
		p.BlockSize = n
	}
	if p.BlockSize <= 0 || p.BlockSize > maxPlanBlockSize {
		return bad("plan block_size %d is outside 1..%d", p.BlockSize, maxPlanBlockSize)
	}
	want := spec.TotalBlocks(p.Size, p.BlockSize)
	if resp.Has(spec.FieldTotalBlock) {
		n, err := resp.TotalBlock()
		if err != nil {
			return bad("plan: %v", err)
		}
		if n != want {
			return bad("plan total_block %d, but size %d in blocks of %d makes %d", n, p.Size, p.BlockSize, want)
		}
	}
	p.TotalBlock = want
	if resp.Has(spec.FieldMD5) {
		m, err := resp.MD5()
		if err != nil {
			return bad("plan: %v", err)
		}
		p.MD5 = strings.ToLower(m)
	}
	return p, nil
}

// FileInfo asks for the download plan of key (FILE GET).
func (c *Client) FileInfo(ctx context.Context, key string) (Plan, error) {
	req := spec.NewRequest(spec.OpGet, spec.TypeFile).Set(spec.FieldKey, key)
	if bs := c.askBlockSize(); bs > 0 {
		req.Set(spec.FieldBlockSize, bs)
	}
	resp, err := c.Do(ctx, req)
	if err != nil {
		return Plan{}, err
	}
	return parsePlan(spec.OpGet, resp, key, -1)
}

// DeleteFile removes the file stored under key (FILE DELETE). The
// response's operation is not looked at: the course server says "GET".
func (c *Client) DeleteFile(ctx context.Context, key string) error {
	_, err := c.Do(ctx, spec.NewRequest(spec.OpDelete, spec.TypeFile).Set(spec.FieldKey, key))
	return err
}

// save asks for an upload plan. An empty key lets the server choose.
func (c *Client) save(ctx context.Context, key string, size int64) (Plan, error) {
	req := spec.NewRequest(spec.OpSave, spec.TypeFile).Set(spec.FieldSize, size)
	if key != "" {
		req.Set(spec.FieldKey, key)
	}
	if bs := c.askBlockSize(); bs > 0 {
		if c.opts.BlockSize == 0 {
			// The automatic size: a small file still gets enough blocks
			// to keep a window in flight, and the server's buffers stay
			// small when many small files arrive at once.
			bs = min(bs, max(spec.DefaultBlockSize, size/DefaultWindow))
		}
		req.Set(spec.FieldBlockSize, bs)
	}
	timeout := c.opts.ReplyTimeout
	if size == 0 {
		timeout = min(timeout, c.opts.EmptyTimeout)
	}
	resp, err := c.do(ctx, req, timeout)
	if err != nil {
		var nr *NoResponseError
		if size == 0 && errors.As(err, &nr) {
			return Plan{}, fmt.Errorf("the server cannot store an empty file (the course server never answers FILE SAVE with size 0): %w", err)
		}
		return Plan{}, err
	}
	return parsePlan(spec.OpSave, resp, key, size)
}

// Upload uploads size bytes read from src under key (empty: the server
// chooses) and compares the MD5 with the server's. It does not resume;
// UploadFile does.
func (c *Client) Upload(ctx context.Context, key string, src io.Reader, size int64, o *TransferOptions) (*UploadResult, error) {
	if o == nil {
		o = &TransferOptions{}
	}
	plan, err := c.save(ctx, key, size)
	if err != nil {
		return nil, err
	}
	return c.sendBlocks(ctx, plan, src, nil, o, c.UploadWindow(plan.BlockSize))
}

// UploadFile uploads the file at path under key (empty: the server
// chooses). With Options.JournalDir set, an interrupted upload of the same
// file to the same server, user and key resumes: only the blocks the server
// has not acknowledged are sent, without a new FILE SAVE (which would
// restart the upload).
func (c *Client) UploadFile(ctx context.Context, path, key string, o *TransferOptions) (*UploadResult, error) {
	if o == nil {
		o = &TransferOptions{}
	}
	c.pruneJournals()
	// Refused by a rate limit: wait, then resume from the journal.
	return retryTransfer(c, ctx, o, func(o *TransferOptions) (*UploadResult, int64, error) {
		res, err := c.uploadFile(ctx, path, key, o)
		var sent int64
		if res != nil {
			sent = res.Sent
		}
		return res, sent, err
	})
}

func (c *Client) uploadFile(ctx context.Context, path, key string, o *TransferOptions) (*UploadResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	size, mtime := fi.Size(), fi.ModTime().UnixNano()

	var jpath string
	if c.opts.JournalDir != "" {
		jpath = journalPath(c.opts.JournalDir, "upload", c.addr, c.Username(), key, abs)
	}
	if jpath != "" && !o.Restart {
		if j := loadJournal(jpath); j != nil {
			h := j.hdr
			if h.Op == "upload" && h.Path == abs && h.Size == size && h.ModTime == mtime &&
				h.TotalBlock == spec.TotalBlocks(size, h.BlockSize) {
				plan := Plan{Key: h.Key, Size: h.Size, BlockSize: h.BlockSize, TotalBlock: h.TotalBlock}
				before := j.count()
				res, err := c.sendFile(ctx, plan, f, j, jpath, o)
				res.Resumed = true
				if err == nil {
					return res, nil
				}
				var se *StatusError
				if !errors.As(err, &se) || j.count() > before || se.Status == spec.StatusTooManyRequests {
					return res, err
				}
				// The server no longer knows the upload (restarted,
				// expired, completed): start over with a new plan.
				if c.Broken() != nil {
					return res, err
				}
				if _, serr := f.Seek(0, io.SeekStart); serr != nil {
					return nil, serr
				}
			}
			j.remove()
		}
	}
	plan, err := c.save(ctx, key, size)
	if err != nil {
		return nil, err
	}
	var j *journal
	if jpath != "" && plan.TotalBlock > 0 {
		j, err = createJournal(jpath, journalHeader{Op: "upload", Server: c.addr, User: c.Username(),
			Key: plan.Key, Path: abs, Size: size, ModTime: mtime, BlockSize: plan.BlockSize, TotalBlock: plan.TotalBlock})
		if err != nil {
			return nil, err
		}
	}
	return c.sendFile(ctx, plan, f, j, jpath, o)
}

// sendFile uploads the blocks of plan that j lacks from f. When the server
// loses step with several blocks in flight (*OutOfStepError: the course
// server misreads pipelined blocks), the upload goes on once more on a new
// connection with one block in flight, from the journal at jpath when
// there is one and from the first block otherwise (a block sent again is
// stored again, FILE-UPLOAD).
func (c *Client) sendFile(ctx context.Context, plan Plan, f *os.File, j *journal, jpath string, o *TransferOptions) (*UploadResult, error) {
	var reported atomic.Int64 // progress bytes reported by the first attempt
	first := *o
	if o.Progress != nil {
		first.Progress = func(n int64) { reported.Add(n); o.Progress(n) }
	}
	res, err := c.sendBlocks(ctx, plan, f, j, &first, c.UploadWindow(plan.BlockSize))
	var oos *OutOfStepError
	if !errors.As(err, &oos) || res.Window <= 1 || ctx.Err() != nil {
		return res, err
	}
	if _, serr := f.Seek(0, io.SeekStart); serr != nil {
		return res, err
	}
	var j2 *journal
	if jpath != "" {
		if j2 = loadJournal(jpath); j2 == nil {
			return res, err
		}
	}
	if rerr := c.reconnect(ctx); rerr != nil {
		j2.close()
		return res, errors.Join(err, rerr)
	}
	// Progress already shown is not shown twice.
	again := *o
	if o.Progress != nil {
		var seen atomic.Int64
		skip := reported.Load()
		again.Progress = func(n int64) {
			now := seen.Add(n)
			if d := now - max(now-n, skip); d > 0 {
				o.Progress(d)
			}
		}
	}
	res2, err2 := c.sendBlocks(ctx, plan, f, j2, &again, 1)
	res2.Sent += res.Sent
	res2.PeakInFlight = max(res2.PeakInFlight, res.PeakInFlight)
	res2.Retried = true
	return res2, err2
}

// sendBlocks uploads the blocks of plan that j has not recorded, reading
// src once from its start and hashing it on the way, then compares the MD5
// with the server's. j may be nil.
//
// src is read with plain reads into buffers (slabs) used again and again,
// not mapped: on a virtual machine whose page tables the hypervisor
// shadows, the faults of a mapping and its unmapping cost more than the
// copy they spare (the client's CPU per GB uploaded fell by a fifth there).
func (c *Client) sendBlocks(ctx context.Context, plan Plan, src io.Reader, j *journal, o *TransferOptions, window int) (*UploadResult, error) {
	res := &UploadResult{Plan: plan, Window: window}
	h := md5.New()
	var mu sync.Mutex // guards serverMD5
	serverMD5 := plan.MD5

	missing := plan.TotalBlock - j.count()
	// A server that did not advertise pipelining may be the course's,
	// whose record of an upload's blocks races between connections that
	// upload one key (STEP.md A.21): it gets one connection per upload.
	most := c.opts.Conns
	if !c.Pipelining() {
		most = 1
	}
	conns, release := c.transferConns(ctx, missing, window, most)
	defer release()
	res.Conns = len(conns)
	// With several connections, the first block goes alone (probe); its
	// answer says whether the others are of use.
	var pr *probe
	var spreading atomic.Bool // the blocks handed out take credits of sp
	if len(conns) > 1 {
		pr = newProbe()
		spreading.Store(true)
	}
	first := pr // pr is the reader's; first, the connections'

	// The file is read a slab of several blocks at a time: one read
	// system call and one MD5 write for a slab, not for each block. A
	// slab goes back to the pool once every block of it is written.
	per := max(1, slabBytes/plan.BlockSize)
	// Enough for the blocks queued and those in flight.
	pool := make(chan *slab, (2*int64(len(conns)*window)+2)/per+2)
	// Blocks read and hashed ahead wait here, so that the reader and the
	// connections rarely wait for one another: a window's worth. Every
	// slab is memory touched for the first time, which costs a fault per
	// page; deeper queues cost more of them than they saved in waits.
	jobs := newRuns(len(conns), window, window)
	sp := newSpread(len(conns) * window)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer jobs.close()
		var seq int64
		for i := int64(0); i < plan.TotalBlock; i += per {
			last := min(i+per, plan.TotalBlock)
			n := min(last*plan.BlockSize, plan.Size) - i*plan.BlockSize
			var sl *slab
			select {
			case sl = <-pool:
			default:
				sl = &slab{buf: make([]byte, per*plan.BlockSize), pool: pool}
			}
			buf := sl.buf[:n]
			if _, err := io.ReadFull(src, buf); err != nil {
				return fmt.Errorf("read blocks %d to %d of the local file: %w (did it shrink?)", i, last-1, err)
			}
			h.Write(buf)
			// The reader holds a reference while it hands blocks out.
			sl.refs.Store(1)
			for k := i; k < last; k++ {
				off := (k - i) * plan.BlockSize
				blk := buf[off : off+spec.BlockLen(plan.Size, plan.BlockSize, k)]
				if j.has(k) {
					if o.Progress != nil {
						o.Progress(int64(len(blk)))
					}
					continue
				}
				if spreading.Load() && !sp.take(gctx) {
					return nil
				}
				sl.refs.Add(1)
				if pr != nil {
					pr.start = time.Now()
				}
				// The probe's block is answered alone: it is not to be
				// gathered with the blocks behind it.
				if !jobs.send(gctx, job{index: k, seq: seq, data: blk, slab: sl, alone: pr != nil}) {
					sl.release()
					return nil
				}
				seq++
				if pr != nil {
					one, ok := pr.oneConn(gctx, window, plan.BlockSize, c.connRate)
					if !ok {
						sl.release()
						return nil
					}
					if one {
						// Its credit came back with its answer.
						spreading.Store(false)
						jobs.only()
						res.Conns = 1
					}
					pr = nil
				}
			}
			sl.release()
		}
		return nil
	})
	var sent int64
	var sentMu sync.Mutex
	var peak atomic.Int64
	upReq := spec.NewRequest(spec.OpUpload, spec.TypeFile) // names the operation in errors
	// A window that keeps the server's upload_window in flight says so in
	// every UPLOAD (EXT-8).
	var gather int64
	if c.UploadGathers(window, plan.BlockSize) {
		gather = int64(window) * plan.BlockSize
	}
	st := stage{
		op:     spec.OpUpload,
		typ:    spec.TypeFile,
		window: window,
		peak:   &peak,
		build: func(jb job, m *spec.Message) *spec.Message {
			m.ResetRequest(spec.OpUpload, spec.TypeFile).
				SetString(spec.FieldKey, plan.Key).
				SetInt(spec.FieldBlockIndex, jb.index)
			if gather > 0 && !jb.alone {
				m.SetInt(spec.FieldWindow, gather)
			}
			m.Binary = jb.data
			return m
		},
		sent: func(jb job) { jb.slab.release() },
		handle: func(jb job, resp *spec.Message) error {
			if err := checkStatus(upReq, resp); err != nil {
				return fmt.Errorf("block %d: %w", jb.index, err)
			}
			if err := checkIndex(spec.OpUpload, resp, jb.index); err != nil {
				return err
			}
			if m, err := resp.MD5(); err == nil {
				mu.Lock()
				serverMD5 = strings.ToLower(m)
				mu.Unlock()
			}
			if err := j.ack(jb.index); err != nil {
				return err
			}
			if spreading.Load() {
				sp.ack(jb.seq)
			}
			sentMu.Lock()
			sent++
			sentMu.Unlock()
			if o.Progress != nil {
				o.Progress(int64(len(jb.data)))
			}
			if first != nil {
				first.answered()
			}
			return nil
		},
	}
	for k, cc := range conns {
		g.Go(func() error { return cc.pipeline(gctx, jobs.out[k], st) })
	}
	err := g.Wait()
	res.Sent = sent
	res.PeakInFlight = peak.Load()
	if err != nil {
		j.close()
		return res, err
	}
	res.MD5 = hex.EncodeToString(h.Sum(nil))
	if serverMD5 == "" {
		// The server sent no md5 with the last block: ask for the plan.
		p, err := c.FileInfo(ctx, plan.Key)
		if err != nil {
			j.close()
			return res, fmt.Errorf("upload of %q finished, but FILE GET failed: %w", plan.Key, err)
		}
		serverMD5 = p.MD5
	}
	j.remove()
	res.ServerMD5 = serverMD5
	if serverMD5 == "" {
		return res, nil
	}
	if serverMD5 != res.MD5 {
		return res, &MismatchError{Key: plan.Key, Local: res.MD5, Server: serverMD5}
	}
	res.Verified = true
	return res, nil
}

// runs hands a transfer's jobs to its connections in runs of consecutive
// blocks, a connection's window's worth at a time. One file's blocks pass
// through one MD5 in order on each side, so while one connection's run is
// delivered the next one waits; runs make that hand-over rare, where
// blocks dealt one at a time made one for nearly every block, and keep
// the blocks a connection carries next to each other in the file.
type runs struct {
	out  []chan job
	size int // jobs in a run
	k, n int // the connection taking jobs, and how many it took of its run
	// single: every job goes to the first connection (only)
	single bool
}

func newRuns(conns, queue, size int) *runs {
	r := &runs{out: make([]chan job, conns), size: max(1, size)}
	for k := range r.out {
		r.out[k] = make(chan job, queue)
	}
	return r
}

// send hands j to the connection whose run it falls in, unless ctx ends.
func (r *runs) send(ctx context.Context, j job) bool {
	if r.single {
		r.k = 0
	}
	select {
	case r.out[r.k] <- j:
	case <-ctx.Done():
		return false
	}
	if r.n++; r.n == r.size && !r.single {
		r.k, r.n = (r.k+1)%len(r.out), 0
	}
	return true
}

// only hands every job from now on to the first connection.
func (r *runs) only() { r.single = true }

func (r *runs) close() {
	for _, c := range r.out {
		close(c)
	}
}

// spread bounds how far the blocks an upload hands out to its connections
// run ahead of the oldest one not yet acknowledged. The server hashes a
// file in order: while one connection is slow, the blocks another sends
// meanwhile wait in the server's memory, or on its disk to be read back
// if there are too many, and a block's turn never comes sooner for it.
type spread struct {
	credits chan struct{} // a token for each job handed out and not behind the oldest unacknowledged
	mu      sync.Mutex
	oldest  int64  // the seq of the oldest job not acknowledged
	acked   []bool // by seq modulo cap(credits): acknowledged out of order
}

func newSpread(n int) *spread {
	return &spread{credits: make(chan struct{}, n), acked: make([]bool, n)}
}

// take waits until one more job may be handed out, or ctx ends.
func (s *spread) take(ctx context.Context) bool {
	select {
	case s.credits <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// ack records that job seq was acknowledged.
func (s *spread) ack(seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int64(len(s.acked))
	s.acked[seq%n] = true
	for s.acked[s.oldest%n] {
		s.acked[s.oldest%n] = false
		s.oldest++
		<-s.credits
	}
}

// slabBytes is how much of the local file an upload reads at once.
const slabBytes = 256 << 10

// slab is a buffer of consecutive blocks read from the local file.
type slab struct {
	buf  []byte
	refs atomic.Int32 // blocks not yet written, plus one while the reader hands them out
	pool chan *slab
}

// release drops a reference; the last returns the slab to its pool.
func (s *slab) release() {
	if s == nil || s.refs.Add(-1) != 0 {
		return
	}
	select {
	case s.pool <- s:
	default:
	}
}

// checkIndex verifies the block_index a response echoes, if it does.
func checkIndex(op spec.Operation, resp *spec.Message, want int64) error {
	if !resp.Has(spec.FieldBlockIndex) {
		return nil
	}
	got, err := resp.BlockIndex()
	if err != nil || got != want {
		return &ProtocolError{Op: op, Type: spec.TypeFile, Response: resp,
			Msg: fmt.Sprintf("response for block %d carries block_index %s", want, rawField(resp, spec.FieldBlockIndex))}
	}
	return nil
}

func rawField(m *spec.Message, f string) string {
	raw, _ := m.Raw(f)
	return string(raw)
}

// transferConns returns the connections a transfer of n blocks with window
// requests in flight per connection may use: c and, up to most in all and
// when there is work for them, extra connections carrying c's token (and
// what its login learnt of the server). release says BYE on the extra
// ones. Connections that cannot be opened are done without.
func (c *Client) transferConns(ctx context.Context, n int64, window, most int) ([]*Client, func()) {
	conns := []*Client{c}
	extra := min(int64(most-1), n/int64(window))
	for i := int64(0); i < extra; i++ {
		cc, err := c.Dup(ctx)
		if err != nil {
			break
		}
		conns = append(conns, cc)
	}
	return conns, func() {
		for _, cc := range conns[1:] {
			_ = cc.Bye()
		}
	}
}

// oneConnRate is a rate, in bytes per second, beyond which no transfer of
// a single file goes: about what the fastest cores of today hash with MD5.
// A first answer also bears one-off costs (a fresh connection, the
// server's set-up of the transfer), so a window that shows this rate on it
// carries more afterwards.
const oneConnRate = 1e9

// oneConnEnough reports whether a window of inFlight bytes carries a file
// at rate bytes per second when a block takes took to be answered.
func oneConnEnough(took time.Duration, inFlight int64, rate float64) bool {
	return took > 0 && float64(inFlight)/took.Seconds() >= rate
}

// probe times the answer to the first block of a transfer that may use
// several connections, before a second connection gets any. A file goes
// through one MD5 in order at each end, so another connection helps only
// where one connection's window cannot carry the file as fast as it is
// hashed: over a long round trip, or to a server slow to answer each
// block (an object store, one block in flight). Elsewhere, as on one
// machine, the second connection's blocks would only wait for the
// first's, and cost hand-overs between them (1 to 8 % of the rate).
type probe struct {
	start time.Time
	took  time.Duration
	once  sync.Once
	done  chan struct{}
}

func newProbe() *probe { return &probe{done: make(chan struct{})} }

// answered records that the first answer came; later calls do nothing.
func (p *probe) answered() {
	p.once.Do(func() {
		p.took = time.Since(p.start)
		close(p.done)
	})
}

// oneConn waits for the first answer (false if ctx ends first) and
// reports whether a single connection with window blocks of blockSize
// bytes in flight carries the file at rate bytes per second.
func (p *probe) oneConn(ctx context.Context, window int, blockSize int64, rate float64) (one, ok bool) {
	select {
	case <-p.done:
		return oneConnEnough(p.took, int64(window)*blockSize, rate), true
	case <-ctx.Done():
		return false, false
	}
}

// Dup opens another connection to c's server that carries c's token and
// what c's LOGIN learnt of the server, without logging in again: several
// transfers can then run at once, one per connection.
func (c *Client) Dup(ctx context.Context) (*Client, error) {
	cc, err := Dial(ctx, c.addr, &c.opts)
	if err != nil {
		return nil, err
	}
	c.tokMu.Lock()
	cc.token, cc.username, cc.pipelining, cc.maxBlock, cc.upWindow = c.token, c.username, c.pipelining, c.maxBlock, c.upWindow
	c.tokMu.Unlock()
	return cc, nil
}

// Download fetches key into w, checking the MD5 of what it wrote against
// the plan's. Blocks reach w in order. It does not resume.
func (c *Client) Download(ctx context.Context, key string, w io.Writer, o *TransferOptions) (*DownloadResult, error) {
	if o == nil {
		o = &TransferOptions{}
	}
	plan, err := c.FileInfo(ctx, key)
	if err != nil {
		return nil, err
	}
	h := md5.New()
	res := &DownloadResult{Plan: plan}
	// Blocks are hashed and written by their own goroutine, beside the
	// network: the sink only copies them into a queue.
	queue := make(chan []byte, 8)
	free := make(chan []byte, 16) // more than can be out: none is dropped
	var werr atomic.Pointer[error]
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range queue {
			if werr.Load() == nil {
				h.Write(b)
				if _, err := w.Write(b); err != nil {
					e := err // only a failure costs an allocation
					werr.Store(&e)
				}
			}
			select {
			case free <- b:
			default:
			}
		}
	}()
	sink := func(_ int64, b []byte) error {
		if e := werr.Load(); e != nil {
			return *e
		}
		var buf []byte
		select {
		case buf = <-free:
		default:
		}
		queue <- append(buf[:0], b...)
		return nil
	}
	_, err = c.fetchBlocks(ctx, plan, nil, nil, sink, o, res)
	close(queue)
	<-done
	if e := werr.Load(); err == nil && e != nil {
		err = *e
	}
	if err != nil {
		return res, err
	}
	return res, verifyDownload(res, h)
}

func verifyDownload(res *DownloadResult, h hash.Hash) error {
	res.MD5 = hex.EncodeToString(h.Sum(nil))
	if res.Plan.MD5 == "" {
		return nil
	}
	if res.Plan.MD5 != res.MD5 {
		return &MismatchError{Key: res.Plan.Key, Local: res.MD5, Server: res.Plan.MD5}
	}
	res.Verified = true
	return nil
}

// PartPath is where DownloadFile keeps a download to dest until its MD5
// is verified.
func PartPath(dest string) string {
	return filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".stepkit-part")
}

// DownloadFile fetches key into the file dest. Blocks go to a partial file
// beside dest (PartPath) that is renamed to dest only once its MD5 matches
// the plan's. With Options.JournalDir set, an interrupted download resumes
// from the blocks already in the partial file.
func (c *Client) DownloadFile(ctx context.Context, key, dest string, o *TransferOptions) (*DownloadResult, error) {
	if o == nil {
		o = &TransferOptions{}
	}
	c.pruneJournals()
	return retryTransfer(c, ctx, o, func(o *TransferOptions) (*DownloadResult, int64, error) {
		res, err := c.downloadFile(ctx, key, dest, o)
		var got int64
		if res != nil {
			got = res.Received
		}
		return res, got, err
	})
}

func (c *Client) downloadFile(ctx context.Context, key, dest string, o *TransferOptions) (*DownloadResult, error) {
	abs, err := filepath.Abs(dest)
	if err != nil {
		return nil, err
	}
	plan, err := c.FileInfo(ctx, key)
	if err != nil {
		return nil, err
	}
	res := &DownloadResult{Plan: plan, Path: dest}
	part := PartPath(abs)

	var jpath string
	if c.opts.JournalDir != "" {
		jpath = journalPath(c.opts.JournalDir, "download", c.addr, c.Username(), key, abs)
	}
	var j *journal
	var f *os.File
	if jpath != "" && !o.Restart {
		if old := loadJournal(jpath); old != nil {
			h := old.hdr
			fi, serr := os.Stat(part)
			if serr == nil && h.Op == "download" && h.Key == plan.Key && h.Size == plan.Size &&
				h.BlockSize == plan.BlockSize && h.TotalBlock == plan.TotalBlock && h.MD5 == plan.MD5 &&
				fi.Size() == plan.Size {
				if f, err = os.OpenFile(part, os.O_RDWR, 0); err == nil {
					j = old
					res.Resumed = true
				}
			}
			if j == nil {
				old.remove()
			}
		}
	}
	if f == nil {
		f, err = os.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, err
		}
		if err := f.Truncate(plan.Size); err != nil {
			f.Close()
			os.Remove(part)
			return nil, err
		}
		if jpath != "" && plan.TotalBlock > 0 {
			if j, err = createJournal(jpath, journalHeader{Op: "download", Server: c.addr, User: c.Username(),
				Key: plan.Key, Path: abs, Size: plan.Size, BlockSize: plan.BlockSize, TotalBlock: plan.TotalBlock, MD5: plan.MD5}); err != nil {
				f.Close()
				os.Remove(part)
				return nil, err
			}
		}
	}
	discard := func() {
		f.Close()
		os.Remove(part)
		j.remove()
	}

	h := md5.New()
	pw := newPartWriter(f, j, plan, h)
	_, err = c.fetchBlocks(ctx, plan, j, f, pw.put, o, res)
	if perr := pw.close(err != nil); err == nil {
		err = perr
	}
	if err != nil {
		if j == nil {
			discard()
		} else {
			f.Close()
			j.close()
		}
		return res, err
	}
	if err := verifyDownload(res, h); err != nil {
		discard()
		return res, err
	}
	if err := f.Sync(); err != nil {
		discard()
		return res, err
	}
	if err := f.Close(); err != nil {
		os.Remove(part)
		j.remove()
		return res, err
	}
	if err := os.Rename(part, abs); err != nil {
		os.Remove(part)
		j.remove()
		return res, err
	}
	j.remove()
	return res, nil
}

// fetchBlocks downloads the blocks of plan that j has not recorded and
// passes every block to sink in index order, those recorded in j read
// back from f. Blocks that arrive before their turn wait in memory. It
// returns the number of blocks received and records it, the window and
// the peak of requests in flight in res.
func (c *Client) fetchBlocks(ctx context.Context, plan Plan, j *journal, f *os.File, sink func(i int64, b []byte) error, o *TransferOptions, res *DownloadResult) (n int64, err error) {
	window := c.DownloadWindow(plan.BlockSize)
	var peak atomic.Int64
	res.Window = window
	defer func() { res.Received, res.PeakInFlight = n, peak.Load() }()
	// What was on disk before this run; blocks acknowledged during the run
	// reach the sequencer themselves.
	before := make([]bool, plan.TotalBlock)
	var missing int64
	for i := range before {
		before[i] = j.has(int64(i))
		if !before[i] {
			missing++
		}
	}
	conns, release := c.transferConns(ctx, missing, window, c.opts.Conns)
	defer release()
	res.Conns = len(conns)
	// With several connections, the first block goes alone (probe); its
	// answer says whether the others are of use.
	var pr *probe
	if len(conns) > 1 {
		pr = newProbe()
	}
	first := pr // pr is the dealer's; first, the connections'

	// ahead bounds how far the requests handed out may run ahead of the
	// in-order sink.
	ahead := make(chan struct{}, 2*len(conns)*window)
	seq := &sequencer{
		total:   plan.TotalBlock,
		sink:    sink,
		before:  before,
		release: func() { <-ahead },
		load: func(i int64) ([]byte, error) {
			b := make([]byte, spec.BlockLen(plan.Size, plan.BlockSize, i))
			_, err := f.ReadAt(b, i*plan.BlockSize)
			return b, err
		},
	}
	seq.turn.L = &seq.mu
	if err := seq.advance(); err != nil {
		return 0, err
	}
	if o.Progress != nil && missing < plan.TotalBlock {
		o.Progress(plan.Size - missingBytes(plan, before))
	}
	// A plan whose block_size was asked for is followed by DOWNLOAD
	// requests that say which (EXT-7).
	askBS := c.askBlockSize() > 0

	jobs := newRuns(len(conns), 0, window)
	g, gctx := errgroup.WithContext(ctx)
	// A block waiting for its turn gives up when the transfer fails.
	defer context.AfterFunc(gctx, func() { seq.abort(context.Cause(gctx)) })()
	g.Go(func() error {
		defer jobs.close()
		for i := int64(0); i < plan.TotalBlock; i++ {
			if before[i] {
				continue
			}
			select {
			case ahead <- struct{}{}:
			case <-gctx.Done():
				return nil
			}
			if pr != nil {
				pr.start = time.Now()
			}
			if !jobs.send(gctx, job{index: i}) {
				return nil
			}
			if pr != nil {
				one, ok := pr.oneConn(gctx, window, plan.BlockSize, c.connRate)
				if !ok {
					return nil
				}
				if one {
					jobs.only()
					res.Conns = 1
				}
				pr = nil
			}
		}
		return nil
	})
	var mu sync.Mutex
	var received int64
	downReq := spec.NewRequest(spec.OpDownload, spec.TypeFile) // names the operation in errors
	st := stage{
		op:     spec.OpDownload,
		typ:    spec.TypeFile,
		window: window,
		peak:   &peak,
		build: func(jb job, m *spec.Message) *spec.Message {
			m.ResetRequest(spec.OpDownload, spec.TypeFile).
				SetString(spec.FieldKey, plan.Key).
				SetInt(spec.FieldBlockIndex, jb.index)
			if askBS {
				m.SetInt(spec.FieldBlockSize, plan.BlockSize)
			}
			return m
		},
		sent: func(job) {},
		handle: func(jb job, resp *spec.Message) error {
			if err := checkStatus(downReq, resp); err != nil {
				return fmt.Errorf("block %d: %w", jb.index, err)
			}
			if err := checkIndex(spec.OpDownload, resp, jb.index); err != nil {
				return err
			}
			want := spec.BlockLen(plan.Size, plan.BlockSize, jb.index)
			if int64(len(resp.Binary)) != want {
				return &ProtocolError{Op: spec.OpDownload, Type: spec.TypeFile, Response: resp,
					Msg: fmt.Sprintf("block %d has %d bytes, the plan says %d", jb.index, len(resp.Binary), want)}
			}
			if err := seq.put(jb.index, resp.Binary); err != nil {
				return err
			}
			mu.Lock()
			received++
			mu.Unlock()
			if o.Progress != nil {
				o.Progress(want)
			}
			if first != nil {
				first.answered()
			}
			return nil
		},
	}
	for k, cc := range conns {
		g.Go(func() error { return cc.pipeline(gctx, jobs.out[k], st) })
	}
	err = g.Wait()
	if err == nil && seq.next != plan.TotalBlock {
		err = fmt.Errorf("download of %q: %d of %d blocks delivered", plan.Key, seq.next, plan.TotalBlock)
	}
	return received, err
}

// sequencer passes blocks to sink in index order. A connection whose
// block comes before its turn waits with it, the block still in its frame
// buffer, until the blocks before it are passed: it is never copied, and
// since each connection receives its blocks in increasing order, the one
// holding the next block is never the one waiting.
type sequencer struct {
	mu      sync.Mutex
	turn    sync.Cond // broadcast when next moves or the transfer stops
	next    int64
	total   int64
	sink    func(i int64, b []byte) error
	before  []bool                        // blocks already on disk
	load    func(i int64) ([]byte, error) // reads such a block
	release func()                        // called once per block put
	stop    error                         // why waiting blocks give up
}

// put hands over block i once every block before it was handed over.
func (s *sequencer) put(i int64, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < s.next {
		return fmt.Errorf("block %d delivered twice", i)
	}
	for i != s.next && s.stop == nil {
		s.turn.Wait()
	}
	if s.stop != nil {
		return s.stop
	}
	defer s.turn.Broadcast()
	if err := s.sink(i, b); err != nil {
		return err
	}
	s.release()
	s.next++
	return s.advanceLocked()
}

// abort wakes the blocks waiting for their turn, with err: the transfer
// ended without the blocks they wait for.
func (s *sequencer) abort(err error) {
	s.mu.Lock()
	if s.stop == nil {
		s.stop = err
	}
	s.turn.Broadcast()
	s.mu.Unlock()
}

func (s *sequencer) advance() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.advanceLocked()
}

// advanceLocked passes the blocks already on disk that come next.
func (s *sequencer) advanceLocked() error {
	for s.next < s.total && s.before[s.next] {
		b, err := s.load(s.next)
		if err != nil {
			return fmt.Errorf("read back block %d: %w", s.next, err)
		}
		if err := s.sink(s.next, b); err != nil {
			return err
		}
		s.next++
	}
	return nil
}

// partWriter writes the blocks of a download, in index order, to the
// partial file a chunk of whole blocks at a time, records them in the
// journal once they are written, and hashes the chunks on its own
// goroutine beside the network: one write system call per chunk rather
// than per block, and no block read back to be hashed.
type partWriter struct {
	f     *os.File
	j     *journal
	h     hash.Hash
	cur   []byte // the chunk being filled, blocks [first, next)
	first int64
	next  int64
	off   int64 // where cur goes in f
	dirty int64 // bytes written since writeback was last started
	made  int   // chunks allocated
	free  chan []byte
	full  chan []byte // to the hasher
	done  chan struct{}
}

// partChunk is about how many bytes a partWriter writes at once: with
// blocks of 256 KiB, a chunk of a single block costs more than reading
// the file back did.
const partChunk = 1 << 20

// partChunks is how many chunks a partWriter uses: one being filled, the
// others waiting for or under the hash. The hash shares the cores with the
// network and the disk (and, on one machine, with the server): a queue
// that holds what arrives over a few of the scheduler's time slices keeps
// every core busy, where one of 3 MiB left one idle now and then.
const partChunks = 16

func newPartWriter(f *os.File, j *journal, plan Plan, h hash.Hash) *partWriter {
	w := &partWriter{f: f, j: j, h: h, free: make(chan []byte, partChunks), full: make(chan []byte, partChunks),
		done: make(chan struct{})}
	size := max(1, partChunk/max(plan.BlockSize, 1)) * plan.BlockSize
	w.cur = make([]byte, 0, min(size, max(plan.Size, 1)))
	w.made = 1
	go func() {
		defer close(w.done)
		for b := range w.full {
			w.h.Write(b)
			w.free <- b[:0]
		}
	}()
	return w
}

// put takes block i, the block after the last one put.
func (w *partWriter) put(i int64, b []byte) error {
	if len(w.cur)+len(b) > cap(w.cur) {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if len(w.cur) == 0 {
		w.first = i
	}
	w.cur = append(w.cur, b...)
	w.next = i + 1
	if len(w.cur) == cap(w.cur) {
		return w.flush()
	}
	return nil
}

// flush writes the chunk being filled, records its blocks and hands it to
// the hasher.
func (w *partWriter) flush() error {
	if len(w.cur) == 0 {
		return nil
	}
	if _, err := w.f.WriteAt(w.cur, w.off); err != nil {
		return fmt.Errorf("write blocks %d to %d: %w", w.first, w.next-1, err)
	}
	if w.dirty += int64(len(w.cur)); w.dirty >= writebackEvery {
		w.dirty = 0
		startWriteback(w.f)
	}
	for i := w.first; i < w.next; i++ {
		if err := w.j.ack(i); err != nil {
			return err
		}
	}
	w.off += int64(len(w.cur))
	w.full <- w.cur
	select {
	case w.cur = <-w.free:
	default:
		if w.made < partChunks {
			w.made++
			w.cur = make([]byte, 0, cap(w.cur))
		} else {
			w.cur = <-w.free
		}
	}
	return nil
}

// close writes what is left and waits for the hash of everything
// written. The blocks of a transfer that failed are written and recorded
// too, for a resume, but a failure to do so is not its error.
func (w *partWriter) close(failed bool) error {
	err := w.flush()
	// The disk writes what is left while the hash ends: the fsync that
	// completes the download then has little to wait for.
	if err == nil && w.dirty > 0 {
		startWriteback(w.f)
	}
	close(w.full)
	<-w.done
	if failed {
		return nil
	}
	return err
}

// missingBytes is the size of the blocks not yet on disk.
func missingBytes(plan Plan, before []bool) int64 {
	var n int64
	for i, ok := range before {
		if !ok {
			n += spec.BlockLen(plan.Size, plan.BlockSize, int64(i))
		}
	}
	return n
}
