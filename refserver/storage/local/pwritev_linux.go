package local

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// maxIOV bounds the buffers of one pwritev (the kernel's IOV_MAX).
const maxIOV = 1024

// writeVec writes bufs one after the other at off in f with as few system
// calls as it can.
func writeVec(f *os.File, bufs [][]byte, off int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for len(bufs) > 0 {
		batch := bufs[:min(len(bufs), maxIOV)]
		var n int
		var werr error
		if err := rc.Control(func(fd uintptr) {
			for {
				n, werr = unix.Pwritev(int(fd), batch, off)
				if werr != unix.EINTR {
					return
				}
			}
		}); err != nil {
			return err
		}
		if werr != nil {
			return &os.PathError{Op: "pwritev", Path: f.Name(), Err: werr}
		}
		if n == 0 {
			return fmt.Errorf("pwritev %s: no progress", f.Name())
		}
		off += int64(n)
		// Drop what was written, even part of a buffer.
		for n > 0 && len(bufs) > 0 {
			if n >= len(bufs[0]) {
				n -= len(bufs[0])
				bufs = bufs[1:]
				continue
			}
			rest := append([][]byte{bufs[0][n:]}, bufs[1:]...)
			bufs, n = rest, 0
		}
	}
	return nil
}
