// Package transport carries ttrpc between containerd, the sandboxers and the
// in-guest agent. It knows the address forms containerd's sandbox
// Controller.Start may return (plus the virtio-serial form the host uses to
// reach the agent), dials them with the one retry loop of the project
// (bounded by the caller's context, with hooks for a peer that may die and
// for a per-attempt check), creates owner-only unix listeners, and turns a
// virtio-serial port into a net.Conn.
//
// # Addresses
//
// An Address is "<protocol>+<scheme>://<endpoint>":
//
//	ttrpc+unix:///run/magnetar/vmm/<id>/task.sock    unix socket on the host
//	ttrpc+vsock://3:1024                             AF_VSOCK, guest CID 3, port 1024
//	ttrpc+hvsock:///run/magnetar/vmm/<id>/vsock.sock:1024
//	                                                 hybrid vsock (Cloud Hypervisor, Firecracker)
//	ttrpc+serial:///run/magnetar/vmm/<id>/agent.sock
//	                                                 QEMU virtio-serial chardev socket
//	                                                 (host ↔ agent only; see below)
//
// ParseAddress accepts the protocols "ttrpc" and "grpc" because containerd's
// grammar has both, but containerd 2.4.2 only talks to a task endpoint over
// ttrpc (its gRPC task path is broken), so Magnetar always returns ttrpc.
// containerd does not know the serial scheme: it names the agent's endpoint
// for the host and must never be returned to containerd.
// containerd splits an hvsock endpoint at the first ':', so hvsock socket
// paths containing ':' are rejected.
//
// # Transports
//
// unix: Listen creates the socket with mode 0600 (set before bind, so there is
// no window in which it is wider), creates a missing parent directory 0700,
// replaces a stale socket left by a dead process, and refuses to touch a live
// socket or anything that is not a socket. Paths are limited to 107 bytes
// (sun_path minus the terminating NUL).
//
// vsock: AF_VSOCK through github.com/mdlayher/vsock. The guest agent calls
// ListenVsock(port), which binds VMADDR_CID_ANY (vsock.ListenContextID, so
// that the agent needs no /dev/vsock to learn its CID); the host dials
// VsockAddress(cid, port), which needs vhost-vsock on the host (QEMU
// vhost-vsock-pci, StratoVirt). Addresses are reported as *VsockAddr and a
// closed listener's Accept returns net.ErrClosed. vsock.Dial takes no
// context, so one attempt (dialVsock) runs it on a goroutine and returns when
// the context ends; a connection made after that is closed, and the
// abandoned connect ends by itself within the kernel's vsock connect timeout
// (2 s by default). A missing AF_VSOCK family or a missing transport
// (ENODEV) fails at once with errdefs.ErrFailedPrecondition rather than
// burning the whole dial deadline.
//
// hvsock: Cloud Hypervisor and Firecracker expose the guest's vsock as a unix
// socket on the host. Dial connects to it, writes "CONNECT <port>\n" and reads
// one line that must begin with "OK "; after that the stream is raw. The reply
// is read byte by byte, so nothing the guest sends right after the OK line is
// lost, and the caller gets the *net.UnixConn itself.
//
// Descriptors: FDListener wraps a unix listener so that its connections
// (*FDConn) keep the descriptors that arrive with their bytes (SCM_RIGHTS,
// close-on-exec), for servers that take descriptors out of band on a
// request's connection, as Cloud Hypervisor's API does with vm.add-net.
//
// serial: the host side of a QEMU virtio-serial chardev is a unix socket,
// dialled like unix, but QEMU accepts on it before the guest has booted and
// holds what the host writes until the agent opens the port: a connection
// proves nothing, so dial it with DialWith and a setup that asks the agent
// (see below).
//
// # Dialling
//
// Dial retries every transport with capped exponential backoff (5 ms to
// 100 ms) until it connects or the context ends, because a VM guest's agent
// is usually not listening yet when the host first dials. Give it a context
// with a deadline: without one it retries until the context is cancelled.
// Errors that retrying cannot fix (bad address, permission denied, no vsock
// support) are returned immediately.
//
// DialWith is the same loop with hooks (DialOptions):
//
//   - setup runs on every new connection within its attempt (the agent
//     client makes a ttrpc client and calls Health); its failure is a failed
//     attempt, retried unless permanent, and its result is DialWith's.
//   - Alive says whether the peer's process (the VMM) still runs. It is
//     checked before each attempt and polled while one or a backoff waits;
//     once the peer is gone DialWith fails at once with ErrPeerExited and
//     the last attempt's error instead of burning the deadline.
//   - AttemptTimeout bounds one attempt (a stalled handshake is retried),
//     BackoffMin/BackoffMax the backoff, and Connect replaces the dialer.
//
// # Errors of ttrpc calls
//
// ClientErrors is the ttrpc client interceptor of every connection Magnetar
// dials to a peer of its own (an agent, an application kernel): a status
// answered becomes its errdefs error (FromStatus) and a broken connection
// errdefs.ErrUnavailable, which the callers retry on a new connection.
//
// # virtio-serial fallback
//
// Hosts without vhost-vsock (such as the Firecracker-based build machines,
// whose kernel lacks CONFIG_VHOST_VSOCK) can still reach an agent through a
// virtio-serial port. QEMU is started with
//
//	-device virtio-serial-pci,id=vser0
//	-chardev socket,id=agent,path=<dir>/agent.sock,server=on,wait=off
//	-device virtserialport,bus=vser0.0,chardev=agent,name=magnetar.agent
//
// The host dials SerialAddress(<dir>/agent.sock) (shared/agentclient's
// Target.Serial; OpenSerial also dials it, once, because it is a socket) and
// runs a ttrpc client on it; ttrpc multiplexes all calls over the one byte
// stream. The guest finds its port by reading
// /sys/class/virtio-ports/vport*/name, opens /dev/vportNpM with OpenSerial
// (non-blocking, so deadlines work; a tty is put in raw mode) and serves
// ttrpc on SessionListener(conn, true), which yields a connection per host
// session. The port stays open from one host to the next: when the host
// side disconnects the guest reads EOF (until a host is back), which ends
// the session; closing the port instead would drop the next host's first
// request (virtio_console discards a port's unread input on release).
//
// A virtio console port (virtconsole, /dev/hvcN in the guest: StratoVirt's
// microvm has one virtio-serial port, and only a virtconsole may take it) is
// never told that the host side went away: the next host client's bytes
// follow the last one's on the same stream. SessionListener reads the
// ttrpc frames and also starts a new session whenever a client's stream ids
// start again, so that each host client meets a fresh ttrpc server
// connection and no late answer of an old one reaches it; the host side is
// the same chardev socket dial. SerialListener (one connection, then
// blocks until closed) serves a stream that carries a single session.
package transport
