package conformance

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// Defaults for Config.
const (
	DefaultReadTimeout = 2 * time.Second
	DefaultCaseTimeout = 30 * time.Second
)

// Config says which server to check and how.
type Config struct {
	// Target is the server's host:port.
	Target string
	// ReadTimeout bounds every read of a response (and every connect). A
	// server that stays silent longer fails the case that waited.
	ReadTimeout time.Duration
	// CaseTimeout bounds a whole case, backing up ReadTimeout.
	CaseTimeout time.Duration
	// User and Password log in where a case needs a user. Empty: each case
	// logs in as a new random user under the course login rule (password =
	// MD5 hex of the username), which a course-mode server accepts.
	User, Password string
	// User2 and Password2 are the second user of the isolation cases. Empty:
	// a random user under the course login rule.
	User2, Password2 string
	// MaxFileSize, when not zero, is the largest size the server is known
	// to accept; FILE-SAVE-10 sends one byte more. Zero: 2^32 + 1, one past
	// the largest size the course document allows.
	MaxFileSize int64
	// BlockSize, when not zero, is the block_size the server is configured
	// to plan with; FILE-SAVE-11 then expects it instead of 20480, so that
	// a server deliberately configured otherwise is not marked down.
	BlockSize int64
	// TokenTTL, when not zero, is how long the server's tokens live;
	// TOKEN-7 then waits that long and expects the token refused.
	TokenTTL time.Duration
	// IdleTimeout, when not zero, is how long the server lets a connection
	// idle or stall mid-frame; ROBUST-5 then expects it closed after that.
	IdleTimeout time.Duration
	// MaxConns, when not zero, is the server's connection limit; EXT-3 then
	// opens one connection more and expects an ERROR/503 frame.
	MaxConns int
	// Quota, when not zero, is the server's per-user quota in bytes; EXT-1
	// then plans a file one byte larger and expects 413.
	Quota int64
}

func (c Config) withDefaults() Config {
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.CaseTimeout <= 0 {
		c.CaseTimeout = DefaultCaseTimeout
	}
	return c
}

// Validate checks the configuration before anything runs.
func (c Config) Validate() error {
	if c.Target == "" {
		return errors.New("no target: give host:port")
	}
	if _, _, err := net.SplitHostPort(c.Target); err != nil {
		return fmt.Errorf("target %q: %w", c.Target, err)
	}
	if (c.User == "") != (c.Password == "") {
		return errors.New("--user and --password go together")
	}
	if (c.User2 == "") != (c.Password2 == "") {
		return errors.New("--user2 and --password2 go together")
	}
	if c.BlockSize < 0 || c.BlockSize > spec.MaxBlockSize {
		return fmt.Errorf("block size %d is outside 1..%d", c.BlockSize, spec.MaxBlockSize)
	}
	if c.User != "" && c.User2 != "" && c.User == c.User2 {
		return errors.New("--user2 must name another user than --user")
	}
	return nil
}

// courseLogin reports whether users are made up under the course rule.
func (c Config) courseLogin() bool { return c.User == "" }

// Creds are a username and password.
type Creds struct {
	User, Password string
	// Course is set when the password follows the course login rule.
	Course bool
}

// coursePassword is the course login rule: the lower-case hex MD5 of the
// username.
func coursePassword(user string) string {
	sum := md5.Sum([]byte(user))
	return hex.EncodeToString(sum[:])
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("conformance: reading random bytes: %v", err))
	}
	return hex.EncodeToString(b)
}

// randomUser is a fresh user under the course login rule. The name is
// ASCII letters and digits only, which every server accepts.
func randomUser() Creds {
	u := "conf" + randomHex(5)
	return Creds{User: u, Password: coursePassword(u), Course: true}
}
