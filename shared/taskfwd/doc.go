// Package taskfwd is the forwarding task backend: a task.Backend whose
// containers run in a guest (a VM's agent, an application kernel) that
// serves containerd's Task API itself. shared/task keeps the host's view
// (containerd's stdio paths, exits held until output is drained, events in
// order, persisted records); each container forwards its calls to its pod's
// guest after mapping what only makes sense on the host:
//
//   - the bundle: config.json is written into the pod's share, the rootfs
//     mounted there on the host, every bind mount's source bind-mounted
//     there, and the spec's paths rewritten to the guest's view;
//   - stdio: containerd's FIFOs stay on the host; the guest gets the paths
//     of the agentapi stdio contract and the backend relays the bytes;
//   - exits and OOM: one event pump per guest (not one hanging call per
//     process) turns the guest's task events into the processes' ends.
//
// The pod instance a task.CreateRequest carries must implement Guest (Create
// refuses any other with InvalidArgument): serve the task service with
// task.WithPods. Optional: PodFiler (the pod's /etc files), IORooter (an
// agent in -dev mode) and Forwarder (a guest that is no agent).
//
// # Guests that are no agent
//
// What follows is the agent's contract. A guest that returns a Forwarding
// (an application kernel: Quark, whose sandbox task server serves Task v2
// on a unix socket, with shared/taskv2 at the edge) replaces parts of it:
//
//   - StdioByPath: containerd's FIFOs are bind-mounted into the
//     container's directory in the share, <stream> for the init and
//     <exec id>-<stream> for an exec, and the guest gets them by the path
//     it sees (Kuasar's layout: /<id>/stdout for a guest rooted at the
//     share); the guest writes into containerd's FIFOs itself, nothing is
//     relayed or held in the keeper, and CloseIO is forwarded. Its
//     connection needs no stdio streams (Conn, not StreamConn).
//   - WaitExits: one Task.Wait per process, kept in flight (again after a
//     reconnect), instead of the event pump; the pump only sees the guest
//     go. Its connection needs no event queue (not an EventConn). No OOM
//     notices come from such a guest.
//   - BindsInRootfs: bind mounts are made inside the rootfs at their
//     destinations (resolved in the rootfs as runc resolves them: see
//     rootfs.go) and dropped from config.json, as Kuasar prepares a
//     Quark container; one below a mount that config.json keeps (a tmpfs
//     /dev) is made as for an agent, or it would be hidden. /dev/shm is
//     not special, but for PodShm: a directory bound instead of each
//     container's private /dev/shm tmpfs, the pod's shared one.
//
// # Bundle
//
// Create makes <share host>/<id>/ and fills it: containerd's rootfs mounts
// are mounted at rootfs/ (shared/mount; without any, config.json's root.path
// is bind-mounted there, read-only with a read-only root); root.path becomes
// "rootfs". Every bind mount (type bind, or a bind or rbind option) whose
// source is outside the share is bind-mounted at mounts/<n> (n: its index in
// the spec; a directory or an empty file as target), private, read-only
// when the mount is: made so before it is attached, with the mount API, so
// that a copy propagated into virtiofsd's mount namespace is read-only
// too. Its source becomes <share guest>/<id>/mounts/<n>. A source already
// in the share (a pod file) is only rewritten to its guest path; a bind on
// /dev/shm becomes the guest's own /dev/shm (the VM is the pod); other
// mounts pass as they are. The pod's files (PodFiler) are added as binds
// where the spec has no mount for them. config.json is written atomically;
// the guest's Task.Create gets bundle <share guest>/<id>, no rootfs mounts,
// and no runtime options (the guest's runtime is the guest's). Delete, and
// every failure, unmount and remove the whole directory.
//
// # Stdio
//
// containerd's host targets (FIFOs, file://, binary:// loggers) are opened
// with shared/stdio, as a host backend opens them, but the process never
// gets them: the guest gets agentapi.StdioPath for each stream containerd
// gave (no stderr with a terminal), and per stream a relay copies between
// the host target and the agent's Streams service (agentclient's
// flow-controlled Stdout, Stderr, Stdin). A terminal is the guest's: the
// host side is plain bytes, its single output on stdout; ResizePty is
// forwarded. Stdin's end (the host FIFO's EOF, or CloseIO, which
// shared/stdio turns into that EOF once what containerd wrote went
// through) closes the guest's stdin after the last byte; a terminal gets ^D
// first, and only on CloseIO, as containerd's shim does.
//
// A process's Exited is closed once the guest reported its exit and its
// output streams reached EOF: everything the process wrote is in
// containerd's FIFOs when the exit is published. Config.DrainTimeout bounds
// that wait (a daemonized child keeping stdout open); the output is then
// still copied until EOF or Delete. A process killed before it started has
// nothing to wait for.
//
// # Exits, OOM, reconnects
//
// One pump per guest long-polls Conn.Events from its lifetime on: TaskExit
// (container or exec id, pid checked against a stale event of an earlier
// process with the same ids) ends the process, TaskOOM goes to the
// container's OOM channel, other topics are dropped (the host's task
// service publishes its own). The pump is the only consumer of the guest's
// event queue (it acknowledges what it read). A process is registered with
// the pump before the guest call that could end it, so no exit passes
// unseen.
//
// A broken connection (Unavailable) is not an end: the pump and every
// relay call Guest.Conn again (which dials anew: Redial keeps a guest's
// connection for it) and resume where they were: the pump from its last
// sequence number, an output relay from what
// the agent kept unread, stdin on a new stream. When the guest is gone
// (Guest.Exited), every process of it ends at once with
// sandbox.ExitCodeLost, its relays stop, and Kill and Delete succeed
// without it.
//
// # Restart
//
// State persists the container's directory on both sides; the rest comes
// from the task record. Recover registers the container (and RecoverExec
// each exec) with the pump, then asks the guest's Task.State: a running or
// created process gets containerd's host targets reopened and its relays
// attached again; one that exited meanwhile ends with the guest's status
// once its output is drained; one the guest does not have, or a guest that
// is gone, is lost (sandbox.ExitCodeLost). A record in task.StatusCreating
// (a Create cut by the daemon's death) is rolled back by the service's
// Delete: the container deleted in the guest if it is there, the directory
// unmounted and removed.
//
// The host is the only writer of containerd's output FIFOs, and the only
// reader of its stdin FIFO: were the daemon's ends all, containerd's
// readers would see EOF while no daemon runs (CRI's log copy ends for good)
// and its writers EPIPE. So the backend holds them in the keeper
// (Config.FDs, shared/fdstore), under "<container id>/<exec id or
// ->/<stream>", as soon as it has opened them: a write-only end of each
// output FIFO, a read end of the stdin FIFO (never read: containerd's
// writes wait in the FIFO for the next daemon, and containerd's close still
// reaches the daemon as EOF, a reader being no writer). A stream that ends
// for good is released in the keeper before the daemon closes its own end,
// or containerd's reader would never see EOF: stdin at its EOF (or
// CloseIO), everything once the exit is reported and the output drained,
// on Delete, when the process is lost, and for a process found exited
// after a restart; never because the daemon ends. A restarted daemon holds
// again what it recovers (replacing the earlier daemon's), and once its
// recovery is done the keeper closes the rest (fdstore.Client.RetainHeld,
// called by shared/daemon): the streams of processes that went away while
// no daemon ran.
//
// Guest pids are reported (Create, Start, State, Pids); Stats is the
// guest's cgroup metrics as it returns them; Update, Pause and Resume are
// forwarded (NotImplemented where the guest cannot).
package taskfwd
