package refserver

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/stepkit/stepkit/refserver/storage"
	"github.com/stepkit/stepkit/spec"
)

// Defaults applied to zero Config fields.
const (
	DefaultReadTimeout   = 30 * time.Second
	DefaultIdleTimeout   = 5 * time.Minute
	DefaultWriteTimeout  = 30 * time.Second
	DefaultMaxConns      = 1024
	DefaultTokenTTL      = 24 * time.Hour
	DefaultUploadMaxAge  = 24 * time.Hour
	DefaultSweepInterval = 10 * time.Minute
)

// Config is the configuration of a Server. Only Root (or Storage) is
// required; every zero field takes the default named in its comment.
type Config struct {
	// Root is the storage folder. It holds data/USER/KEY (DATA documents),
	// file/USER/KEY (completed files), meta/USER/KEY (their size and MD5)
	// and tmp/ (uploads in progress). It is created if missing.
	Root string
	// Storage, if set, is where the server keeps its data instead of the
	// folder Root (which is then ignored). The server closes it when it
	// stops.
	Storage storage.Backend

	// BlockSize is the block_size of new upload plans and of download
	// plans (default spec.DefaultBlockSize, at most spec.MaxBlockSize).
	BlockSize int
	// MaxFileSize is the largest size a FILE SAVE may announce (default
	// spec.MaxFileSize); larger ones get 413.
	MaxFileSize int64
	// Limits bounds the frames the server reads (spec defaults when zero).
	// A header announcing more is answered with ERROR/413 and the
	// connection is closed. MaxBinary is raised to BlockSize if smaller.
	Limits spec.Limits

	// ReadTimeout bounds the time to receive the rest of a frame once its
	// first byte has arrived (default 30s).
	ReadTimeout time.Duration
	// IdleTimeout bounds the wait for the next request (default 5m).
	IdleTimeout time.Duration
	// WriteTimeout bounds the sending of one response (default 30s).
	WriteTimeout time.Duration
	// MaxConns caps concurrent connections (default 1024; negative: no
	// cap). A connection over the cap gets one ERROR/503 frame and is
	// closed.
	MaxConns int
	// MaxConnsPerIP, if positive, caps the concurrent connections of one
	// remote address. A connection over it gets one ERROR/503 frame and is
	// closed. Zero means no cap: a class behind one NAT address shares it.
	MaxConnsPerIP int
	// MaxFrameMemory bounds the bytes of frames in flight that all
	// connections hold together beyond 64 KiB each (default 256 MiB,
	// raised to one largest frame if smaller). A connection that would
	// pass it waits for others to release theirs, within its frame's
	// deadline.
	MaxFrameMemory int64
	// MinFrameRate, if positive, is the rate in bytes per second at which
	// a frame must keep arriving: its deadline is ReadTimeout after its
	// first byte plus the time its bytes so far take at this rate. Zero
	// leaves ReadTimeout as the deadline of every frame.
	MinFrameRate int64

	// Accounts switches the server to account mode: passwords are checked
	// against its hashes and tokens are signed with its secret. Nil is
	// course mode (password = MD5 hex of the username, course tokens that
	// never expire).
	Accounts *Accounts
	// TokenTTL is how long an account-mode token stays valid (default 24h).
	TokenTTL time.Duration

	// Quota is the number of bytes each user may store: completed and
	// planned files plus DATA documents. Zero means no quota. A request
	// that would exceed it gets 413.
	Quota int64
	// RateLimit is the number of requests per second each user may make
	// (tokens of a golang.org/x/time/rate bucket of RateBurst, default
	// max(1, RateLimit)), LOGIN attempts naming the user included. Zero
	// means no limit. Excess requests get 429.
	RateLimit float64
	RateBurst int

	// UploadMaxAge is the age after which an upload that received no
	// block is removed (default 24h; negative: never). SweepInterval is
	// how often uploads are checked (default min(10m, UploadMaxAge/2)).
	UploadMaxAge  time.Duration
	SweepInterval time.Duration
	// FullDiskUploadMaxAge is the age after which an upload that received
	// no block is removed when a FILE SAVE finds the storage full, to make
	// room for it (default 10m; negative: never).
	FullDiskUploadMaxAge time.Duration
	// SyncBlocks makes every UPLOAD fsync its block before answering, so
	// that acknowledged blocks survive a power failure, not only a crash
	// of the server. Completed files are always fsynced.
	SyncBlocks bool

	// Logger receives the server's structured logs (default: discarded).
	// Every line about a connection carries its id as "conn".
	Logger *slog.Logger
	// Metrics, if set, is updated as the server runs.
	Metrics *Metrics
	// Now is the clock used for tokens and upload ages (default time.Now).
	Now func() time.Time
}

// withDefaults returns c with its zero fields set, or an error if a field
// is out of range.
func (c Config) withDefaults() (Config, error) {
	if c.Root == "" && c.Storage == nil {
		return c, errors.New("refserver: Config.Root is required")
	}
	if c.BlockSize == 0 {
		c.BlockSize = spec.DefaultBlockSize
	}
	if c.BlockSize < 1 || c.BlockSize > spec.MaxBlockSize {
		return c, fmt.Errorf("refserver: block size %d is outside 1..%d", c.BlockSize, spec.MaxBlockSize)
	}
	if c.MaxFileSize == 0 {
		c.MaxFileSize = spec.MaxFileSize
	}
	if c.MaxFileSize < 0 {
		return c, fmt.Errorf("refserver: negative max file size %d", c.MaxFileSize)
	}
	if c.Limits.MaxJSON == 0 {
		c.Limits.MaxJSON = spec.DefaultMaxJSON
	}
	if c.Limits.MaxBinary == 0 {
		c.Limits.MaxBinary = spec.DefaultMaxBinary
	}
	if c.Limits.MaxBinary < uint32(c.BlockSize) {
		c.Limits.MaxBinary = uint32(c.BlockSize)
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerIP < 0 {
		return c, fmt.Errorf("refserver: negative connections per address %d", c.MaxConnsPerIP)
	}
	if c.MaxFrameMemory == 0 {
		c.MaxFrameMemory = DefaultMaxFrameMemory
	}
	if c.MaxFrameMemory < 0 {
		return c, fmt.Errorf("refserver: negative frame memory %d", c.MaxFrameMemory)
	}
	if frame := int64(c.Limits.MaxJSON) + int64(c.Limits.MaxBinary); c.MaxFrameMemory < frame {
		c.MaxFrameMemory = frame
	}
	if c.MinFrameRate < 0 {
		return c, fmt.Errorf("refserver: negative minimum frame rate %d", c.MinFrameRate)
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.Quota < 0 {
		return c, fmt.Errorf("refserver: negative quota %d", c.Quota)
	}
	if c.RateLimit < 0 {
		return c, fmt.Errorf("refserver: negative rate limit %v", c.RateLimit)
	}
	if c.RateLimit > 0 && c.RateBurst <= 0 {
		c.RateBurst = max(1, int(c.RateLimit))
	}
	if c.UploadMaxAge == 0 {
		c.UploadMaxAge = DefaultUploadMaxAge
	}
	if c.FullDiskUploadMaxAge == 0 {
		c.FullDiskUploadMaxAge = DefaultFullDiskUploadMaxAge
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = DefaultSweepInterval
		if c.UploadMaxAge > 0 && c.UploadMaxAge/2 < c.SweepInterval {
			c.SweepInterval = max(c.UploadMaxAge/2, time.Millisecond)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}
