package sandbox

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// cgroupRoot is where the cgroup v1 controllers are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroups are a sandbox's cgroup v1 memory and pids groups, children of
// the groups the calling process is in (so that whatever bounds the
// grader also bounds its sandboxes). Each untrusted command gets a child
// group of its own, so that its memory bound and its OOM kills are its
// own.
type cgroups struct {
	mem, pids, cpu string // the sandbox's group directories

	mu sync.Mutex
	n  int
}

// newCgroups makes the sandbox's groups, or says why it cannot.
func newCgroups() (*cgroups, error) {
	var id [6]byte
	rand.Read(id[:])
	name := stalePrefix + ownerTag() + "-" + hex.EncodeToString(id[:])
	cg := &cgroups{}
	for _, x := range []struct {
		ctrl string
		dst  *string
	}{{"memory", &cg.mem}, {"pids", &cg.pids}, {"cpuacct", &cg.cpu}} {
		parent, err := ownCgroup(x.ctrl)
		if err != nil {
			cg.remove()
			return nil, err
		}
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			cg.remove()
			return nil, fmt.Errorf("cgroup %s: %w", x.ctrl, err)
		}
		*x.dst = dir
	}
	return cg, nil
}

// ownCgroup is the directory of the calling process's cgroup v1 group
// for the controller ctrl.
func ownCgroup(ctrl string) (string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		// hierarchy-ID:controller-list:path
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == ctrl {
				dir := filepath.Join(cgroupRoot, ctrl, f[2])
				if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
					return "", fmt.Errorf("cgroup v1 %s controller not mounted at %s", ctrl, filepath.Join(cgroupRoot, ctrl))
				}
				return dir, nil
			}
		}
	}
	return "", fmt.Errorf("no cgroup v1 %s controller", ctrl)
}

// commandCgroup is the groups of one untrusted command.
type commandCgroup struct {
	mem, pids, cpu string
	memory         int64

	mu      sync.Mutex
	oomKill int           // OOM kills seen when the group was removed
	cpuUsed time.Duration // CPU time used when the group was removed
	gone    bool          // removed
}

// command makes the groups of one command, bounded to memory bytes
// (without swap) and maxProcs tasks.
func (cg *cgroups) command(memory int64) (*commandCgroup, error) {
	cg.mu.Lock()
	cg.n++
	name := "cmd-" + strconv.Itoa(cg.n)
	cg.mu.Unlock()
	c := &commandCgroup{mem: filepath.Join(cg.mem, name), pids: filepath.Join(cg.pids, name),
		cpu: filepath.Join(cg.cpu, name), memory: memory}
	var made []string
	for _, dir := range []string{c.mem, c.pids, c.cpu} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			for _, d := range made {
				os.Remove(d)
			}
			return nil, fmt.Errorf("sandbox: cgroup: %w", err)
		}
		made = append(made, dir)
	}
	limit := strconv.FormatInt(memory, 10)
	err := write(filepath.Join(c.mem, "memory.limit_in_bytes"), limit)
	if err == nil {
		// Swap would let a program outgrow its bound slowly instead of
		// being killed; memsw exists only with swap accounting.
		if _, serr := os.Stat(filepath.Join(c.mem, "memory.memsw.limit_in_bytes")); serr == nil {
			err = write(filepath.Join(c.mem, "memory.memsw.limit_in_bytes"), limit)
		}
	}
	if err == nil {
		err = write(filepath.Join(c.pids, "pids.max"), strconv.Itoa(maxProcs))
	}
	if err != nil {
		c.remove()
		return nil, fmt.Errorf("sandbox: cgroup: %w", err)
	}
	return c, nil
}

// procs are the files a process writes its pid to to join the groups.
func (c *commandCgroup) procs() []string {
	return []string{filepath.Join(c.mem, "cgroup.procs"), filepath.Join(c.pids, "cgroup.procs"),
		filepath.Join(c.cpu, "cgroup.procs")}
}

// join puts processes in the command's groups; their children, forked
// afterwards, are born there.
func (c *commandCgroup) join(pids ...int) error {
	for _, f := range c.procs() {
		for _, pid := range pids {
			if err := write(f, strconv.Itoa(pid)); err != nil {
				return fmt.Errorf("cgroup: %w", err)
			}
		}
	}
	return nil
}

// cpuTime is the CPU time the command's processes used.
func (c *commandCgroup) cpuTime() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		return c.cpuUsed
	}
	return readCPUUsage(c.cpu)
}

func readCPUUsage(dir string) time.Duration {
	data, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage"))
	if err != nil {
		return 0
	}
	ns, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	return time.Duration(ns)
}

// oomKills is how many processes of the command the kernel killed for
// exceeding the memory bound.
func (c *commandCgroup) oomKills() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		return c.oomKill
	}
	return readOOMKills(c.mem)
}

func readOOMKills(dir string) int {
	data, err := os.ReadFile(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// kill kills the processes in the command's groups.
func (c *commandCgroup) kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.gone {
		killGroup(c.pids)
	}
}

// remove kills what is left in the command's groups and removes them.
func (c *commandCgroup) remove() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		return nil
	}
	c.oomKill = readOOMKills(c.mem)
	c.cpuUsed = readCPUUsage(c.cpu)
	c.gone = true
	return errors.Join(removeGroup(c.mem), removeGroup(c.pids), removeGroup(c.cpu))
}

// remove removes the sandbox's groups (after those of its commands).
func (cg *cgroups) remove() error {
	var errs []error
	for _, dir := range []string{cg.mem, cg.pids, cg.cpu} {
		if dir != "" {
			errs = append(errs, removeGroup(dir))
		}
	}
	return errors.Join(errs...)
}

// removeGroup kills the tasks left in a group and removes it. Tasks that
// are killed leave the group a moment later, so removal is retried for
// a bounded time.
func removeGroup(dir string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		killGroup(dir)
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sandbox: remove cgroup %s: %w", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killGroup kills the processes in a group.
func killGroup(dir string) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func write(path, value string) error {
	return os.WriteFile(path, []byte(value), 0)
}
