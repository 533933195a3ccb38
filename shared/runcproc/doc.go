// Package runcproc is what the two runc task backends share (the runc
// sandboxer on the host, cmd/runc-sandboxer/internal/runcsb, and the guest
// agent's backend, agent/internal/runcbe): a container's init process and
// its exec processes, run by the runc binary through go-runc with stdio from
// shared/stdio.
//
// Init runs `runc create` (console socket for a TTY, pid file), and acts on
// the container with `runc start/kill/ps/update/pause/resume/delete`; Exec
// runs `runc exec --detach` and signals its pid directly. A failed runc call
// is reported with the last error line of runc's JSON log
// (errdefs.ErrFailedPrecondition), else with go-runc's error wrapped (%w).
//
// How a process's exit is learnt is the caller's: a Waiter. The host watches
// pidfds (Pidfd, over shared/proc); the guest agent, PID 1, is told by its
// reaper. A process counts as exited (Exited closed, ExitStatus set) once it
// has exited and its output has been drained.
//
// The container's directory (MakeDir) is made the same way by every
// runc-like backend (the gVisor sandboxer's too); what differs stays with
// them: spec rewriting, rootfs mounts, persisted state and recovery,
// cgroups (Stats, OOM events).
package runcproc
