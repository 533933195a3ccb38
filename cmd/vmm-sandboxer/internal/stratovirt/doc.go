// Package stratovirt is the StratoVirt implementation of vm.Hypervisor:
// one microvm per pod, started from a hypervisor-neutral vm.Config with
// StratoVirt's command line, driven over its QMP, found again after a
// daemon restart. Everything it emits is what StratoVirt's
// docs/config_guidebook.md and docs/qmp.md define (commit d5b320371f25;
// hack/standins/stratovirt/guidebook embeds both, and the tests check the
// command line against the guidebook's grammar and the QMP exchanges
// against qmp.md's examples): no QEMU option or command.
//
// # Command line
//
// Args builds it as a pure function (golden files in testdata/):
//
//	stratovirt -machine microvm[,mem-share=on] -smp <n> -m <MiB>
//	  -kernel <bzImage> -initrd <initramfs>
//	  -append "console=ttyS0 panic=1 reboot=k quiet
//	           magnetar.transport=console:hvc0|vsock:<port>
//	           magnetar.share=virtiofs:<tag>|none <cfg.KernelArgs>"
//	  -qmp unix:<dir>/qmp.sock,server,nowait
//	  -serial file,path=<dir>/console.log
//	  -D <dir>/stratovirt.log -daemonize -pidfile <dir>/stratovirt.pid
//	  [-device virtio-serial-device,id=vser0
//	   -chardev socket,id=agent,path=<dir>/agent.sock,server,nowait
//	   -device virtconsole,id=agentport,chardev=agent,nr=0]
//	  [-device vhost-vsock-device,id=vsock0,guest-cid=<cid>,vhostfd=<3+len(nics)>]
//	  [-chardev socket,id=virtiofs,path=<dir>/virtiofs.sock
//	   -device vhost-user-fs-device,id=fs0,chardev=virtiofs,tag=<tag>]
//	  [-netdev tap,id=net<i>,fd=<3+i>
//	   -device virtio-net-device,id=nic<i>,netdev=net<i>,mac=<mac>]...
//
// Why each choice:
//
//   - microvm (§1.1): q35 on x86_64 boots only through UEFI firmware
//     (boot.md), microvm boots the kernel directly. mem-share=on with a
//     share: StratoVirt refuses vhost-user-fs without shared memory.
//   - The guest kernel must be a bzImage: StratoVirt's x86_64 loader
//     refuses an ELF vmlinux (Start checks it before anything runs). The
//     microvm has no ACPI: StratoVirt puts its virtio-mmio devices on the
//     kernel command line (virtio_mmio.device=), so the guest kernel needs
//     CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES (Debian's kernels, which `make
//     guest-image` uses, lack it; see the README).
//   - The agent's serial channel is a virtconsole: a microvm's
//     virtio-serial-device has exactly one port, number 0, and port 0 is
//     reserved for a virtconsole (§2.4: "nr = 0 is only allowed for
//     virtconsole", "Only one port is supported in microvm"; the
//     guidebook's own example of a virtserialport with nr=0 contradicts
//     this and StratoVirt refuses it). The guest sees /dev/hvc0 (no port
//     name: StratoVirt's ports have none), which the agent serves with
//     magnetar.transport=console:hvc0 (see shared/transport's
//     SessionListener: a console port never reads EOF when the host goes
//     away). The host dials the chardev socket (agentclient.Target{Serial}).
//   - vsock: vhost-vsock-device with guest-cid and the vhostfd the driver
//     claimed the CID on (package vm/vhostvsock), where /dev/vhost-vsock
//     exists (vm.agent "auto").
//   - virtio-fs: the vhost-user-fs-device's chardev is a plain client
//     socket (StratoVirt refuses server/nowait on it) to virtiofsd.
//     StratoVirt's own vhost_user_fs daemon is gone (§2.17.2: "has been
//     removed ... consider to use [virtiofsd]"): the driver runs virtiofsd
//     (package virtiofsd), as for QEMU.
//   - No -name: the guidebook defines none (only ozone's). The VM's
//     processes are found by their run directory, which every socket path
//     in argv names (vmmsb's sweep does so for every hypervisor).
//   - No accelerator option: KVM is StratoVirt's only one (§1.1; Accel
//     turns vm.accel "tcg" into an error).
//   - No MTU: StratoVirt's virtio-net has no host_mtu; the agent sets the
//     guest interface's MTU.
//   - StratoVirt splits its option lists at every comma and '=' with no
//     escape: a run directory or share tag holding one is refused
//     (InvalidArgument), as are memory below 128 MiB, more than 254 vCPUs
//     and more than 11 devices (§1.2, §1.3, §2).
//
// # Processes
//
// StratoVirt runs daemonized (-daemonize, -pidfile): the process the
// driver starts (package hostproc: detached, in vm.Config.Cgroup, its stderr
// in stratovirt.log) checks the command line, forks the daemon and exits:
// 0, or 1 with StratoVirt's message when it refused the command line
// (FailedPrecondition with it). The daemon writes the pid file; the
// driver reads it and watches the daemon with hostproc.Adopt (pid and start
// time, moved into the cgroup), so that Pids()[0] is the daemon. A daemon
// that fails right away removes its pid file as it exits; the driver then
// finds no process naming its QMP socket and fails at once. The daemon's
// own errors (a device or kernel it refuses while building the machine)
// go to its -D log, stratovirt.log, quoted by every error.
//
// Start returns once QMP answers query-status: the daemon serves QMP from
// its main loop only, after the machine was built. virtiofsd, the helper
// watch, Stop (QMP quit, SIGKILL once the context ends), Cleanup and the
// errors with the logs are package vm/vmhost's, as for QEMU.
//
// # QMP
//
// qmp.md's variant (package vm/qmp with Options{}): commands right after
// the greeting, whose version is keyed "StratoVirt" in qmp.md ("qemu" in
// StratoVirt's source: both are taken), no qmp_capabilities (qmp.md has
// none, though StratoVirt's parser accepts it) and no ids (StratoVirt
// takes only string ids; qmp.md shows none). Commands: query-status and
// quit. No hot-plug: the pod's NICs are known before the VM starts.
//
// # State and recovery
//
// State is JSON (type State): vmhost.State plus the daemon's pid and start
// time ("stratovirt") and the QMP socket. Recover watches the daemon and
// virtiofsd again only if their pids still have those start times; a VM
// whose daemon is gone comes back already Done, and a virtiofsd that
// outlived it is killed.
//
// # Files in the run directory
//
//	qmp.sock agent.sock virtiofs.sock stratovirt.pid   removed by Cleanup
//	console.log stratovirt.log virtiofsd.log           kept for the caller
package stratovirt
