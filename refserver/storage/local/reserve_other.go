//go:build !linux

package local

import "os"

// reserve sets f's size to size. Outside Linux the file is sparse: a full
// disk is met when a block is written, and answered then.
func reserve(f *os.File, size int64) error { return f.Truncate(size) }
