// Package hostproc runs the host processes of a pod that must outlive the
// daemon (a VM's VMM and its helpers, virtiofsd), or adopts one that
// started itself detached (Quark's sandbox process, which daemonizes), and
// finds them again after a daemon restart.
//
// Start runs a binary in a session of its own (Setsid, and no parent-death
// signal: Pdeathsig fires when the creating thread exits, not the daemon,
// golang/go#27505), with stdin on /dev/null, stdout and stderr in a log
// file, inherited descriptors (ExtraFiles) and, when asked, moves it into a
// cgroup (shared/cgroups New + AddProc). The child is then watched with
// shared/proc (a pidfd on Go's netpoller, which also reaps it: the
// os.Process is released at once, as runc-sandboxer does with its pod
// init), and a second pidfd is kept for signals, so that a signal never
// reaches a process that reused the pid.
//
// A process is identified by its ID: the pid and its start time (field 22
// of /proc/<pid>/stat, clock ticks since boot). Recover takes an ID a
// previous daemon persisted and watches the process again only if a live
// process with that pid has that start time; otherwise the process is
// reported as already exited (status unknown). Adopt watches a process the
// daemon did not start (a daemonized grandchild, re-parented to the
// daemon, a child subreaper), by the pid it wrote.
package hostproc
