// Package runcsb is the runc sandboxer: pods as namespaces without a pause
// container, containers run by the runc binary.
//
// A pod's network namespace is the one containerd's CNI set up (netns_path);
// its ipc and uts namespaces are created once, when the pod is created, and
// kept alive by bind-mounting their nsfs files under the pod's directory, so
// that a pod costs no process at all. Only a pod whose containers share one
// PID namespace gets a process of ours: a tiny init (this binary, re-executed)
// that is PID 1 of that namespace and reaps orphans.
//
// Containers run with `runc create/start` from a bundle of ours whose
// config.json is containerd's, rewritten to join the pod's namespaces (the
// /proc/<pid>/ns/* paths containerd derives from the sandbox pid we return)
// and to mount the pod's /etc/hostname, /etc/hosts, /etc/resolv.conf and
// /dev/shm. The daemon is a child subreaper: a container's init is
// re-parented to it when runc exits, and its exit is collected through a
// pidfd. stdout and stderr are the containerd FIFOs themselves, so logs keep
// flowing across a daemon restart. The init and exec processes and the runc
// calls on a container are shared/runcproc's (pidfd Waiter), as in the
// guest agent's backend.
package runcsb
