package local

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// reserve sets f's size to size with its blocks allocated (fallocate), so
// that writing it later cannot meet a full disk. File systems that cannot
// allocate ahead get a sparse file, as on other systems.
func reserve(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	if size == 0 {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Fallocate(int(fd), 0, 0, size)
			if ferr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if errors.Is(ferr, syscall.EOPNOTSUPP) || errors.Is(ferr, syscall.ENOSYS) {
		return nil
	}
	if ferr != nil {
		return fmt.Errorf("reserve %d bytes: %w", size, &os.PathError{Op: "fallocate", Path: f.Name(), Err: ferr})
	}
	return nil
}
