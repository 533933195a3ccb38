// Package vm is the seam between the vmm sandboxer's pod logic and the
// hypervisors: a Hypervisor launches and finds again VMs from a
// hypervisor-neutral Config, a VM is one running guest. QEMU (package qemu)
// is the first implementation; Cloud Hypervisor and StratoVirt follow on the
// same interface. Nothing QEMU-specific (argv, QMP) crosses this seam.
//
// A VM's processes (the VMM and its helpers such as virtiofsd) are started
// detached from the daemon (a session of their own, no parent-death signal),
// so that they outlive a daemon restart; a restarted daemon finds them again
// with Hypervisor.Recover from the State it persisted. They are the only
// host processes a pod costs.
package vm
