package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A scratch folder and a cgroup are named after the process that made
// them, stepkit-sandbox-PID-START-..., START being the process's start
// time (clock ticks after boot, field 22 of /proc/PID/stat), so that a pid
// taken again by another process is not mistaken for their owner. A
// grader killed without Close leaves them behind; the next sandbox made
// on the machine removes those whose owner is gone.
const stalePrefix = "stepkit-sandbox-"

// ownerTag is PID-START of the calling process.
func ownerTag() string {
	pid := os.Getpid()
	start, _ := startTime(pid)
	return fmt.Sprintf("%d-%d", pid, start)
}

// startTime is the start time of process pid; ok is false when there is
// no such process.
func startTime(pid int) (start uint64, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after it; the start time is the 22nd field of the line.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return 0, false
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, err == nil
}

// orphaned reports whether name (a base name) was made by a sandbox of a
// process that no longer runs. Names without an owner are never taken.
func orphaned(name string) bool {
	rest, ok := strings.CutPrefix(name, stalePrefix)
	if !ok {
		return false
	}
	f := strings.SplitN(rest, "-", 3)
	if len(f) < 3 {
		return false
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return false
	}
	now, alive := startTime(pid)
	return !alive || now != start
}

// sweepStale removes the scratch folders and cgroups of sandboxes whose
// grader is gone. Failures are ignored: what is left is tried again by
// the next sandbox.
func sweepStale() {
	if dirs, err := filepath.Glob(filepath.Join(os.TempDir(), stalePrefix+"*")); err == nil {
		for _, d := range dirs {
			if orphaned(filepath.Base(d)) {
				os.RemoveAll(d)
			}
		}
	}
	for _, ctrl := range []string{"memory", "pids", "cpuacct"} {
		parent, err := ownCgroup(ctrl)
		if err != nil {
			continue
		}
		groups, _ := filepath.Glob(filepath.Join(parent, stalePrefix+"*"))
		for _, g := range groups {
			if orphaned(filepath.Base(g)) {
				sweepGroup(g)
			}
		}
	}
}

// sweepGroup removes a cgroup and the groups under it, killing what is
// left in them. Killed tasks leave a group a moment later, so removal is
// tried for sweepWait; a group still busy then is left to the next sweep.
func sweepGroup(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			sweepGroup(filepath.Join(dir, e.Name()))
		}
	}
	for deadline := time.Now().Add(sweepWait); ; {
		killGroup(dir)
		if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sweepWait bounds the wait for one stale group to empty.
const sweepWait = time.Second
