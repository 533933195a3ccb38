// Command vmmbench is the vmm sandboxer's benchmark (make bench-vmm,
// hack/bench/vmm.sh), against DESIGN.md §8's vmm targets, in one run on a
// harness containerd (hack/containerd.sh) with magnetar-vmm:
//
//   - three variants, interleaved (the order rotates each round, so a drift
//     in host load hits all of them): "bare", the marker image
//     (initramfs-marker.cpio: same kernel and modules, a trivial /init)
//     booted as hack/bench/vmboot boots it (hack/vm/guestvm: QEMU start →
//     the marker's first line) with the pod VMs' memory size; "runp",
//     RunPodSandbox on magnetar-vmm, a CRI call of our own (no crictl
//     process), then StopPodSandbox + RemovePodSandbox; "crictl", pod +
//     container through crictl (`crictl runp`, `crictl create`, `crictl
//     start` of a busybox `sleep`, then ContainerStatus until
//     CONTAINER_RUNNING);
//
//   - a breakdown of each pod start from what the run leaves behind: the
//     sandboxer's debug log (its "pod start" stages, "the VMM answers on QMP",
//     "agent connected", "pod VM ready" with vmm_ms/agent_ms/setup_ms/
//     total_ms, "container created in the guest"), containerd's CRI log
//     lines (RunPodSandbox/CreateContainer/StartContainer begin and end),
//     the guest console (the pod's console.log, read while the pod starts:
//     the host stamps each line as it appears; the agent's "guest
//     initialised" line carries what the guest measured: elapsed since its
//     main(), t_mounts, t_modules, t_share) and the container's directory in
//     the pod's share (it appears when the sandboxer's Task.Create begins;
//     its config.json once the rootfs and mounts are in the share);
//
//   - Magnetar's own share of a pod start (all but kernel boot and runc in
//     the guest) and RunPodSandbox / bare boot;
//
//   - memory with 1, 5, 10 running pods (one sleeping container each): RSS
//     and PSS of the sandboxer daemon + its task keeper (growth per pod over
//     the 0-pod baseline), and each pod's host cost (QEMU + virtiofsd PSS,
//     their CPU while idle) beside its guest memory size.
//
// Usage (hack/bench/vmm.sh starts the harness and runs the first form):
//
//	vmmbench -work WORK -out DIR [-runs 6] [-mem-pods 1,5,10] [-smoke] [-v]
//	vmmbench -report DIR/samples.json   (rewrite a run's report from its samples)
//
// Every pod's console, as the host read it (ms after the pod start was
// called), is kept in DIR/consoles/<pod name>.log.
//
// Every figure says where it comes from: H host-timed (our clock, or a host
// log's timestamps), G guest-measured (the agent's or the marker's own
// clock), D derived (a host-timed arrival minus a guest-measured duration).
// Output: table.txt, samples.csv, samples.json and summary.txt in -out; the
// last line printed is "bench-vmm: ...". Not a test: it asserts nothing but
// fails on any error (the smoke variant's contract).
package main
