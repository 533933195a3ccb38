// Package vmhost is what every VM driver (QEMU, Cloud Hypervisor, ...)
// keeps of one VM on the host: the VMM process and, with a share, its
// virtiofsd, watched together. A driver embeds a *Host in its vm.VM and adds
// its control channel (QMP, REST): Host gives Done, ExitedAt, Pids, Alive
// (with the guest kernel's panic message from the console), the helper
// watch (a virtiofsd that dies ends the VM: the pod's share is gone), the
// wait for the control channel at start (WaitReady: fails as soon as the
// VMM exits, with the tails of its logs and of the console), Stop (the
// driver's graceful quit, then SIGKILL; virtiofsd follows), Cleanup
// (sockets, pid files, virtiofsd's lock files, the share's bind mount),
// Abort (undo a failed start) and Recover (the processes found again by
// pid and start time, an orphaned virtiofsd killed).
//
// The processes are package hostproc's (detached from the daemon, watched
// through pidfds) and virtiofsd is package virtiofsd's.
package vmhost
