// Package qemu is the QEMU implementation of vm.Hypervisor: one microvm per
// pod, started from a hypervisor-neutral vm.Config, driven over QMP, found
// again after a daemon restart.
//
// # Command line
//
// Args builds it as a pure function (golden files in testdata/):
//
//	qemu-system-x86_64 -name guest=<id>,debug-threads=on
//	  -machine microvm,memory-backend=mem -accel tcg -cpu max   (kvm: -cpu host)
//	  -object memory-backend-memfd,id=mem,size=<M>M,share=on -m <M> -smp <n>
//	  -nodefaults -no-user-config -display none -no-reboot
//	  -global virtio-mmio.force-legacy=false
//	  -chardev file,id=console,path=<dir>/console.log -serial chardev:console
//	  -qmp unix:<dir>/qmp.sock,server=on,wait=off -pidfile <dir>/qemu.pid
//	  [-device virtio-serial-device,id=vser0
//	   -chardev socket,id=agent,path=<dir>/agent.sock,server=on,wait=off
//	   -device virtserialport,bus=vser0.0,chardev=agent,name=magnetar.agent]
//	  [-device vhost-vsock-device,id=vsock0,guest-cid=<cid>,vhostfd=<3+len(nics)>]
//	  [-chardev socket,id=virtiofs,path=<dir>/virtiofs.sock
//	   -device vhost-user-fs-device,chardev=virtiofs,tag=<tag>]
//	  [-netdev tap,id=n<i>,fd=<3+i> -device virtio-net-device,netdev=n<i>,mac=<mac>[,host_mtu=<mtu>]]...
//	  -kernel <bzImage> -initrd <initramfs>
//	  -append "console=ttyS0 panic=-1 reboot=t quiet [tsc_early_khz=<kHz>]
//	           magnetar.transport=serial:magnetar.agent|vsock:<port>
//	           magnetar.share=virtiofs:<tag>|none <cfg.KernelArgs>"
//
// The sandbox id is in argv (-name), so a daemon that lost a pid can still
// find its QEMU on the host, and with debug-threads the vCPU threads are
// named ("CPU 0/TCG") for a later cgroup placement of vCPUs alone. Guest
// memory is a shared memfd because vhost-user-fs maps it into virtiofsd,
// and virtio-mmio must be modern because libvhost-user refuses legacy
// devices. The console goes to a file through a chardev (not -serial
// file:, whose path cannot be escaped); commas in paths are doubled
// (QemuOpts). tsc_early_khz (TSCkHz) is added under TCG only: microvm has
// neither HPET nor PM timer, and under TCG the guest's TSC calibration
// against the PIT fails now and then and hangs the boot
// (notes/vm-host.md §5); under KVM the guest has kvm-clock.
//
// # Accelerator
//
// Probe("auto") says kvm only when /dev/kvm opens, speaks KVM API 12 and
// /proc/cpuinfo shows vmx or svm; see Probe for why a trial run is not
// enough on a PVM host. "kvm" and "tcg" are taken as configured. Start
// resolves an empty or "auto" vm.Config.Accel itself.
//
// # Agent channel
//
// vm.ChannelSerial is a virtio-serial port on <dir>/agent.sock
// (agentclient.Target{Serial}); vm.ChannelVsock a vhost-vsock device
// whose guest CID Start claims by opening /dev/vhost-vsock and trying
// VHOST_VSOCK_SET_GUEST_CID from a random CID upwards; QEMU inherits that
// descriptor (vhostfd) and with it the CID (agentclient.Target{VsockCID,
// Port}). A host without /dev/vhost-vsock (this machine kind) fails with
// errdefs.ErrFailedPrecondition. Cloud Hypervisor's hybrid vsock is not
// QEMU's: errdefs.ErrNotImplemented.
//
// # Processes
//
// virtiofsd (package virtiofsd, when vm.Config.Share is set) and QEMU are
// started with package hostproc: detached from the daemon (own session, no
// parent-death signal, stdio to <dir>/virtiofsd.log and <dir>/qemu.log),
// watched through pidfds (shared/proc), and put into vm.Config.Cgroup.
// Taps and the vhost-vsock descriptor are inherited through ExtraFiles.
// Start returns once QMP greeted and answered query-status: QEMU greets
// from its main loop only, after the kernel and initrd were loaded, so a
// kernel QEMU refuses shows up as QEMU exiting, reported with the tails of
// its log and of the console. Missing files are found before anything
// starts (errdefs.ErrNotFound), and so is a kernel that is neither a
// bzImage nor an ELF (errdefs.ErrInvalidArgument).
//
// Stop asks QEMU to quit over QMP and kills it (SIGKILL through a pidfd)
// when the context ends, or at once with force; virtiofsd ends with its
// vhost-user peer and is killed after a grace period otherwise. Cleanup
// removes sockets, pid files and virtiofsd's lock file and undoes the
// share's bind mount; the logs stay in the run directory.
//
// # State and recovery
//
// State is JSON (type State): QEMU's and virtiofsd's pids with their start
// times (/proc/<pid>/stat field 22), the sockets, the accelerator, the
// agent channel and CID. Recover watches each process again only if its
// pid still has that start time; a VM whose QEMU is gone comes back
// already Done, and a virtiofsd that outlived its QEMU is killed.
// Processes recovered this way are no longer the daemon's children: they
// are still seen to exit (pidfd), with the status unknown.
//
// # QMP
//
// QEMU is driven with package vm/qmp's client in its QEMU variant
// (capabilities negotiation, ids matched): qmp_capabilities, query-status
// and quit. The driver opens one connection per operation: QEMU serves one
// QMP client at a time, and nothing then ties a connection to the daemon's
// lifetime.
//
// What every driver's VM has in common (virtiofsd, waiting for the control
// channel, the helper watch, Stop, Cleanup, errors with the logs) is
// package vm/vmhost's; the vhost-vsock CID is package vm/vhostvsock's.
//
// # Files in the run directory
//
//	qmp.sock agent.sock virtiofs.sock qemu.pid   removed by Cleanup
//	console.log qemu.log virtiofsd.log           kept for the caller
package qemu
