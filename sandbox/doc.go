// Package sandbox runs untrusted programs (students' STEP servers and
// clients) so that a grader can run many at once on one machine, and lets
// trusted code listen and dial beside them.
//
// Each Sandbox has a private network namespace with only loopback, so
// every submission can bind 127.0.0.1:1379 and none can reach the
// network, the host's loopback or another submission. Its folder is
// copied to a throw-away scratch folder, the only writable place besides
// a private /tmp. The judge listens inside the namespace with Listen
// before the program starts, so a client never races it; the
// conformance suite reaches a student server with DialContext.
//
// # How
//
// A holder process keeps the namespaces alive:
//
//	bwrap --unshare-net --unshare-pid --die-with-parent --dev-bind / / --info-fd 3 -- sleep infinity
//
// bwrap brings loopback up and reports the pid of the namespace's init
// on the info fd. Listen and DialContext lock a goroutine to its OS
// thread, setns(2) it into the namespace, create the socket (which stays
// in the namespace it was made in) and switch back; a thread that cannot
// switch back stays locked, so the runtime discards it.
//
// An untrusted command is
//
//	sh -c 'join cgroups' nsenter --net --pid (holder's) -- bwrap --ro-bind / / --dev /dev
//	  --proc /proc --tmpfs /tmp --tmpfs /run --bind WORKDIR WORKDIR --chdir WORKDIR
//	  --unshare-pid --unshare-ipc --unshare-uts --die-with-parent --new-session --
//	  setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps -all --bounding-set -all
//	  --no-new-privs -- prlimit --cpu --nofile --fsize --core [--as] -- argv
//
// It runs as nobody (65534) with the scratch folder chowned to it, with a
// PATH of /usr/local/bin:/usr/bin:/bin, HOME=WorkDir, LANG=C.UTF-8 and
// Config.Env; the caller's environment is not passed on. /run is hidden
// because connecting to a unix socket works on a read-only mount.
//
// Memory: when the cgroup v1 memory and pids controllers are writable,
// each command gets its own groups under the caller's own (memory bound
// without swap, 256 tasks), so a program that allocates more is killed
// by the kernel and Describe says "killed: memory limit (1 GiB)".
// Otherwise RLIMIT_AS bounds it: allocations then fail inside the
// program, which usually exits with a status of its own. Limits says
// which applied. CPU: RLIMIT_CPU, soft at the bound (SIGXCPU), hard one
// second later (SIGKILL). Open files (1024) and file size (1 GiB) are
// bounded too.
//
// Close kills the commands, then the holder; its init dies with it and
// the kernel kills everything in its pid namespace and in the nested
// ones of untrusted commands, so daemons that forked away are gone too.
// Close waits (on a pidfd) until that init has exited, then removes the
// cgroups and the scratch folder. When an untrusted program's main
// process ends, bwrap's pid namespace for it ends too, taking its
// leftover children with it.
//
// Trusted commands (stepkit itself) join only the namespace's network,
// through nsenter --net, with the caller's file system and environment.
//
// # Fallback
//
// Without bwrap, nsenter, setpriv or prlimit, or where namespaces cannot
// be made, New fails with the reason, unless Config.Fallback: then the
// sandbox has Isolated() == false, uses the host network (callers pass a
// free port), runs commands in the scratch folder in a process group of
// their own with RLIMIT_AS and RLIMIT_CPU (through prlimit when present),
// and Why says why.
//
// # Additions to the agreed API
//
// Sandbox.Describe names the limit that killed a program of this
// sandbox; the package-level Describe cannot know it. Sandbox.Limits
// describes the bounds for reports. A bwrap-run program killed by a
// signal is reported by bwrap as exit status 128+signal; Sandbox.Describe
// reads it as the signal, so a program that exits with such a status on
// its own is reported as killed.
package sandbox
