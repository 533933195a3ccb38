// Package podinit is PID 1 of a pod's shared PID namespace: it reaps the
// orphans the namespace's processes leave and exits on SIGTERM or SIGINT.
//
// It imports nothing beyond the standard library's os, os/signal and
// syscall, so that the magnetar-podinit binary built from it stays small: a
// pod that shares its PID namespace costs about as much memory as a pause
// container, not a copy of a sandboxer's runtime. A sandboxer that cannot
// find that binary runs itself with Arg instead (same behaviour, more
// memory).
package podinit
