//go:build !linux

package local

import "os"

// reserve sets f's size to size. Outside Linux the file is sparse: a full
// disk is met when a block is written, and answered then.
func reserve(f *os.File, size int64) error { return f.Truncate(size) }

// onTmpfs is false: the ledger is for Linux's tmpfs.
func onTmpfs(string) bool { return false }

func freeBytes(string) (int64, error) { return 1 << 62, nil }

func allocated(f *os.File) int64 {
	if f == nil {
		return 0
	}
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}
