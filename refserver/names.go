package refserver

import (
	"errors"
	"fmt"
)

// MaxNameLen is the longest key or user name, in bytes: the longest file
// name most file systems accept.
const MaxNameLen = 255

// ErrBadName is wrapped by every refusal of a key or user name.
var ErrBadName = errors.New("unusable name")

// CheckKey reports whether key can name a file inside its user's folder.
// It refuses the empty string, names over MaxNameLen bytes, ".", "..", and
// names holding '/', '\\', NUL or another control character. Anything else
// (spaces, non-ASCII text) is accepted.
func CheckKey(key string) error { return checkName(key) }

func checkName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrBadName)
	case len(s) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrBadName, len(s), MaxNameLen)
	case s == "." || s == "..":
		return fmt.Errorf("%w: %q names a folder", ErrBadName, s)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '/' || c == '\\':
			return fmt.Errorf("%w: holds a path separator", ErrBadName)
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("%w: holds control character %#02x", ErrBadName, c)
		}
	}
	return nil
}
