// Package poll waits for many descriptors on one epoll instance served by
// one goroutine, so that what waits on a descriptor for a long time (a
// process's pidfd until it exits, a cgroup's OOM notification for the
// container's whole life) costs a registration, not a parked goroutine
// with its stack. The epoll descriptor itself is parked on Go's netpoller,
// so the loop holds no thread while nothing is ready.
//
// A registration is one-shot and re-armed after its handler returns: the
// handler runs on the loop's goroutine, must not block, and must consume
// what made its descriptor ready (read an eventfd, drain inotify) or close
// the registration (a pidfd stays readable once its process has exited).
// Handlers of one loop never run concurrently with each other. Close may
// be called from anywhere, the handler included; a Close from elsewhere
// may race a dispatch already under way, so a handler can still run once
// as Close returns and must then find its owner's state closed (its own
// lock), not assume it cannot run.
package poll
