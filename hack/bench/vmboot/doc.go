// Command vmboot is the vmm sandboxer's boot benchmark (make bench-vmboot):
// the guest image (hack/vm/guest-image.sh) booted to "agent ready" (the
// first successful Health over virtio-serial) against the same VM with the
// trivial /init of initramfs-marker.cpio (hack/vm/markerinit: prints a
// marker, loads the same modules, powers off), interleaved in one run, and
// the ttrpc round trip of Health over the channel.
//
//	vmboot -image _output/guest [-runs 7] [-rtt 1000] [-json out.json]
//
// Both VMs have the same shape (hack/vm/guestvm: microvm, TCG unless
// MAGNETAR_VM_ACCEL says otherwise, 512 MiB, 1 vCPU, virtio-serial port,
// virtio-fs share). Phases, all host-timed from QEMU's start unless noted:
//
//	VMM start      QEMU start → its QMP greeting (main loop running)
//	kernel         QMP greeting → /init (marker: its first line, with the
//	               guest's CLOCK_BOOTTIME; agent: its main(), derived from
//	               its "guest initialised" line minus the elapsed it logs)
//	modules        loading /modules/load as the guest measured it (marker:
//	               its own line; agent: t_modules= in its log), and the
//	               agent's share mount (t_share=)
//	agent ready    the agent's main() → first Health answer
//	container      agent ready → the first stdout line of a busybox
//	               container (Task Create + Start from a bundle on the
//	               virtio-fs share, stdout over the Streams service): a
//	               preview of pod ready without CNI or the host task proxy
//
// The bare guest boot (DESIGN.md §8's reference) is QEMU start → the
// marker's first line. Ratios are of medians. Not a test: it asserts
// nothing and is not part of make test.
package main
