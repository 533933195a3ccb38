// Command magnetar-agent is the guest side of Magnetar's vmm sandboxer: a
// static Go binary (CGO off) that is /init, PID 1, of every pod VM. It
// mounts the basic file systems, loads the kernel modules the image ships,
// mounts the host share, serves the agent protocol (shared/agentapi) on the
// transport the kernel command line names, runs containers with runc inside
// the guest, reaps every child, and powers the VM off when asked or when it
// cannot serve. It never exits: an exiting PID 1 panics the kernel.
//
// # Guest image (initramfs) layout
//
//	/init            this binary (bin/magnetar-agent)
//	/bin/runc        static runc (v1.5.x); /usr/bin/runc and PATH are also tried
//	/modules/*.ko    kernel modules (.ko, .ko.xz or .ko.zst)
//	/modules/load    the modules to load, one file name (relative to /modules)
//	                 per line, in dependency order; blank lines and lines
//	                 starting with '#' are ignored
//	/dev/console     optional (devtmpfs provides it)
//
// Modules are loaded with finit_module(2) in the order of /modules/load; one
// that is already loaded (or built in) is fine, one that fails is logged and
// the rest are still tried. For the QEMU virtio-serial + virtio-fs setup the
// list is, in order: virtio_console (virtio-serial), fuse, virtiofs; add
// 9pnet 9pnet_virtio netfs 9p for 9p, vsock vmw_vsock_virtio_transport_common
// vmw_vsock_virtio_transport for vsock, failover net_failover virtio_net for
// networking (with their dependencies as modprobe --show-depends lists them).
//
// # Kernel command line
//
//	magnetar.transport=serial:<port name>   virtio-serial port by name (default
//	                                        serial:magnetar.agent); the port is
//	                                        found through /sys/class/virtio-ports/
//	                                        vport*/name and opened as /dev/vportNpM
//	magnetar.transport=console:hvc<n>       virtio console port /dev/hvc<n> (StratoVirt's
//	                                        microvm: its one virtio-serial port is a
//	                                        virtconsole, with no name); successive host
//	                                        clients are told apart by their ttrpc
//	                                        stream ids (transport.SessionListener)
//	magnetar.transport=vsock:<port>         AF_VSOCK listener on <port> (host:
//	                                        vhost-vsock, or hybrid vsock on Cloud
//	                                        Hypervisor, port 1024 by convention)
//	magnetar.share=virtiofs:<tag>           mount the host share (default
//	magnetar.share=9p:<tag>                 virtiofs:magnetar) at /run/magnetar/share;
//	magnetar.share=none                     9p uses trans=virtio,version=9p2000.L,msize=262144
//	magnetar.log=debug|info|warn|error      console log level (default info)
//
// Put console=ttyS0 (or hvc0) on the command line as usual; the agent logs
// to /dev/console (logfmt text, one line per event, prefixed "magnetar-agent").
// On microvm under TCG also add tsc_early_khz=... (see notes/vm-host.md).
//
// # Boot sequence
//
//  1. mount /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm, /run (tmpfs),
//     /tmp, and cgroups: cgroup2 on /sys/fs/cgroup when the kernel has it,
//     otherwise a tmpfs there with one v1 hierarchy per enabled controller
//     of /proc/cgroups; bring lo up;
//  2. load /modules/load;
//  3. parse the command line; mount the share (waiting up to 5 s for the
//     device) at /run/magnetar/share;
//  4. serve: open the transport (the serial port may appear only after its
//     module loaded: retried for 10 s) and run one ttrpc server with the
//     Task v3, Sandbox and Streams services. When the host disconnects
//     (EOF on the serial port) the port is reopened and served again;
//     containers keep running meanwhile. If the transport cannot be opened
//     within its retry budget the agent logs why and powers off.
//
// Everything the agent keeps lives under /run/magnetar: share/ (the mount),
// io/ (stdio FIFOs, see agentapi), task/ (the task server's records),
// runc/ (runc --root), ctr/<id>/ (runc logs, pid files).
//
// # Processes
//
// A single SIGCHLD reaper (agent/internal/reaper) owns wait4(-1): go-runc is
// given it as its process monitor, debug execs are started through it, and
// container processes re-parented to PID 1 are matched to their waiters by
// pid; exits nobody waits for yet are remembered briefly so a waiter that
// registers late still gets its status.
//
// # Development mode
//
// `magnetar-agent -dev -listen <socket> [-share dir] [-io dir] [-state dir]
// [-runc path]` runs the same services as an ordinary process on a host
// (child subreaper instead of PID 1; no mounts, modules or power-off), on a
// unix socket that agentclient reaches as Target{Serial: <socket>}, like
// QEMU's chardev. agent_test.go drives it with the real runc.
//
// # Packages
//
//	internal/guest    PID 1 setup: mounts, modules, command line, share, the
//	                  serial port, poweroff; the System of the Sandbox service
//	                  (hostname, DNS, sysctls, links, routes, clock)
//	internal/reaper   the child reaper and runc.ProcessMonitor
//	internal/service  the Sandbox and Streams services, the event queue, the
//	                  stdio FIFO hub and the ttrpc server assembly (built by
//	                  shared/rpcserver, so a panicking handler is answered
//	                  Internal instead of killing PID 1; testable in-process
//	                  with a fake backend)
//	internal/runcbe   the guest task.Backend: runc create/start/exec/kill/delete
//	                  on bundles in the share, spec rewritten for the guest
package main
