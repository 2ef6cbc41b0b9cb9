// Package refclient is a STEP client: login, DATA documents and FILE
// transfers with pipelined blocks, MD5 verification and resume.
//
// A Client owns one TCP connection. Requests on it are answered in order,
// so responses are paired with requests by their position on the
// connection, never by the response's operation (the course server answers
// FILE DELETE with operation "GET"). Transfers follow the server's plan
// (block_size, total_block) and keep several blocks in flight where that is
// safe: uploads pipeline blocks only on servers that advertise it (EXT-6),
// since the course server misreads a block that arrives in pieces with the
// next request behind it.
package refclient

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// Defaults for Options fields left zero.
const (
	DefaultDialTimeout  = 10 * time.Second
	DefaultReplyTimeout = 30 * time.Second
	DefaultEmptyTimeout = 3 * time.Second
	DefaultWindow       = 16
	// DefaultBlockSize is the block_size asked of a server that lets the
	// client choose (EXT-7): per-block costs are then small next to the
	// MD5 of the block, and a connection's buffers stay small.
	DefaultBlockSize = 256 << 10
	// drainTimeout bounds the wait for each answer still due after a
	// server refused a pipelined block: a server that answered the refusal
	// promptly answers what follows as promptly, or has lost step.
	drainTimeout = 2 * time.Second
)

// FieldPipelining is the LOGIN response field by which a server advertises
// that it answers pipelined requests however TCP segments them (EXT-6).
const FieldPipelining = spec.FieldPipelining

// Options configure a Client. The zero value is usable.
type Options struct {
	// DialTimeout bounds establishing the TCP connection.
	DialTimeout time.Duration
	// ReplyTimeout bounds the wait for each response. Servers that crash a
	// handler stay silent without closing, so every read has a deadline.
	ReplyTimeout time.Duration
	// EmptyTimeout bounds the wait for the plan of a 0-byte upload: the
	// course server never answers FILE SAVE with size 0.
	EmptyTimeout time.Duration
	// Window is the number of block requests in flight on one connection.
	// 0 (automatic, the default) keeps DefaultWindow DOWNLOAD requests in
	// flight, but UPLOAD blocks only when the server advertised pipelining
	// in the response to this client's LOGIN (EXT-6), and one at a time
	// otherwise (CLIENT-4): the course server takes bytes of the next
	// request into a block that arrives in pieces (STEP.md A.23). A
	// Window of 1 or more is used as given for both directions; 1 means
	// strictly one request at a time.
	Window int
	// Conns is the most connections a transfer uses. Extra connections
	// are dialled for the transfer and reuse the token. A file's first
	// block goes alone; the others go over every connection only if its
	// answer took too long for one connection's window to carry the file
	// as fast as it is hashed, and over the first connection otherwise
	// (see probe). An upload to a server that did not advertise pipelining
	// uses one connection (STEP.md A.21). Some course servers serve one
	// connection at a time, so the default is 1.
	Conns int
	// BlockSize is the block_size asked of a server that advertised
	// max_block_size at LOGIN (STEP.md EXT-7), in FILE SAVE, FILE GET and
	// FILE DOWNLOAD: 0 (the default) asks for DefaultBlockSize (for an
	// upload, less when the file would have fewer than DefaultWindow
	// blocks, down to the course's 20480), a
	// negative value asks for nothing, so plans keep the server's own
	// size. The request never exceeds the advertised maximum nor
	// Limits.MaxBinary. Other servers are never asked.
	BlockSize int64
	// Limits bound the frames the client accepts.
	Limits spec.Limits
	// JournalDir holds the resume journals. Empty disables resume.
	JournalDir string
	// JournalMaxAge is the age after which a journal left behind by a
	// transfer that never finished is removed, when a transfer starts
	// (default DefaultJournalMaxAge; negative: never).
	JournalMaxAge time.Duration
	// RateLimitRetries is how many times in a row a request refused with
	// 429 (the server's rate limit, EXT-2) is sent again, after waiting
	// RateLimitBackoff, doubled at each retry up to MaxRateLimitBackoff.
	// A transfer with a journal resumes after such a wait, and counts only
	// the retries that made no progress. Default DefaultRateLimitRetries;
	// negative: none.
	RateLimitRetries int
	RateLimitBackoff time.Duration
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.DialTimeout <= 0 {
		r.DialTimeout = DefaultDialTimeout
	}
	if r.ReplyTimeout <= 0 {
		r.ReplyTimeout = DefaultReplyTimeout
	}
	if r.EmptyTimeout <= 0 {
		r.EmptyTimeout = DefaultEmptyTimeout
	}
	if r.Window < 0 {
		r.Window = 0
	}
	if r.Conns <= 0 {
		r.Conns = 1
	}
	if r.JournalMaxAge == 0 {
		r.JournalMaxAge = DefaultJournalMaxAge
	}
	if r.RateLimitRetries == 0 {
		r.RateLimitRetries = DefaultRateLimitRetries
	}
	if r.RateLimitBackoff <= 0 {
		r.RateLimitBackoff = DefaultRateLimitBackoff
	}
	return r
}

// Client is one connection to a STEP server. Its methods may be called from
// several goroutines; requests are then sent one after another.
type Client struct {
	addr string
	opts Options

	mu     sync.Mutex // serialises exchanges on conn
	connMu sync.Mutex // guards replacing conn against Close
	conn   net.Conn
	r      *spec.Reader
	w      *spec.Writer

	// broken is set once the connection is out of step (a response was
	// not read to its end): every later exchange fails with it.
	broken error

	// connRate is the rate beyond which one connection carries a file
	// (oneConnRate; lowered by tests that need one connection whatever
	// the machine's speed).
	connRate float64

	tokMu      sync.Mutex
	token      string
	username   string
	pipelining bool  // the server advertised pipelining at login (EXT-6)
	maxBlock   int64 // the server's max_block_size at login (EXT-7), 0 if none
	upWindow   int64 // the server's upload_window at login (EXT-8), 0 if none
}

// Dial connects to the STEP server at addr (host:port).
func Dial(ctx context.Context, addr string, opts *Options) (*Client, error) {
	o := opts.withDefaults()
	d := net.Dialer{Timeout: o.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return newClient(addr, o, conn), nil
}

// NewClient wraps an established connection.
func NewClient(conn net.Conn, opts *Options) *Client {
	return newClient(conn.RemoteAddr().String(), opts.withDefaults(), conn)
}

func newClient(addr string, o Options, conn net.Conn) *Client {
	return &Client{addr: addr, opts: o, conn: conn, r: spec.NewReader(conn, o.Limits), w: spec.NewWriter(conn),
		connRate: oneConnRate}
}

// Addr is the server address the client was dialled to.
func (c *Client) Addr() string { return c.addr }

// Options returns the client's options with defaults filled in. Window
// stays 0 when it is automatic.
func (c *Client) Options() Options { return c.opts }

// Pipelining reports whether the server advertised pipelining (EXT-6) in
// its answer to this client's last successful LOGIN. A client that was
// given a token (SetToken) and never logged in does not know.
func (c *Client) Pipelining() bool {
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	return c.pipelining
}

// UploadWindow is the number of UPLOAD blocks of blockSize bytes a
// transfer keeps in flight on each connection: Options.Window when set,
// else AutoWindow on a server that advertised pipelining and 1 on any
// other (CLIENT-4).
func (c *Client) UploadWindow(blockSize int64) int {
	switch {
	case c.opts.Window > 0:
		return c.opts.Window
	case c.Pipelining():
		w := AutoWindow(blockSize)
		if need := c.gatherWindow(blockSize); need > w {
			// The server stores the blocks of such a window faster:
			// see EXT-8.
			w = need
		}
		return w
	}
	return 1
}

// maxGatherWindow bounds the blocks an automatic window keeps in flight
// to reach the server's upload_window.
const maxGatherWindow = 1024

// gatherWindow is the window of blocks of blockSize bytes that keeps the
// upload_window the server advertised (EXT-8) in flight, 0 if none does.
func (c *Client) gatherWindow(blockSize int64) int {
	c.tokMu.Lock()
	uw := c.upWindow
	c.tokMu.Unlock()
	if uw <= 0 || blockSize <= 0 {
		return 0
	}
	if n := (uw + blockSize - 1) / blockSize; n <= maxGatherWindow {
		return int(n)
	}
	return 0
}

// UploadGathers reports whether an upload with window blocks of blockSize
// bytes in flight on each connection keeps the upload_window the server
// advertised (EXT-8): its UPLOADs then say so, and the server may answer
// its blocks only once a larger run of them arrived.
func (c *Client) UploadGathers(window int, blockSize int64) bool {
	c.tokMu.Lock()
	uw := c.upWindow
	c.tokMu.Unlock()
	return uw > 0 && int64(window)*blockSize >= uw
}

// windowBytes is how much of a file an automatic window keeps in flight
// on a server that advertised pipelining. Sixteen blocks of 20480 bytes
// drain faster than either side is scheduled again on a busy machine,
// and the transfer stalls: on a 2-core VM a download of 20480-byte blocks
// ran 30% faster with 4 MiB in flight than with 320 KiB.
const windowBytes = 4 << 20

// maxAutoWindow bounds an automatic window of small blocks.
const maxAutoWindow = 256

// AutoWindow is the window of blocks of blockSize bytes that an automatic
// window keeps in flight on a server that advertised pipelining: about
// 4 MiB of them, DefaultWindow at least.
func AutoWindow(blockSize int64) int {
	if blockSize <= 0 {
		return DefaultWindow
	}
	return int(min(max(windowBytes/blockSize, DefaultWindow), maxAutoWindow))
}

// MaxBlockSize is the max_block_size the server advertised (EXT-7) in its
// answer to this client's last successful LOGIN, 0 if none.
func (c *Client) MaxBlockSize() int64 {
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	return c.maxBlock
}

// askBlockSize is the block_size FILE SAVE, FILE GET and FILE DOWNLOAD
// ask for, 0 when they ask for none (EXT-7).
func (c *Client) askBlockSize() int64 {
	adv := c.MaxBlockSize()
	if adv <= 0 || c.opts.BlockSize < 0 {
		return 0
	}
	want := c.opts.BlockSize
	if want == 0 {
		want = DefaultBlockSize
	}
	lim := int64(c.opts.Limits.MaxBinary)
	if lim == 0 {
		lim = spec.DefaultMaxBinary
	}
	return min(want, adv, lim)
}

// DownloadWindow is the number of DOWNLOAD requests for blocks of
// blockSize bytes a transfer keeps in flight on each connection:
// Options.Window when set, else AutoWindow on a server that advertised
// pipelining, and DefaultWindow on any other.
//
// Pipelining them is safe with the course server although it over-reads
// (A.23): its reader asks for a whole part (8-byte header, JSON, binary)
// in every recv and keeps what comes, so it takes bytes of the next frame
// only when a part of the current one reached it in pieces. A DOWNLOAD
// request has no binary and is a few hundred bytes written with one write
// on a connection without Nagle's delay: it leaves in one segment and is
// read whole. Only requests that wait in the kernel together (behind a
// full congestion window) can be merged and cut at a segment boundary; if
// the later segment then comes late (a loss), the course server loses
// step and the download fails with an error (no answer, or the connection
// closed), never with wrong data: block lengths and the MD5 are checked.
// Window 1 rules that out too.
func (c *Client) DownloadWindow(blockSize int64) int {
	switch {
	case c.opts.Window > 0:
		return c.opts.Window
	case c.Pipelining():
		return AutoWindow(blockSize)
	}
	return DefaultWindow
}

// Token is the token of the last successful login ("" before). It is
// opaque: the client only echoes it.
func (c *Client) Token() string {
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	return c.token
}

// SetToken makes the client use a token obtained elsewhere.
func (c *Client) SetToken(tok string) {
	c.tokMu.Lock()
	c.token = tok
	c.tokMu.Unlock()
}

// Username is the name of the last successful login.
func (c *Client) Username() string {
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	return c.username
}

// Close closes the connection without saying BYE.
func (c *Client) Close() error {
	c.connMu.Lock()
	conn := c.conn
	c.connMu.Unlock()
	return conn.Close()
}

// reconnect replaces a connection that is out of step with a new one to
// the same address. The token stays: it is valid on every connection.
func (c *Client) reconnect(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := net.Dialer{Timeout: c.opts.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return fmt.Errorf("reconnect to %s: %w", c.addr, err)
	}
	c.connMu.Lock()
	old := c.conn
	c.conn, c.r, c.w, c.broken = conn, spec.NewReader(conn, c.opts.Limits), spec.NewWriter(conn), nil
	c.connMu.Unlock()
	_ = old.Close()
	return nil
}

// CoursePassword is the course's login rule: the lower-case hex MD5 of the
// username.
func CoursePassword(username string) string {
	sum := md5.Sum([]byte(username))
	return hex.EncodeToString(sum[:])
}

// Login logs in with the course rule (password = MD5 of the username) when
// password is empty, with password otherwise, and keeps the token.
func (c *Client) Login(ctx context.Context, username, password string) (string, error) {
	if password == "" {
		password = CoursePassword(username)
	}
	req := spec.NewRequest(spec.OpLogin, spec.TypeAuth).
		Set(spec.FieldUsername, username).
		Set(spec.FieldPassword, password)
	resp, err := c.Do(ctx, req)
	if err != nil {
		return "", err
	}
	tok, err := resp.Token()
	if err != nil {
		return "", &ProtocolError{Op: spec.OpLogin, Type: spec.TypeAuth, Msg: "login response has no token string", Response: resp}
	}
	var adv bool // anything but JSON true (absent, "yes", 1) is no
	if raw, ok := resp.Raw(FieldPipelining); ok {
		_ = json.Unmarshal(raw, &adv)
	}
	var maxBlock int64 // anything but a positive integer is none
	if n, err := resp.Int(spec.FieldMaxBlockSize); err == nil && n > 0 {
		maxBlock = n
	}
	var upWindow int64 // anything but a positive integer is none
	if n, err := resp.Int(spec.FieldUploadWindow); err == nil && n > 0 && adv {
		upWindow = n
	}
	c.tokMu.Lock()
	c.token, c.username = tok, username
	c.pipelining, c.maxBlock, c.upWindow = adv, maxBlock, upWindow
	c.tokMu.Unlock()
	return tok, nil
}

// Bye sends BYE and closes the connection. It does not wait for an answer:
// the course server never sends one.
func (c *Client) Bye() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return nil // already closed
	}
	req := spec.NewRequest(spec.OpBye, spec.TypeAuth)
	if tok := c.Token(); tok != "" {
		req.Set(spec.FieldToken, tok)
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.opts.ReplyTimeout))
	werr := c.w.WriteMessage(req)
	cerr := c.conn.Close()
	if werr != nil {
		return fmt.Errorf("BYE: %w", werr)
	}
	return cerr
}

// Do sends req (with the token added when the client has one and req does
// not) and returns its response. A response whose status is not 200 is
// returned together with a *StatusError.
func (c *Client) Do(ctx context.Context, req *spec.Message) (*spec.Message, error) {
	return c.do(ctx, req, c.opts.ReplyTimeout)
}

func (c *Client) do(ctx context.Context, req *spec.Message, timeout time.Duration) (*spec.Message, error) {
	for retry := 0; ; retry++ {
		resp, err := c.doOnce(ctx, req, timeout)
		if !c.retryRateLimited(ctx, err, retry) {
			return resp, err
		}
	}
}

func (c *Client) doOnce(ctx context.Context, req *spec.Message, timeout time.Duration) (*spec.Message, error) {
	c.prepare(req)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return nil, c.broken
	}
	stop := c.watch(ctx)
	defer stop()
	if err := c.write(ctx, req, timeout); err != nil {
		c.breakConn(err)
		return nil, c.ctxErr(ctx, err)
	}
	resp, err := c.read(ctx, req, timeout)
	if err != nil {
		c.breakConn(err)
		return nil, c.ctxErr(ctx, err)
	}
	resp.Binary = append([]byte(nil), resp.Binary...)
	return resp, checkStatus(req, resp)
}

// Broken returns the error that put the connection out of step, or nil
// while it is usable.
func (c *Client) Broken() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broken
}

// breakConn records that responses can no longer be paired with requests
// and closes the connection. Called with c.mu held.
func (c *Client) breakConn(cause error) {
	if c.broken == nil {
		c.broken = fmt.Errorf("connection to %s is unusable after an earlier error: %w", c.addr, cause)
		_ = c.conn.Close()
	}
}

// prepare adds the token to requests that need one.
func (c *Client) prepare(req *spec.Message) {
	if req.Operation() == spec.OpLogin || req.Has(spec.FieldToken) {
		return
	}
	if tok := c.Token(); tok != "" {
		req.SetString(spec.FieldToken, tok)
	}
}

// watch makes the connection's blocked calls return when ctx ends.
func (c *Client) watch(ctx context.Context) (stop func() bool) {
	conn := c.conn // called with c.mu held; conn outlives a reconnect
	return context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
}

func (c *Client) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

func (c *Client) write(ctx context.Context, req *spec.Message, timeout time.Duration) error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("%s %s: %w", req.Type(), req.Operation(), err)
	}
	if ctx.Err() != nil { // watch may have fired before the deadline was set
		return ctx.Err()
	}
	// One vectored write: a block is sent from where it is, not copied.
	if err := c.w.WriteMessageBuffers(req); err != nil {
		return fmt.Errorf("%s %s: send to %s: %w", req.Type(), req.Operation(), c.addr, err)
	}
	return nil
}

// writeAll writes reqs with one vectored write.
func (c *Client) writeAll(ctx context.Context, reqs []*spec.Message, timeout time.Duration) error {
	if len(reqs) == 1 {
		return c.write(ctx, reqs[0], timeout)
	}
	first := reqs[0]
	if err := c.conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("%s %s: %w", first.Type(), first.Operation(), err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := c.w.WriteMessagesBuffers(reqs...); err != nil {
		return fmt.Errorf("%s %s: send %d requests to %s: %w", first.Type(), first.Operation(), len(reqs), c.addr, err)
	}
	return nil
}

// read reads the response to req. Its Binary aliases the reader's buffer.
func (c *Client) read(ctx context.Context, req *spec.Message, timeout time.Duration) (*spec.Message, error) {
	return c.readInto(ctx, req, timeout, nil)
}

// readInto is read parsing into m, reused, when m is not nil.
func (c *Client) readInto(ctx context.Context, req *spec.Message, timeout time.Duration, m *spec.Message) (*spec.Message, error) {
	if err := c.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Type(), req.Operation(), err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if m == nil {
		m = spec.NewMessage()
	}
	resp, err := c.r.ReadMessageInto(m)
	if err == nil {
		return resp, nil
	}
	var fe *spec.FrameError
	if errors.As(err, &fe) && fe.Recovered != nil {
		// The server counted characters, not bytes; the frame is intact.
		return fe.Recovered, nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
		return nil, &NoResponseError{Op: req.Operation(), Type: req.Type(), Addr: c.addr, After: timeout}
	}
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s %s: %s closed the connection without answering: %w", req.Type(), req.Operation(), c.addr, ErrConnClosed)
	}
	return nil, fmt.Errorf("%s %s: read response from %s: %w", req.Type(), req.Operation(), c.addr, err)
}

// checkStatus turns a non-200 response into a *StatusError.
func checkStatus(req, resp *spec.Message) error {
	st, ok := resp.Status()
	if !ok {
		return &ProtocolError{Op: req.Operation(), Type: req.Type(), Msg: "response has no integer status", Response: resp}
	}
	if st != spec.StatusOK {
		return &StatusError{Op: req.Operation(), Type: req.Type(), Status: st, Message: resp.StatusMsg(), Response: resp}
	}
	return nil
}
