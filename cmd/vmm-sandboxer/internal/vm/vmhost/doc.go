// Package vmhost is the host side that the VMs of every driver (QEMU,
// Cloud Hypervisor, StratoVirt) have in common, so that each driver keeps
// only what is its own (command line or REST API, control channel, its
// part of the state). A driver's VM embeds a *Machine; its State embeds
// State (sandbox, virtiofsd, agent channel: serial socket, vsock CID and
// port, or hybrid vsock socket and port; share) and Options are the
// timeouts every driver takes. Machine gives:
//
//   - Boot, the start sequence of a VMM whose devices are all on its
//     command line (run directory, deadline, virtiofsd, the taps and a
//     vhost-vsock CID inherited, the driver's Launch, WaitReady, the
//     helper watch; Abort on error); a driver that defines its VM over an
//     API (Cloud Hypervisor) uses the steps themselves;
//   - the VMM process and the pod share's virtiofsd (package virtiofsd),
//     both package hostproc processes: detached from the daemon, watched
//     through pidfds, found again after a restart by pid and start time;
//   - waiting at start for the VMM's control channel to answer, failing
//     fast with the VMM's log when it exits first;
//   - a virtiofsd that dies while its VMM runs ends the VM (the pod's
//     root file systems and volumes hang on a share with no server);
//   - Stop: the driver's graceful quit, SIGKILL once the context ends (or
//     at once with force), virtiofsd given a grace period to follow;
//   - Cleanup: sockets and pid files removed, the share's bind mount
//     undone, the logs kept for the caller;
//   - Binary (the VMM binary looked up before anything starts), Encode and
//     Decode (a driver's State as persisted and read back);
//   - errors that end with the tails of the VMM's log, virtiofsd's log and
//     the guest console, and an Alive error that names the guest kernel's
//     panic when the console has one.
package vmhost
