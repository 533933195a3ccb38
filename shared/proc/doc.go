// Package proc watches processes through pidfds registered on one poll loop
// (shared/poll): no thread and no goroutine per process, and no global
// reaper racing exec.Cmd.Wait. A process that
// is our child (a container init re-parented to the subreaper daemon, an exec)
// is reaped with its exit status; one that is not (found again after a daemon
// restart) is still seen to exit, with its status unknown. ReapStrays, the
// one reaper beside the watches, takes only the zombie children no watch
// claims once they have stayed zombies for a whole interval: an exec.Cmd
// reaps its child at once, so it never races one.
package proc
