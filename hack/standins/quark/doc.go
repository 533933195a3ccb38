// Command quark is a STAND-IN for Quark Containers' `quark` binary
// (QuarkContainer/Quark, qvisor), for Magnetar's tests only: it is never
// packaged. Quark cannot be built or run on the machines Magnetar is tested
// on (it needs Rust nightly-2023-12-11 and KVM), so the magnetar-quark
// sandboxer is tested against this program, which honours the same
// contract, as strictly as Quark's own sources define it:
//
//	quark [-v]... [-d] [--log F] [--log-format F] [--systemd-cgroup] [-r DIR] \
//	      sandbox --id ID --task-socket SOCK --pid-file FILE
//
// parsed as Quark's clap 2 parser parses it (its messages, exit code 1 for
// anything else; Quark's other subcommands are refused as not implemented
// here). As Quark in sandboxed mode (/etc/quark/config.json: Sandboxed
// true, ShimMode false) does:
//
//   - -r DIR is the sandbox's bundle: DIR/config.json (the pod's spec: its
//     network namespace path, hostname, cgroup) must exist, and DIR is the
//     sandbox's root: the container of id C has its bundle at DIR/C, and
//     every path the Task API gives (stdio FIFOs, bind sources) is a path
//     inside DIR as the sandbox sees it (/C/stdout is DIR/C/stdout). A path
//     that resolves outside DIR is refused, loudly.
//   - DIR becomes a shared mount on the host, and the sandbox runs in a
//     mount namespace of its own whose root is a slave of the host's: what
//     the host mounts below DIR afterwards (rootfs, FIFOs, binds) reaches
//     the sandbox only through that propagation, as it reaches Quark's.
//   - it daemonizes: the command forks the sandbox process (in the pod's
//     network namespace, new PID, mount, IPC and UTS namespaces, setsid),
//     which binds SOCK and gets ready; then the command writes the
//     sandbox's pid to FILE and exits 0 (or prints why not and exits 1).
//   - the sandbox process serves containerd's Task API v2
//     (containerd.task.v2.Task) over ttrpc on SOCK, and only v2; a Create's
//     bundle must be /C (Quark ignores the one it is given and uses /C) and
//     its rootfs already mounted at DIR/C/rootfs; Shutdown with no
//     container left ends the sandbox, as it ends Quark's; Pause and Resume
//     are not implemented (nor are they in Quark). Its events go nowhere,
//     as Quark's go nowhere in this mode: exits are learnt with Task.Wait.
//   - the containers die with the sandbox process (they are in its PID
//     namespace, as Quark's are in its VM).
//
// Where Quark runs a container in its application kernel, the stand-in
// runs it with the real runc (PATH, or QUARK_STANDIN_RUNC), through
// Magnetar's shared/task and shared/runcproc, joining the sandbox's
// network, IPC and UTS namespaces (a container's spec must name them as
// containerd names the sandbox pid's: /proc/<sandbox pid>/ns/<type>), in a
// cgroup below the sandbox's. What the stand-in cannot tell: anything
// about Quark's own kernel (syscall coverage, its stdio and TTY handling,
// its networking, /dev, mounts it would refuse, its error codes, which are
// mostly Unknown), nor whether Quark starts at all on a given host.
//
// It logs to quark-standin.log beside the pid file.
package main
