// Package quarksb is the quark sandboxer (runtime handler magnetar-quark):
// every pod is one Quark Containers sandbox, an application kernel in a
// KVM virtual machine, driven through Quark's own command line and its
// sandbox task server, under stock containerd.
//
// # A pod
//
// Create writes Quark's sandbox bundle in the pod's state directory
// (<dir>/sandboxes/<id>/sandbox): config.json, the pod's spec as Kuasar's
// quark-sandboxer builds it (the pod's network namespace, resources,
// root.path "rootfs"; here also its hostname, sysctls and cgroup), the
// rootfs/dev directory, and the pod's /etc files in .pod/. Start runs, as
// Kuasar does,
//
//	quark -r <bundle> sandbox --task-socket <run>/task.sock --id <id> --pid-file <run>/quark.pid
//
// (run: a short directory per pod below run_dir), which daemonizes the
// sandbox process and exits; the daemon adopts that process by the pid it
// wrote (shared/hostproc: found again after a restart by pid and start
// time), moves it into the pod's cgroup (<cgroup_parent>/magnetar-quark-<id>)
// and returns once the task socket answers. The pod's pid is the sandbox
// process's: containerd names the pod's namespaces by it in the containers'
// specs. Stop kills it (SIGKILL: Quark ends a sandbox gracefully only when
// it has no container); a sandbox process that dies on its own ends the
// pod with 255.
//
// # Its containers
//
// Quark's sandbox serves containerd's Task API v2 on its socket, in its
// own view of the files: the bundle of container C is /C, i.e.
// <bundle>/C on the host, its stdio FIFOs opened by path inside it.
// Kuasar's containerd fork asks the sandboxer to prepare that (an
// extension of Controller.Update) before calling Quark directly; stock
// containerd does not, so this daemon serves Task v3 itself and forwards
// each call to Quark's socket with shared/taskfwd, the backend the vmm
// sandboxer forwards to its agent with, as a guest that is no agent
// (taskfwd.Forwarding): the rootfs mounted at <bundle>/C/rootfs, every bind
// mount made inside it (Quark takes none), containerd's FIFOs bind-mounted
// at <bundle>/C/{stdin,stdout,stderr} (<exec id>-stdout for an exec) and
// given as /C/stdout, and each process's exit from a Task.Wait kept in
// flight (Quark publishes no events in this mode). Requests reach Quark in
// v2, spoken with v3's types (shared/taskv2: the two differ on the wire by
// the service name only). Task.Shutdown is never forwarded: Quark ends the
// whole sandbox on it.
//
// Quark itself cannot be built or run where Magnetar is tested (Rust
// nightly, KVM): the tests run against hack/standins/quark, a stand-in
// that honours the same command line and socket contract, and refuses any
// path that does not resolve inside the sandbox root.
package quarksb
