// Package vmmsb is the vmm sandboxer's driver: one micro-VM per pod, on the
// hypervisor the pod's runtime handler names ([hypervisors]: QEMU, Cloud
// Hypervisor, StratoVirt; package vm and its drivers), its containers run
// by the guest agent and reached through shared/taskfwd.
//
// # A pod
//
// Create checks the pod and writes its /etc files into its share; Start
// joins a tap to each pod interface (podnet), makes the VM's host cgroup,
// starts the VMM with virtiofsd on the share, waits for the agent and sends
// it the pod's identity and network (SetupRequest). Stop asks the guest to
// power off, then the VMM to quit; Cleanup removes what is left. A daemon
// restart finds each VM again from its persisted state (podState.VM).
//
// # The warm pool
//
// With [pool] shapes configured (PoolConf), vmPool keeps VMs booted ahead
// of their pods (package pool does the keeping: sizes, refill, memory
// bound). A pooled VM is booted like a pod's but with what it cannot know
// yet left generic: its run directory RunDir/pool-<hex>, a share of its own
// below <dir>/pool, a cgroup below /magnetar-vmm-pool, one NIC on a tap in
// the daemon's holding network namespace (RunDir/poolns/net) with a random
// MAC. A pod whose VM shape matches takes one at Start (startPooled) and
// only does what is its own:
//
//  1. the claim: RunDir/pool-<hex>/claim names the pod, written first, so
//     that a daemon dying from then on leaves the VM to the pod (its Stop
//     removes a VM it claimed without recording it: vmPool.reclaim) and
//     not to the next start's sweep (vmPool.sweep removes every unclaimed
//     pool VM a previous daemon left);
//  2. the network: the taps move into the pod's namespace and are joined
//     to its interfaces (podnet.Adopt); a pod with another number of
//     interfaces gets a VM booted for it instead (errColdBoot);
//  3. the cgroup: every process of the VM moves into the pod's;
//  4. the pod's /etc files in the VM's share, which is the pod's share
//     from then on (podState.Share);
//  5. Setup with the pod's identity, each guest NIC given its pod
//     interface's MAC (Interface.set_hw_addr) and fresh entropy from the
//     host (SetupRequest.entropy: RNDADDENTROPY and a forced CRNG reseed),
//     then the guest clock.
//
// A VM serves one pod and goes with it; a failed claim destroys it. Every
// pod start holds the pool's refill (pool.Hold). The daemon's Close (when
// it stops) destroys the ready VMs and leaves pods alone.
package vmmsb
