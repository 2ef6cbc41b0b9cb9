package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// exitedStats waits until process pid (a child) has exited, without
// reaping it, and reads what it used: the zombie's /proc entries still
// hold it.
func exitedStats(pid int) (procStat, error) {
	var si unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &si, unix.WEXITED|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return procStat{}, fmt.Errorf("wait for %d: %w", pid, err)
		}
		return readProcStats(pid)
	}
}
