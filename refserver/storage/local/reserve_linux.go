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

// tmpfsMagic is the f_type statfs reports for tmpfs.
const tmpfsMagic = 0x01021994

// onTmpfs reports whether dir is on tmpfs, where reserving is the ledger's.
func onTmpfs(dir string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(dir, &st) == nil && st.Type == tmpfsMagic
}

// freeBytes is the room an unprivileged writer has on dir's file system.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// allocated is the room f's blocks take on its file system.
func allocated(f *os.File) int64 {
	if f == nil {
		return 0
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}
