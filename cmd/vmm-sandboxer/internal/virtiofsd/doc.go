// Package virtiofsd runs the vhost-user file system daemon that exports a
// pod's share directory to its VM (virtio-fs), for every VMM that speaks
// vhost-user-fs: QEMU and Cloud Hypervisor.
//
// The daemon is Debian bookworm's C virtiofsd (qemu-system-common 7.2,
// /usr/lib/qemu/virtiofsd) or the Rust one (virtio-fs/virtiofsd, packaged
// as virtiofsd in Debian 13 and Ubuntu 24.04: /usr/libexec/virtiofsd), which
// takes the same options (the -o forms as deprecated aliases, with a
// warning in its log); its command line is
//
//	virtiofsd --socket-path=<socket> -o source=<share> -o cache=none
//	          -o no_xattr -o announce_submounts --thread-pool-size=1
//
// for these reasons:
//
//   - cache=none: the host changes the share behind the guest's back
//     (container rootfs and volumes are mounted into it while the VM runs),
//     so the guest must not cache attributes or data.
//   - no_xattr (virtiofsd's default, spelled out): the guest sees no
//     security.* labels of the host, and overlay or SELinux in the guest
//     cannot be confused by them.
//   - announce_submounts: each host mount below the share (a container's
//     rootfs, a volume) appears in the guest as a submount with its own
//     st_dev, so inode numbers of different host file systems never
//     collide in the guest.
//   - --thread-pool-size=1: as Kata's default; requests are handed to one
//     worker instead of being served on the virtqueue thread.
//
// Config.ExtraArgs appends to that (or overrides: virtiofsd takes the last
// value of an option).
//
// # Sandbox and mount propagation
//
// virtiofsd sandboxes itself (-o sandbox=namespace, its default): once the
// VMM has connected to its socket it unshares mount, pid and net
// namespaces, makes every mount a slave (MS_REC|MS_SLAVE on /), binds the
// share onto itself and pivots into it. Mounts the sandboxer makes below
// the share after that moment reach virtiofsd's namespace only if the
// share is a mount point with shared propagation in the daemon's
// namespace; on this machine's kind / is private, so nothing would. Start
// therefore calls PrepareShare first: it bind-mounts the share onto itself
// (recursively, keeping mounts already made below it) when it is not a
// mount point yet, makes that bind private (out of any peer group of its
// parent, so that the pod's mounts do not spread into other namespaces of
// the host) and then shared (a peer group of its own). virtiofsd's copy
// becomes a slave of it: every later mount below the share shows up in
// the guest, and nothing flows back. ReleaseShare undoes the bind.
//
// # Process
//
// virtiofsd is started with package hostproc: detached (a session of its
// own, no parent-death signal), stdout and stderr in a log file, in the
// VM's cgroup. It ends by itself when its vhost-user peer (the VMM)
// disconnects; Stop waits a grace period for that and kills it otherwise.
// It leaves its socket and a lock file behind (the C daemon
// /var/run/virtiofsd/<socket path with '/' → '.'>.pid, the Rust one
// <socket>.pid); Cleanup removes them.
package virtiofsd
