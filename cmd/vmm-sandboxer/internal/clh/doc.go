// Package clh is the Cloud Hypervisor implementation of vm.Hypervisor: one
// VM per pod, defined and driven over Cloud Hypervisor's REST API on its
// --api-socket unix socket, found again after a daemon restart. It is
// written against the published interface only (the OpenAPI document of
// commit ae44c2971c83, v53.0-246, in shared/clhapi, and the project's docs
// api.md, vsock.md and fs.md) and tested against a stand-in that enforces
// it (hack/standins/cloud-hypervisor): Cloud Hypervisor needs KVM, which
// the project's machines do not offer.
//
// # Launch: the API, not the command line
//
// Start runs
//
//	cloud-hypervisor --api-socket path=<dir>/api.sock
//
// and defines the VM over the API, each step answered on its own:
//
//	GET  /vmm.ping       until it answers (the VMM's version)
//	PUT  /vm.create      VMConfig: payload (kernel, initramfs, cmdline),
//	                     cpus, memory (shared: virtio-fs maps it), fs, vsock,
//	                     serial (File: <dir>/console.log), console (Off), rng
//	PUT  /vm.add-net     NetConfig per NIC, the tap descriptor with it
//	                     (SCM_RIGHTS); before vm.boot: a cold add (204)
//	PUT  /vm.boot
//	GET  /vm.info        the VM must be Running
//
// rather than Kuasar's command line (--cpus, --memory, --kernel, --fs,
// --vsock, --net fd=3,...): the document specifies every field of these
// bodies, the driver sends the types generated from it (shared/clhapi), and
// the golden files in testdata/ are checked against it; the command line
// is documented only as `cloud-hypervisor --help`. A refused step comes
// back as that step's HTTP answer with Cloud Hypervisor's message, not as
// an exit to diagnose from a log, and the taps travel on the API connection
// instead of being inherited. The document lists vm.add-net's 204 "(cold)
// added"; api.md's table says the VM must be booted: the driver relies on
// the document (Cloud Hypervisor adds to the configuration of a created VM).
//
// # The REST client
//
// Client carries the operations on github.com/go-openapi/runtime (the
// runtime go-swagger clients use; go-swagger itself cannot generate from an
// OpenAPI 3 document, so the operations are written here: method, path and
// success statuses, checked against the document by
// TestOperationsAreTheDocuments). Every request opens its own connection
// (DisableKeepAlives) and is bounded by its context. vm.add-net's tap
// descriptors go out of band: net/http cannot attach ancillary data, so the
// client's RoundTripper writes that request itself, in one sendmsg(2) with
// the descriptors as SCM_RIGHTS, and reads the answer with net/http's
// parser. Answers other than the operation's success statuses are
// *APIError, classed by status (400 InvalidArgument, 404 NotFound, 405
// FailedPrecondition, 409 AlreadyExists, else Unknown).
//
// # Agent channel and share
//
// The agent is reached over hybrid vsock only (vm.ChannelHybridVsock): the
// VMConfig's vsock device (CID 3: the host never addresses a CID) has its
// host side on <dir>/vsock.sock, where shared/transport writes
// "CONNECT <port>\n" and reads "OK <port>\n" (vsock.md, and Firecracker's
// vsock.md it points to for the answer line). The guest listens on AF_VSOCK
// port 1024 (magnetar.transport=vsock:1024). The share goes through
// virtiofsd (package virtiofsd) on <dir>/virtiofs.sock, one request queue
// of 1024 entries (the document's defaults, which it nonetheless requires).
//
// # Accelerator
//
// KVM only: Cloud Hypervisor has no emulator. Accel resolves vm.accel
// "auto" and "kvm" to kvm and refuses "tcg" with a message naming the key;
// Start checks that /dev/kvm opens (FailedPrecondition otherwise) before
// starting anything.
//
// # Guest kernel command line
//
//	console=ttyS0 panic=-1 quiet magnetar.transport=vsock:<port>
//	magnetar.share=virtiofs:<tag>|none <vm.Config.KernelArgs>
//
// The console is the 8250 serial port (built into the guest kernel, unlike
// virtio-console). Cloud Hypervisor has nothing like QEMU's -no-reboot: a
// guest that reboots is booted again. panic=-1 makes a panicked guest (a
// crashed agent) reboot at once rather than hang; its agent then starts
// empty and the pod's containers are gone, which the pod's agent
// connection reports. A guest that powers off ends the VMM.
//
// # Processes, stop and recovery
//
// virtiofsd and Cloud Hypervisor are started with package hostproc (detached,
// own session, in vm.Config.Cgroup) and kept in a vmhost.Machine: a virtiofsd
// that dies ends the VM. Stop sends vm.shutdown then vmm.shutdown and kills
// the VMM when the context ends (at once with force); virtiofsd follows.
// State holds both processes' pids with their start times and the sockets;
// Recover watches the processes again, asks the API (vmm.ping, vm.info) and
// dials the hybrid vsock socket (closing without CONNECT), bounded by
// Options.RecoverTimeout; the pod then reconnects to its agent.
//
// # Files in the run directory
//
//	api.sock vsock.sock virtiofs.sock                   removed by Cleanup
//	console.log cloud-hypervisor.log virtiofsd.log      kept for the caller
package clh
