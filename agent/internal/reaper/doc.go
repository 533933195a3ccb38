// Package reaper is the guest agent's only caller of wait(2). As PID 1 the
// agent inherits every orphan (a container's init is re-parented to it when
// runc exits), so it must reap every child; a second waiter (exec.Cmd.Wait,
// go-runc's default monitor) would race it for exit statuses.
//
// Reaper.Run handles SIGCHLD and collects every exited child with
// wait4(-1, WNOHANG). Each exit goes to the waiters registered for its pid
// (WaitPid); an exit nobody waits for yet is kept (the last 1024) so that a
// waiter who learns a pid only afterwards — a container init whose pid runc
// writes to a pid file — still gets it, and a since time keeps a recycled
// pid's old exit from being mistaken for the new process's.
//
// Reaper implements go-runc's ProcessMonitor (assign it to runc.Monitor) and
// Start/Wait for exec.Cmd: Wait receives the exit from the reaper and only
// then calls cmd.Wait to flush the command's I/O goroutines (its wait fails
// with ECHILD, which is expected and ignored).
package reaper
