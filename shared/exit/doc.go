// Package exit holds Latch, the one place where Magnetar records that
// something ended: a process, a container, a pod. The first Set wins and
// records the exit code and time once; Done is closed then, so that any
// number of waiters learn of it; later Sets are ignored. Pods (sandbox
// instances), container inits and exec processes embed a Latch instead of
// each keeping its own channel, sync.Once and status fields. Notify is the
// waiter that costs no goroutine until the exit (a daemon watches every
// pod and process it holds for its whole life).
package exit
