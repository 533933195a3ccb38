// Package agentapi is the protocol between the vmm sandboxer on the host and
// magnetar-agent, the PID 1 of every pod VM: protobuf definitions
// (agent.proto, package magnetar.agent.v1) with the generated Go and ttrpc
// code, plus the constants both sides share.
//
// Regenerate with `make agent-generate` (Debian's protoc 3.21.12 from
// protobuf-compiler, protoc-gen-go and protoc-gen-go-ttrpc built from the
// versions go.mod pins); TestGeneratedCodeIsCurrent fails when the committed
// code is stale.
//
// # One connection, three services
//
// The agent serves on one ttrpc connection (a virtio-serial port, vsock or
// Cloud Hypervisor's hybrid vsock, chosen on the kernel command line):
//
//   - containerd.task.v3.Task: containerd's Task API, served unchanged by
//     shared/task over the agent's runc backend. The host's task proxy
//     forwards every call after rewriting paths (bundle, stdio) as below.
//   - magnetar.agent.v1.Sandbox: Health (version), Setup (entropy,
//     hostname, DNS, sysctls, interfaces with an optional new MAC, routes),
//     SyncClock, GetEvents (long poll of the task events), DebugExec,
//     Shutdown (power off).
//   - magnetar.agent.v1.Streams: process stdio as ttrpc streams.
//
// The host uses shared/agentclient, which dials, checks the version and wraps
// the three clients.
//
// # Versions
//
// Version / Major / Minor name the protocol. Health returns the agent's; the
// host calls CheckVersion and refuses another major with
// FailedPrecondition ("rebuild the guest image"). Within a major, messages
// only gain fields and services only gain RPCs.
//
// # Paths: the share and the bundle
//
// The agent mounts the host share (virtio-fs or 9p tag from the kernel
// command line) at ShareRoot (/run/magnetar/share). In Task.Create the
// bundle must be a clean absolute path inside ShareRoot (suggested
// ShareRoot/<container id>, holding config.json and rootfs/, the rootfs
// already mounted by the host: Create's rootfs mounts must be empty). Inside
// config.json the agent rewrites what only makes sense on the host:
//
//   - namespaces with a path (the pod's netns, ipc, uts, pid from CRI) are
//     dropped: those containers share the VM's own namespaces, the VM being
//     the pod; any other namespace with a path is InvalidArgument.
//   - linux.cgroupsPath becomes /magnetar/<container id> (cgroupfs in the
//     guest); AppArmor and SELinux labels are dropped (the guest has neither).
//   - every bind mount's source must lie inside ShareRoot (the host copies or
//     bind-mounts hosts, resolv.conf, volumes into the share); others fail
//     with InvalidArgument naming the mount.
//
// # Task API notes for the host's task proxy
//
//   - pids in answers (Create, Start, State, Pids, events) are guest pids;
//     Connect's shim_pid is the agent's (1): the proxy reports its own.
//   - Stats returns the guest cgroup's metrics (containerd's v1 or v2
//     Metrics in an Any), Update goes to `runc update` in the guest.
//   - exec specs are used as given (containerd sends the container's
//     process with new args): an exec without noNewPrivileges under a
//     seccomp profile gets the filter before runc's own checks, so a
//     profile that denies getcwd makes such an exec fail in runc.
//   - Task.Shutdown never stops the agent; Sandbox.Shutdown powers off.
//
// # Stdio contract
//
// The host never passes host FIFO paths to the guest. For each stream of a
// process (init or exec) that containerd gave it, the host puts
// StdioPath(container, exec, stream) in the Create/Exec request, e.g.
//
//	stdin:  /run/magnetar/io/<container>/init/stdin
//	stdout: /run/magnetar/io/<container>/exec-<exec id>/stdout
//
// and an empty string for a stream it does not have (stderr is empty with a
// terminal). Nothing else is accepted. The agent creates those FIFOs itself
// before the process is created, holds its own end of each, and the process
// writes into them with shared/stdio exactly as on the host (terminal
// included). Output written before the host attaches is kept (up to the pipe
// buffer, 64 KiB, after which the process blocks), so the host may attach
// after Create (or, for an exec, between Exec and Start). The host then:
//
//   - for stdout and stderr calls Streams.Output with OutputControl
//     {container, exec, STDOUT|STDERR, credit} and copies the chunks to
//     containerd's FIFO until the stream ends (io.EOF: every writer has
//     gone, i.e. the process and its children exited).
//   - for stdin opens Streams.Input, sends InputChunk{container_id, exec_id}
//     first and then the bytes it reads from containerd's stdin FIFO; when
//     that FIFO reaches EOF it closes its side (CloseSend), which closes the
//     process's stdin, and waits for the InputAck with closed set.
//     Task.CloseIO closes stdin too. A broken connection leaves stdin open.
//
// Both directions are flow-controlled by credits, because ttrpc (v1.2) has
// none: a stream whose receiver does not take its 64 buffered messages
// within a second stalls the whole connection meanwhile and is then
// dropped, data and all. The agent sends an Output chunk (≤ 32 KiB) only
// against credit granted by OutputControl messages, and grants stdin
// credit with InputAck messages as it writes chunks into the FIFO; neither
// side may have more than 64 outstanding (agentclient uses 16). A slow
// reader or a process that does not read its stdin therefore blocks that
// process, never the connection. agentclient's Stdout/Stderr/Stdin
// implement this; use them.
//
// Detaching: closing an Output reader (CloseSend) makes the agent stop
// reading and end the stream; what it had not read stays for the next
// reader, chunks already granted and in flight are dropped. A second Output
// for the same stream preempts the first (after a reconnect the first one's
// connection is dead). So after a reconnect the host attaches again and
// continues where the last reader stopped.
//
// The FIFOs are removed when the process is deleted.
//
// # Events
//
// The agent's task server publishes into a bounded in-memory queue (4096
// events, oldest dropped). The host long-polls GetEvents(after_seq) in a
// loop, forwards each Event to containerd (Envelope{timestamp, namespace,
// topic, event}) and passes the last seq it forwarded as the next after_seq.
package agentapi
