package refserver

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// inqReader reads how many bytes wait in a TCP socket, without reading
// them. Its function is made once per connection, so that asking costs
// no allocation.
type inqReader struct {
	rc  syscall.RawConn
	fn  func(fd uintptr)
	got int
}

// inSocket is the number of bytes received on c's socket that the server
// has not read yet (0 when it cannot tell).
func (c *conn) inSocket() int64 {
	q := &c.inq
	if q.fn == nil {
		tc, ok := c.nc.(*net.TCPConn)
		if !ok {
			return 0
		}
		rc, err := tc.SyscallConn()
		if err != nil {
			return 0
		}
		q.rc = rc
		q.fn = func(fd uintptr) {
			n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
			if err != nil {
				n = 0
			}
			q.got = n
		}
	}
	if q.rc == nil {
		return 0
	}
	q.got = 0
	if q.rc.Control(q.fn) != nil {
		return 0
	}
	return int64(q.got)
}
