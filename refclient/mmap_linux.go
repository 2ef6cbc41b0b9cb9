package refclient

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps the first size bytes of f for reading, so that an upload
// hashes and sends its blocks from the page cache without copying them
// into buffers first. It returns nil when f cannot be mapped; unmap is
// then a no-op.
func mapFile(f *os.File, size int64) (data []byte, unmap func()) {
	if size <= 0 || int64(int(size)) != size {
		return nil, func() {}
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, func() {}
	}
	unix.Madvise(data, unix.MADV_SEQUENTIAL)
	return data, func() { unix.Munmap(data) }
}

// dropMapped lets the kernel forget the page table entries of b, part of
// a mapping of a file, as it would at munmap: b stays readable (from the
// page cache). Done during a transfer, it spares its end the unmapping of
// the whole file.
func dropMapped(b []byte) { unix.Madvise(b, unix.MADV_DONTNEED) }

// mapFault reports whether err is a write of blocks from a mapping
// that no longer holds them: the file shrank under it.
func mapFault(err error) bool { return errors.Is(err, unix.EFAULT) }
