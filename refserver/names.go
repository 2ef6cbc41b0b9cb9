package refserver

import "github.com/stepkit/stepkit/refserver/storage"

// MaxNameLen is the longest key or user name, in bytes: the longest file
// name most file systems accept.
const MaxNameLen = storage.MaxNameLen

// ErrBadName is wrapped by every refusal of a key or user name.
var ErrBadName = storage.ErrBadName

// CheckKey reports whether key can name a file inside its user's folder.
// It refuses the empty string, names over MaxNameLen bytes, ".", "..", and
// names holding '/', '\\', NUL or another control character. Anything else
// (spaces, non-ASCII text) is accepted.
func CheckKey(key string) error { return storage.CheckName(key) }

func checkName(s string) error { return storage.CheckName(s) }
