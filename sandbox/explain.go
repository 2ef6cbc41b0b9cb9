package sandbox

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// Explain says in words which of the sandbox's restrictions a program of
// this sandbox ran into, so that a report does not read the failure as
// the program's own: "denied writing /var/lib/x: outside the
// submission's folder", "killed: memory limit 256 MiB". ended is how the
// program ended (Describe), output the end of what it printed; the error
// messages of common runtimes (Python, C, Go, Node.js, Java) are read from
// the last line back. "" when nothing matches.
func (s *Sandbox) Explain(output, ended string) string {
	if e := explainEnd(ended); e != "" {
		return e
	}
	lines := strings.Split(output, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		before := strings.Join(lines[max(0, i-3):i], "\n")
		if e := s.explainLine(lines[i], before); e != "" {
			return e
		}
	}
	return ""
}

// explainEnd reads Describe's words for the limits that kill.
func explainEnd(ended string) string {
	for _, l := range []struct{ in, out string }{
		{"a process was killed: memory limit (", "a process was killed: memory limit "},
		{"killed: memory limit (", "killed: memory limit "},
		{"killed: CPU time limit (", "killed: CPU time limit "},
	} {
		if _, rest, ok := strings.Cut(ended, l.in); ok {
			return l.out + strings.TrimSuffix(strings.TrimSuffix(rest, ")"), ")")
		}
	}
	if strings.Contains(ended, "killed: CPU time limit") {
		return "killed: CPU time limit"
	}
	if strings.Contains(ended, "file size limit exceeded") {
		return "killed: file size limit " + formatBytes(maxFileSize)
	}
	return ""
}

// errorKinds are the errors that restrictions cause, as runtimes print
// them, most specific first.
var errorKinds = sync.OnceValue(func() []errorKind {
	return []errorKind{
		{"rofs", regexp.MustCompile(`(?i)read-only file system|\bEROFS\b|\[Errno 30\]`)},
		{"acces", regexp.MustCompile(`(?i)permission denied|\bEACCES\b|\[Errno 13\]`)},
		{"perm", regexp.MustCompile(`(?i)operation not permitted|\bEPERM\b|\[Errno 1\]`)},
		{"nospace", regexp.MustCompile(`(?i)no space left on device|\bENOSPC\b|\[Errno 28\]`)},
		{"fsize", regexp.MustCompile(`(?i)file too large|\bEFBIG\b|\[Errno 27\]`)},
		{"nofile", regexp.MustCompile(`(?i)too many open files|\bEMFILE\b|\[Errno 24\]`)},
		{"memory", regexp.MustCompile(`MemoryError|(?i)cannot allocate memory|\bENOMEM\b|\[Errno 12\]|out of memory|bad_alloc|OutOfMemoryError`)},
		{"tasks", regexp.MustCompile(`(?i)can't start new thread|pthread_create failed|fork: retry|Resource temporarily unavailable|\bEAGAIN\b|\[Errno 11\]`)},
		{"network", regexp.MustCompile(`(?i)network is unreachable|\bENETUNREACH\b|\[Errno 101\]|temporary failure in name resolution|name or service not known|\bEAI_AGAIN\b|getaddrinfo ENOTFOUND`)},
		{"nodev", regexp.MustCompile(`(?i)(no such file or directory|\bENOENT\b|\[Errno 2\]).*['"]?/dev/|/dev/\S+.*(no such file or directory|\bENOENT\b)`)},
		{"noent", regexp.MustCompile(`(?i)no such file or directory|\bENOENT\b|\[Errno 2\]`)},
	}
})

type errorKind struct {
	kind string
	re   *regexp.Regexp
}

// quotedPath and barePath find the path an error names.
var (
	quotedPath = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`['"]((?:/|\.{1,2}/|[\w.-]+/)[^'"]*)['"]|['"]([\w.-]+)['"]`)
	})
	barePath = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?:^|[\s(])(/[^\s:'"()]+)`) })
)

func (s *Sandbox) explainLine(line, before string) string {
	kind := ""
	for _, k := range errorKinds() {
		if k.re.MatchString(line) {
			kind = k.kind
			break
		}
	}
	if kind == "" {
		return ""
	}
	path := ""
	if m := quotedPath().FindStringSubmatch(line); m != nil {
		path = m[1] + m[2]
	} else if m := barePath().FindStringSubmatch(line); m != nil {
		path = m[1]
	}
	if path != "" && !filepath.IsAbs(path) {
		path = filepath.Join(s.workDir, path)
	}
	isolated := s.Isolated()
	mine := path != "" && (within(path, s.workDir) || within(path, "/tmp") || within(path, "/dev/shm"))
	switch kind {
	case "rofs", "acces", "perm":
		if !isolated || mine {
			return "" // the host's rules, or the program's own files
		}
		why := "outside the submission's folder (a program may write only its folder, /tmp and /dev/shm)"
		switch {
		case path == "" && kind == "rofs":
			return "denied writing: " + why
		case path == "":
			return "denied: the program runs as nobody (uid 65534) without capabilities: no port below 1024, no chown, no writing outside its folder, /tmp and /dev/shm"
		case kind == "rofs":
			return fmt.Sprintf("denied writing %s: %s", path, why)
		case kind == "acces":
			return fmt.Sprintf("denied %s (permission denied): %s; the program runs as nobody (uid 65534)", path, why)
		}
		return fmt.Sprintf("denied %s (operation not permitted): the program runs as nobody (uid 65534) without capabilities", path)
	case "nospace":
		switch {
		case within(path, "/tmp"):
			return fmt.Sprintf("no space left in /tmp: it is a %s tmpfs", formatBytes(tmpSize))
		case within(path, "/dev/shm"):
			return fmt.Sprintf("no space left in /dev/shm: it is a %s tmpfs, half the memory limit", formatBytes(s.shmSize()))
		case path == "":
			return fmt.Sprintf("no space left on device: /tmp is a %s tmpfs, /dev/shm %s", formatBytes(tmpSize), formatBytes(s.shmSize()))
		}
		return ""
	case "fsize":
		return "file size limit " + formatBytes(maxFileSize) + " reached"
	case "nofile":
		return fmt.Sprintf("open-file limit %d reached", maxOpenFiles)
	case "memory":
		return "out of memory: memory limit " + formatBytes(s.cfg.memory()) + " (" + s.memLimit + ")"
	case "tasks":
		// EAGAIN is also what a non-blocking socket says: only a process
		// or thread that could not be started counts.
		ctx := strings.ToLower(before + "\n" + line)
		if !strings.Contains(ctx, "fork") && !strings.Contains(ctx, "thread") && !strings.Contains(ctx, "spawn") &&
			!strings.Contains(ctx, "clone") && !strings.Contains(ctx, "process") {
			return ""
		}
		if s.cgroups == nil {
			return ""
		}
		return fmt.Sprintf("task limit reached: %d processes and threads", maxProcs)
	case "network":
		if !isolated {
			return ""
		}
		return "no network: the sandbox has only loopback (127.0.0.1); only localhost and its own host name resolve"
	case "noent":
		// A folder outside its own that the student made on their machine
		// (sudo mkdir /var/lib/x) is not here, and cannot be made.
		if !isolated || path == "" || mine || !filepath.IsAbs(path) {
			return ""
		}
		return fmt.Sprintf("no %s in the sandbox: outside the submission's folder, which alone is copied in (the system's folders are read-only)", path)
	case "nodev":
		if !isolated || within(path, "/dev/shm") || within(path, "/dev/mqueue") {
			return ""
		}
		dev := path
		if !strings.HasPrefix(dev, "/dev/") {
			dev = "a device"
		}
		return fmt.Sprintf("no %s in the sandbox: /dev holds null, zero, full, random, urandom, tty, shm and mqueue", dev)
	}
	return ""
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	if dir == "" || path == "" {
		return false
	}
	rel, err := filepath.Rel(dir, filepath.Clean(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
