// Package nsutil holds Linux namespaces without processes.
//
// A runc pod's IPC and UTS namespaces are created once, on a locked OS thread
// that unshares them, and kept alive by bind-mounting the thread's nsfs files
// onto files under the pod's directory; the thread is then thrown away (it
// is never unlocked, so the Go runtime ends it). Containers join the held
// namespaces by path. Nothing runs per pod, which is why a pod costs no
// process, and Release unmounts the files to let the kernel free the
// namespaces once no container is left in them.
package nsutil
