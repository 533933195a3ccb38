// Package vmtest is the conformance suite of vm.Hypervisor: every driver
// (QEMU, Cloud Hypervisor, StratoVirt) runs it from its own tests with
// Run, booting the real guest image, so that the pod logic above the seam
// can rely on the same behaviour from each:
//
//   - Start returns a VM whose VMM and helpers run in cfg.Cgroup, whose
//     agent answers at Agent, and whose share reaches the guest, also for
//     mounts made below it after the boot;
//   - State and Recover find the VM again from a new Hypervisor value (a
//     restarted daemon) with the same processes and agent target; the State
//     of a VM that has ended since recovers to a VM already Done; a State
//     that is not this hypervisor's is InvalidArgument;
//   - Stop (graceful or forced) is idempotent; Done closes, Alive turns
//     Unavailable and ExitedAt is set whenever the VMM ends, also when it
//     is killed from outside (a dial then fails fast with ErrVMMExited) and
//     when a helper such as virtiofsd is (the share is gone, so is the pod);
//   - a missing binary or initrd is NotFound and a kernel that is no kernel
//     InvalidArgument, each naming the file;
//   - after Stop and Cleanup nothing of the VM is left: no process naming
//     its id, no run file, no share mount.
//
// It needs root and the guest image named by MAGNETAR_GUEST_IMAGE (make
// vm-test builds it and sets it); without them it skips, saying why.
package vmtest
