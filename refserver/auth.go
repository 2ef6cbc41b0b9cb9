package refserver

import (
	"bufio"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// CourseSalt is the fixed salt of the course's token recipe. It is public:
// course-mode tokens prove nothing beyond what the course login rule (the
// password is the MD5 of the username) already gives away.
const CourseSalt = "kjh20)*(1"

// tokenTimeLayout is the login time inside a token, in local time.
const tokenTimeLayout = "20060102150405"

// TokenUser is the user name a token carries and the storage folder of a
// user: the username with every "." replaced by "_", since the token's
// parts are separated by dots.
func TokenUser(username string) string { return strings.ReplaceAll(username, ".", "_") }

// CourseToken builds the course's token for username at time t:
// base64(USER.TIME.login.hex(md5(USER.TIME.login + CourseSalt))).
func CourseToken(username string, t time.Time) string {
	head := TokenUser(username) + "." + t.Format(tokenTimeLayout) + ".login"
	sum := md5.Sum([]byte(head + CourseSalt))
	return base64.StdEncoding.EncodeToString([]byte(head + "." + hex.EncodeToString(sum[:])))
}

// CoursePassword is the password the course login rule expects: the
// lower-case hex MD5 of the username.
func CoursePassword(username string) string {
	sum := md5.Sum([]byte(username))
	return hex.EncodeToString(sum[:])
}

// Accounts holds the users of account mode and the secret that signs
// their tokens.
type Accounts struct {
	hashes map[string][]byte // username -> bcrypt hash
	secret []byte
	// dummy is compared against when a username is unknown, so that the
	// answer takes as long as for a known one: it has the highest cost of
	// the users' hashes.
	dummy []byte
}

// NewAccounts returns Accounts for the given username -> bcrypt hash map.
// An empty secret is replaced by 32 random bytes, so that tokens do not
// survive a restart. Two usernames that share a storage folder (such as
// "a.b" and "a_b") or an unusable username are refused.
func NewAccounts(hashes map[string]string, secret []byte) (*Accounts, error) {
	a := &Accounts{hashes: make(map[string][]byte, len(hashes))}
	cost := bcrypt.MinCost
	folders := make(map[string]string, len(hashes))
	for user, h := range hashes {
		if err := checkName(TokenUser(user)); err != nil {
			return nil, fmt.Errorf("user %q: %w", user, err)
		}
		if other, ok := folders[TokenUser(user)]; ok {
			return nil, fmt.Errorf("users %q and %q would share the folder %q", other, user, TokenUser(user))
		}
		c, err := bcrypt.Cost([]byte(h))
		if err != nil {
			return nil, fmt.Errorf("user %q: not a bcrypt hash: %w", user, err)
		}
		cost = max(cost, c)
		folders[TokenUser(user)] = user
		a.hashes[user] = []byte(h)
	}
	if len(secret) == 0 {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, fmt.Errorf("generate token secret: %w", err)
		}
	}
	a.secret = append([]byte(nil), secret...)
	if len(hashes) == 0 {
		cost = bcrypt.DefaultCost
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("no such user"), cost)
	if err != nil {
		return nil, fmt.Errorf("prepare accounts: %w", err)
	}
	a.dummy = dummy
	return a, nil
}

// ReadUsersFile reads a users file: one "username:hash" per line, the hash
// a bcrypt hash ($2a$, $2b$ or $2y$, as htpasswd -B writes); blank lines
// and lines starting with # are ignored.
func ReadUsersFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	defer f.Close()
	users := make(map[string]string)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ':')
		if i <= 0 {
			return nil, fmt.Errorf("%s:%d: want username:hash", path, n)
		}
		user, hash := line[:i], line[i+1:]
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("%s:%d: user %q listed twice", path, n, user)
		}
		users[user] = hash
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	return users, nil
}

// HashPassword returns a bcrypt hash of password for a users file.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// ErrBadToken is wrapped by every token verification failure.
var ErrBadToken = errors.New("token is wrong")

// authenticator checks logins and tokens: course mode or account mode.
type authenticator interface {
	// login returns a token, or ok=false for a wrong password.
	login(username, password string, now time.Time) (token string, ok bool)
	// verify returns the user a token names.
	verify(token string, now time.Time) (user string, expires time.Time, err error)
}

type courseAuth struct{}

func (courseAuth) login(username, password string, now time.Time) (string, bool) {
	if !strings.EqualFold(password, CoursePassword(username)) {
		return "", false
	}
	return CourseToken(username, now), true
}

func (courseAuth) verify(token string, _ time.Time) (string, time.Time, error) {
	parts, err := splitToken(token)
	if err != nil {
		return "", time.Time{}, err
	}
	head := parts[0] + "." + parts[1] + "." + parts[2]
	sum := md5.Sum([]byte(head + CourseSalt))
	if !strings.EqualFold(parts[3], hex.EncodeToString(sum[:])) {
		return "", time.Time{}, fmt.Errorf("%w: signature does not match", ErrBadToken)
	}
	return parts[0], time.Time{}, nil
}

type accountAuth struct {
	acc *Accounts
	ttl time.Duration
}

func (a accountAuth) login(username, password string, now time.Time) (string, bool) {
	h, known := a.acc.hashes[username]
	if !known {
		h = a.acc.dummy
	}
	if bcrypt.CompareHashAndPassword(h, []byte(password)) != nil || !known {
		return "", false
	}
	head := TokenUser(username) + "." + now.Format(tokenTimeLayout) + ".login"
	return base64.StdEncoding.EncodeToString([]byte(head + "." + a.sign(head))), true
}

func (a accountAuth) sign(head string) string {
	mac := hmac.New(sha256.New, a.acc.secret)
	mac.Write([]byte(head))
	return hex.EncodeToString(mac.Sum(nil))
}

func (a accountAuth) verify(token string, now time.Time) (string, time.Time, error) {
	parts, err := splitToken(token)
	if err != nil {
		return "", time.Time{}, err
	}
	head := parts[0] + "." + parts[1] + "." + parts[2]
	if subtle.ConstantTimeCompare([]byte(parts[3]), []byte(a.sign(head))) != 1 {
		return "", time.Time{}, fmt.Errorf("%w: signature does not match", ErrBadToken)
	}
	issued, err := time.ParseInLocation(tokenTimeLayout, parts[1], time.Local)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: login time %q: %v", ErrBadToken, parts[1], err)
	}
	expires := issued.Add(a.ttl)
	if !now.Before(expires) {
		return "", time.Time{}, fmt.Errorf("%w: expired at %s", ErrBadToken, expires.Format(time.RFC3339))
	}
	return parts[0], expires, nil
}

// splitToken decodes a token into its four parts.
func splitToken(token string) ([]string, error) {
	raw, err := base64.StdEncoding.DecodeString(token)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64", ErrBadToken)
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 4 {
		return nil, fmt.Errorf("%w: %d dot-separated parts, want 4", ErrBadToken, len(parts))
	}
	return parts, nil
}
