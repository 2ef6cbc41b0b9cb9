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
// Where the cgroups below can be used (root, cgroup v1), the network
// namespace has no process in it: New unshares a new one on a locked
// thread, brings its loopback up (SIOCSIFFLAGS) and keeps a descriptor
// of it, which keeps it alive until Close or the grader's end. Elsewhere
// a holder process keeps the namespaces alive:
//
//	bwrap --unshare-net --unshare-pid --as-pid-1 --die-with-parent --dev-bind / / --proc /proc
//	  --info-fd 3 -- sh -c 'echo ready >&4 && exec cat'
//
// bwrap brings loopback up and reports the pid of the namespace's init
// on fd 3; New hands the sandbox out only once the init has said "ready"
// on fd 4, that is once loopback and the mounts are set up, so a judge's
// Listen always precedes the program it judges. The init then is cat,
// reading a pipe only this process writes: if the grader dies without
// Close, cat sees end of file and the namespaces go with it.
// Listen and DialContext lock a goroutine to its OS thread, setns(2) it
// into the namespace, create the socket (which stays in the namespace it
// was made in) and switch back; a thread that cannot switch back stays
// locked, so the runtime discards it. DialContext dials without fast
// fallback, which would dial from another thread.
//
// An untrusted command is
//
//	bwrap --info-fd 3 --block-fd 4 --unshare-user --disable-userns --ro-bind / /
//	  --dev /dev --tmpfs /dev/shm --mqueue /dev/mqueue --proc /proc --tmpfs /tmp --tmpfs /run
//	  --ro-bind HOSTS /etc/hosts --hostname stepkit-sandbox --bind WORKDIR WORKDIR --chdir WORKDIR
//	  --unshare-pid --unshare-ipc --unshare-uts --die-with-parent --new-session -- argv
//
// started (Cmd.Start) as uid and gid 65534 with no supplementary groups,
// from a thread switched into the namespace, like a socket of Listen, so
// that its first process is born inside it. bwrap makes a user namespace
// that maps 65534 to itself, drops every capability and sets
// no_new_privs; the program can make no user namespace of its own. Where
// an unprivileged bwrap cannot make a user namespace (New tries once per
// process), bwrap runs as root without --unshare-user and
//
//	setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps -all --bounding-set -all
//	  --no-new-privs -- argv
//
// drops the privileges instead, a process start more. Inside the user
// namespace, files of owners other than 65534 show as owned by nobody
// (stat, ls -l); what a program may open is decided by the host's ids,
// as with setpriv. bwrap
// makes the command's own pid namespace under the host's and reports its
// child on fd 3, then the child waits on fd 4 before it forks the
// program: meanwhile Start puts bwrap and the child in the command's
// cgroups and sets the child's resource limits (prlimit, from a thread
// whose real uid and gid are the child's for the moment, since root in a
// container may lack CAP_SYS_RESOURCE), so that every
// process of the command is born in the groups, under the limits. A
// start that fails there kills bwrap before anything of the program runs.
// Where cgroups cannot be used, the command is instead
//
//	sh -c 'set limits' -- nsenter --net --pid --mount (the holder's) -- bwrap ...
//
// so that the command's pid namespace is nested in the holder's, whose
// end takes it down; bwrap then runs in the holder's mount namespace too,
// because it reads /proc/PID of the child it makes. Every link of the
// chain is a process start, a few milliseconds each, so it keeps only
// links with a job of their own.
//
// It runs as nobody (65534) with the scratch folder chowned to it, with a
// PATH of /usr/local/bin:/usr/bin:/bin, HOME=WorkDir, USER=LOGNAME=nobody,
// LANG=C.UTF-8, TMPDIR=/tmp and Config.Env; the caller's environment is
// not passed on. What ordinary programs take for granted is there:
// /dev/null and /dev/urandom, a private /dev/shm (tmpfs, mode 1777, half
// the memory bound, its pages counted in the writer's memory cgroup) for
// POSIX semaphores and shared memory, which Python's multiprocessing
// queues, pools and managers need, /dev/mqueue, and an /etc/hosts that
// resolves localhost (IPv4 only, where a judge listens) and the
// sandbox's host name to loopback addresses.
// /run is hidden because connecting to a unix socket works on a
// read-only mount.
//
// Memory: when the cgroup v1 memory, pids and cpuacct controllers are
// writable (root), each command gets its own groups under the caller's
// own, so that whatever bounds the grader bounds its sandboxes too: memory
// bounded without swap, 256 tasks. A program that allocates more is
// killed by the kernel and Describe says "killed: memory limit (1 GiB)".
// Otherwise RLIMIT_AS bounds it: allocations then fail inside the
// program, which exits with a status of its own (Python: MemoryError,
// exit status 1); note that a Go program needs more than 1 GiB of
// address space just to start. Limits says which applied. CPU:
// RLIMIT_CPU, soft at the bound (SIGXCPU), hard one second later
// (SIGKILL, for programs that ignore SIGXCPU, as Go programs do); the
// cpuacct group tells Describe how much was used. Open files (1024),
// file size (8 GiB, above the 2^32 + 1 bytes the suite plans) and core
// dumps (none) are bounded too; /tmp is a 64 MiB tmpfs.
//
// Close kills trusted commands and the untrusted commands' first
// processes, then kills what is left in the commands' cgroups, daemons
// that forked away included, until each is empty, and removes them and
// the scratch folder. Without cgroups it first kills the holder's init:
// the kernel then kills every process in its pid namespace and in the
// commands' nested ones, and only then lets the init exit; Close waits
// for that on a pidfd.
// When an untrusted program's main process ends, its own pid namespace
// ends too and takes leftover children with it, a moment after the exit
// is reported.
//
// Trusted commands (stepkit itself) join only the namespace's network,
// through nsenter --net, with the caller's file system and environment;
// Close kills them too.
//
// If the grader dies without Close, its children die with it (parent
// death signal), and so do the commands' bwrap children (--die-with-parent)
// and with them the commands' pid namespaces; the network namespace goes
// with the grader's descriptor, or the holder's init, which reads a pipe
// only the grader writes, ends and the kernel kills everything in its
// namespaces. Only
// the scratch folder (stepkit-sandbox-* in the temporary folder) and the
// empty cgroups (stepkit-sandbox-*) are left, named after the grader's
// pid and start time; the next sandbox made on the machine removes them.
//
// The limits (CPU soft and hard, open files, file size, core dumps, and
// address space without a memory cgroup, set by the shell's ulimit
// builtin) are set before anything of the program runs: they hold for
// every process after it, and a program cannot raise a hard limit.
//
// Isolation needs root (the namespaces, the cgroups, the chown of the
// scratch folder) and bwrap, nsenter, setpriv and cat on PATH (Debian:
// bubblewrap, util-linux, coreutils). Address Listen and DialContext
// with IP literals such as 127.0.0.1:1379: name lookups may run on other
// threads, in the host's namespace.
//
// # Fallback
//
// Without root, without one of those tools, or where namespaces cannot
// be made, New fails with the reason, unless Config.Fallback: then the
// sandbox has Isolated() == false, uses the host network (callers pass a
// free port), runs commands in the scratch folder, as the caller's user,
// in a process group of their own, with the cgroups above when writable
// (else RLIMIT_AS) and the same limits through the shell; Why says
// why. Close kills the process groups and what is left in the cgroups;
// without cgroups a daemon that left its process group outlives Close.
//
// # Additions to the agreed API
//
// Describe is both a function (any command) and a method: Sandbox.Describe
// names the limit that killed a program of this sandbox ("killed: memory
// limit (1 GiB)", "killed: CPU time limit (2m0s)"), which the function
// cannot know; a program that never started is "did not start: python3:
// not found". Sandbox.Limits describes the bounds for reports ("memory
// 1 GiB (cgroup), CPU 2m0s"). Command and Trusted report a bad argv (empty,
// not found, not executable) and a closed sandbox as the error of Start.
// Command returns a Cmd, an exec.Cmd whose Start (Run, Output,
// CombinedOutput) starts the command from inside the namespace; callers
// that run programs elsewhere too wrap their exec.Cmd as &Cmd{Cmd: c}. A bwrap-run program killed by a
// signal is reported by bwrap as exit status 128+signal; Sandbox.Describe
// reads it as the signal, so a program that exits with such a status on
// its own is reported as killed.
//
// Sandbox.Explain says in words which restriction a program ran into,
// from how it ended and the error lines of common runtimes at the end of
// its output ("denied writing /var/lib/x: outside the submission's
// folder", "killed: memory limit 256 MiB"), so that a report does not
// read it as the program's own failure. Check makes a sandbox from a
// Config, runs a probe program (one that calls Probe, copied into the
// scratch folder) inside it and reports what a program there can and
// cannot do, and the limits in force.
package sandbox
