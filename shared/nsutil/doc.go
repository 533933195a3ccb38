// Package nsutil creates, holds, enters and configures Linux namespaces
// without a process to keep them alive.
//
// # Why no pause process
//
// A pod's containers share its IPC and UTS namespaces (and its network
// namespace, which containerd creates and passes in). The usual way to keep
// such namespaces alive between containers is a pause process per pod. The
// runc sandboxer instead holds them the way `ip netns` holds network
// namespaces: [Create] unshares fresh namespaces on a locked OS thread, sets
// the hostname in the new UTS namespace, and bind-mounts the thread's
// /proc/thread-self/ns/<kind> files onto files under the pod directory. A
// namespace lives as long as something references it, and a bind mount of
// its nsfs file is such a reference, so the thread can go: it is never
// unlocked, and the Go runtime ends a thread whose goroutine exits while
// locked, so no goroutine ever runs in the foreign namespaces afterwards.
// Containers join the held namespaces by path (the OCI spec's
// linux.namespaces[].path). A pod therefore costs no process, no memory for
// one, and nothing to reap or restart; [Release] unmounts the files and the
// kernel frees each namespace once its last container has gone.
//
// # Entering and sysctls
//
// [Do] runs a function on a fresh locked thread switched into a namespace
// with setns, and switches back afterwards; a thread that cannot be switched
// back is discarded rather than returned to the scheduler. [ApplySysctls]
// uses it to write pod sysctls where they belong: /proc/sys/net resolves
// against the network namespace of the thread that opens it, and the IPC
// sysctls against its IPC namespace, so each key is written from a thread
// inside the pod's namespace and the host's values are never touched.
// Sysctls that are not namespaced (vm.*, most of kernel.*) would change the
// whole host and are refused.
package nsutil
