// Command stratovirt is the StratoVirt STAND-IN: a test double that takes
// StratoVirt's place where StratoVirt cannot run (this machine has no KVM,
// and no distribution here packages StratoVirt). It is for tests only
// (make vm-test, the magnetar-stratovirt handler of make vmm-e2e, where
// hack/containerd.sh builds it into _output/standins/stratovirt-standin),
// is never packaged, and says "stratovirt stand-in" in every message of
// its own.
//
// It honours StratoVirt's published interface, as embedded in package
// guidebook (docs/config_guidebook.md and docs/qmp.md at commit
// d5b320371f25), and nothing else:
//
// # What it checks
//
//   - The command line: every option, device driver, chardev and netdev
//     backend and property must be one the guidebook defines; anything
//     else is refused with the message StratoVirt's parser gives
//     ("Found argument '...' which wasn't expected", "unexpected argument
//     '--x' found", a value missing or given twice), on stderr with exit
//     status 1, before it daemonizes. QEMU-only options (-accel, -cpu,
//     -nodefaults, -object, "server=on", virtserialport names...) are
//     thus refused as StratoVirt refuses them.
//   - StratoVirt's own checks as its source makes them while it builds
//     the machine: memory from 128 MiB to 512 GiB, 1 to 254 vCPUs, at
//     most 11 user creatable devices on a microvm, a microvm's one
//     virtio-serial port (number 0, a virtconsole's only), chardevs used
//     once, a vhost-user-fs chardev that is a plain client socket, shared
//     memory (mem-share=on) for vhost-user-fs, a tag under 36 bytes,
//     guest-cid in 3..4294967294, MAC addresses, -pidfile only with
//     -daemonize, a pid file that must not exist yet, and a kernel that is
//     a bzImage (an ELF vmlinux is refused: "ELF-format kernel is not
//     supported").
//   - -daemonize: the process started checks the command line, forks the
//     daemon (this program again, in a session of its own, with the same
//     inherited descriptors: taps and vhost-vsock fds keep their numbers)
//     and exits 0; the daemon writes -pidfile, removes it (and the QMP
//     socket) when it exits, and logs its errors to -D's file in
//     StratoVirt's layout. Like StratoVirt, it serves QMP only once the
//     machine is built (here: once QEMU's own monitor, on an abstract
//     socket, greets: its devices are connected to their backends,
//     virtiofsd included).
//   - QMP on -qmp unix:<path>,server,nowait: qmp.md's greeting, then only
//     the commands qmp.md lists (no qmp_capabilities negotiation needed:
//     qmp.md shows none), with the answers and events it shows:
//     query-status, quit (answer, SHUTDOWN, then the VM ends), stop/cont
//     (STOP/RESUME); ids must be strings. One client at a time. Any other
//     command gets StratoVirt's "unknown variant" error; a qmp.md command
//     the stand-in does not run (hot-plug, balloon...) an error naming the
//     stand-in.
//   - Killed (SIGKILL), the stand-in takes its guest with it (QEMU runs
//     with the parent-death signal), as StratoVirt's guest dies with it;
//     SIGTERM ends it as StratoVirt does (a SHUTDOWN event, the VM ends).
//
// What the guidebook defines but the stand-in does not run (q35, block
// devices, vfio, balloon, hot-plug, QMP on tcp, multi-queue taps...) is
// refused with "stratovirt stand-in: ... not emulated", never accepted
// silently.
//
// # Underneath
//
// The guest runs on QEMU 7.2's microvm under TCG ($MAGNETAR_QEMU or
// qemu-system-x86_64): the same devices on virtio-mmio, the taps and
// vhost-vsock descriptor at the numbers StratoVirt was given, the serial
// console to the same file, the virtconsole on the same chardev socket,
// vhost-user-fs to the same virtiofsd socket (shared memory through a
// memfd backend), tsc_early_khz added to the kernel command line under
// TCG.
//
// # What it cannot tell us
//
//   - Whether a real StratoVirt boots this guest: its x86_64 microvm
//     describes its virtio-mmio devices on the kernel command line
//     (virtio_mmio.device=, needing CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES,
//     which Debian's cloud kernel lacks), while QEMU's microvm describes
//     them with ACPI; the guest kernel a StratoVirt user needs is in the
//     README.
//   - KVM-only behaviour: timing, CPU features, StratoVirt's seccomp
//     filter (-disable-seccomp is accepted but changes nothing here).
//   - Behaviour the documents do not state (what StratoVirt writes to its
//     log beyond the errors above, the exact text of errors its source
//     words differently in another release): the stand-in follows the
//     source at the guidebook's commit.
//   - vhost-vsock: this host has no /dev/vhost-vsock, so the e2e tests
//     use the virtconsole channel; the vsock command line is checked
//     (argv golden files, the stand-in's parser), not booted.
package main
