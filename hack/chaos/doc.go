// Command chaos kills Magnetar's daemons at random points while a workload
// of pods and containers runs through containerd's CRI, restarts what
// systemd would restart, and checks that nothing was lost or left behind
// (make chaos, make chaos-short; hack/chaos/chaos.mk).
//
// For each handler (-handlers: magnetar-runc, magnetar-wasm,
// magnetar-gvisor, magnetar-quark, magnetar-vmm, magnetar-clh and
// magnetar-stratovirt by default; the last two run on the VMM stand-ins and
// are served by the magnetar-vmm daemon, hack/lib.sh's handler aliases)
// it starts a harness of its own with hack/containerd.sh (WORK,
// BRIDGE, SUBNET and CGROUP_PARENT of its own: -work, -bridge, -subnet,
// -cgroup-parent; HARNESS_SANDBOXERS=the handler's daemon) and runs -kills rounds.
// In each round -workers goroutines create pods with one container each
// (busybox `sleep`; the wasm C test module's `sleep` for magnetar-wasm,
// whose image the harness imports), exec into them, stop and remove them (CRI RuntimeService, gRPC),
// beside -witnesses long-lived pods that nothing but the round's kill may
// touch. After a random delay the round kills one of these with SIGKILL,
// picked by a seeded RNG (the seed is printed; -seed replays the choices,
// although the timing against the workload never replays exactly):
//
//   - the sandboxer daemon (restarted with the same command line:
//     hack/containerd.sh sandboxer-start);
//   - its task keeper (<run>/<name>-keeper.pid; the daemon starts a new one);
//   - containerd (hack/containerd.sh containerd-start);
//   - the process of one witness pod: runsc's sandbox (gvisor), the quark
//     stand-in (quark), the VMM (QEMU; the Cloud Hypervisor or StratoVirt
//     stand-in) or its virtiofsd (VM handlers: drawn half and half;
//     virtiofsd's death must end the VM), the pod's init (runc): the pod must
//     turn NOTREADY, and is removed and replaced (a wasm pod has no process
//     of its own: not drawn for magnetar-wasm, whose daemon's death ends
//     every container, which turn EXITED and are replaced);
//   - the daemon at an exact place, through shared/killpoint: it is
//     restarted with MAGNETAR_KILLPOINT=NAME:N (controller.create.driver,
//     controller.create.persisted, controller.start.starting,
//     controller.start.started, task.create.started: killpoint.Common) and
//     kills itself
//     there; a point not reached within 60 s counts as a plain daemon kill.
//
// After the restart the workers stop and the invariants are checked (each
// for up to 30 s, states converge through events):
//
//   - every pod CRI reports READY answers PodSandboxStatus, every container
//     it reports RUNNING answers an exec (`true`; the module's `exit 0`);
//   - every witness the round did not aim at is still READY and its
//     container RUNNING (else it is a pod lost);
//   - every pod and container the workload removed is gone from the host:
//     no process naming its id, no mount naming it (/proc/mounts), no cgroup
//     dir naming it below the harness's cgroup parent, no file naming it in
//     the sandboxer's dirs (its --dir, its run dir: records, bundles, runsc
//     state); and no network namespace file more than the pods CRI lists
//     (but those containerd itself leaves of a RunPodSandbox its kill cut:
//     in a containerd round, a namespace no process is in and no record of
//     the daemon names; they are reported as containerd's and counted
//     apart);
//   - the daemons live: only the killed one died.
//
// Pods that were being created when a kill hit may fail: the workload
// removes what CRI lists NOTREADY at the end of each round. At the end
// every pod is removed and nothing may be left: no id of the run anywhere,
// no mount below WORK, no netns, no cgroup below the parent; the logs of
// the daemons and containerd must hold no panic (Go's report of one, or a
// server's "panic in handler").
//
// It prints "chaos HANDLER: K kills survived / K tried, P pods lost, L
// leftovers" per handler, a total, and "chaos: N passed, M failed" (kills
// survived, failures) for .ci/run, and exits non-zero on any failure,
// printing the seed and what failed with the evidence (log lines).
package main
