// Command cloud-hypervisor is the Cloud Hypervisor STAND-IN: a test tool,
// never packaged or installed, that the tests put in place of the real
// cloud-hypervisor binary, which needs KVM (this project's machines have
// none usable). It honours Cloud Hypervisor's published interface (the
// OpenAPI document and docs of commit ae44c2971c83, v53.0-246, kept in
// shared/clhapi and /work/shared/reference/vmm-interfaces/cloud-hypervisor)
// and boots the real guest with QEMU under TCG underneath, so that the vmm
// sandboxer's Cloud Hypervisor driver (cmd/vmm-sandboxer/internal/clh) runs
// a pod end to end on its own code path. make standins builds it into
// _output/standins/cloud-hypervisor; make vm-test and make vmm-e2e use it.
//
// # What it checks
//
//   - The command line: only the options the docs define (--api-socket
//     path=|fd=|<path>, --cpus boot=, --memory size=,shared=, --kernel,
//     --cmdline, --fs, --vsock, --help, --version; --firmware, --disk and
//     --restore are known but refused as not emulated). Anything else is
//     refused as clap refuses it ("error: unexpected argument '--x' found",
//     exit status 2); a bad value of a known option as Cloud Hypervisor
//     does ("Error parsing --fs: ...", status 1). It opens /dev/kvm first
//     and fails as Cloud Hypervisor does when that is impossible.
//   - Every API request against the OpenAPI document (shared/clhapi/
//     clhvalidate, kin-openapi): an unknown path is 404, a method the path
//     does not have 405, a body that does not validate, that carries a
//     property the document does not define, or that is not JSON 400.
//   - Every response it sends, against the document too: a status the
//     operation does not list (other than 400 and 500, which Cloud
//     Hypervisor's server answers on every endpoint) or a body off its
//     schema is never sent; it answers 500 "its response failed
//     validation" instead, which fails the test that caused it.
//   - State: vm.create twice, vm.boot without vm.create or twice,
//     vm.info/vm.shutdown/actions on a VM not created (404) or not booted
//     (405), vm.add-net with a duplicate id (409); fs without
//     memory.shared and max_vcpus below boot_vcpus are refused as Cloud
//     Hypervisor's validation refuses them.
//   - vm.add-net's tap descriptors, received with SCM_RIGHTS on the API
//     connection (shared/transport.FDListener): each must be a tap
//     (TUNGETIFF answers IFF_TAP), one per NIC.
//   - Hybrid vsock on the vsock device's socket, bound at vm.boot as Cloud
//     Hypervisor binds it: "CONNECT <port>\n" answered "OK <host port>\n"
//     (host ports from 2^30 up, as Firecracker's muxer it follows) only
//     when the guest listens on that port; otherwise, or on any other
//     first line, the connection is closed.
//   - Its lifetime: vmm.shutdown ends it; a guest power-off ends it; its
//     QEMU dies with it (parent-death signal), so killing it from outside
//     ends the guest as killing Cloud Hypervisor does.
//
// # What it emulates, and how
//
// Underneath is a QEMU 7.2 microvm under TCG (MAGNETAR_STANDIN_QEMU, default
// qemu-system-x86_64 from PATH): vCPUs and memory (a memfd, shared when
// memory.shared), the kernel, initramfs and command line (plus
// tsc_early_khz= as for any TCG microvm here), serial and console (Off,
// Null, File, Tty), vhost-user-fs devices on the virtiofsd sockets, virtio-
// net on the taps received (or opened by name), virtio-rng. A body setting
// any property to other than its documented default that the stand-in
// cannot honour (disks, hugepages, devices, numa, ...: everything not in
// machine.go's emulated list) is refused with 500 "not emulated by the
// Cloud Hypervisor stand-in: <properties>", never ignored. vm.pause,
// vm.resume, vm.reboot, vm.power-button and vm.nmi go to QEMU's monitor.
// NICs must be added before vm.boot (microvm has no hot-plug).
//
// The host here has no vsock at all, so the agent cannot listen on AF_VSOCK
// in the guest: the stand-in rewrites the agent's transport on the kernel
// command line (magnetar.transport=vsock:<port> becomes serial:<port name>)
// and bridges the hybrid vsock socket to that virtio-serial port, one
// connection at a time (a virtio-serial port is one stream). The driver's
// own hybrid-vsock dialer (shared/transport) is what connects.
//
// # What it cannot tell us
//
//   - Whether the real Cloud Hypervisor behaves as its document says where
//     the document is silent or wrong: the stand-in follows the document
//     (e.g. vm.add-net on a created VM: the document lists 204 "(cold)
//     added", api.md's table says the VM must be booted; error message
//     texts, which the document does not define).
//   - Anything KVM-specific: boot timing, PVH boot of the real kernel,
//     memory sharing with virtiofsd through Cloud Hypervisor's own
//     vhost-user-fs frontend, its seccomp filters.
//   - Real vsock: several concurrent connections to the guest, ports other
//     than the agent's, guest-initiated connections.
//   - The command line beyond the documented options (Cloud Hypervisor's
//     full --help is not published in the docs), and options' values
//     beyond the keys the docs show.
package main
