// Package gvisorsb is the gVisor sandboxer: every pod is one runsc
// sandbox, an application kernel (gVisor's sentry) between the pod's
// containers and the host, under containerd's Sandbox API with no shim
// and no process of the sandboxer's per pod.
//
// # A pod
//
// A pod is runsc's multi-container sandbox (runsc/specutils/cri.go,
// runsc/container): one runsc --root of its own below the pod's directory,
// and a root container whose id is the pod's and whose spec has
// io.kubernetes.cri.container-type=sandbox. Controller.Start runs
// `runsc create` and `runsc start` of that root container, which starts
// the sandbox process (runsc-sandbox: the sentry) and the root container's
// gofer in the pod's CNI network namespace (runsc --network=sandbox takes
// its interfaces, addresses and routes into the sentry's network stack;
// --network=host for a host-network pod) and in the pod's cgroup
// (<cgroup_parent>/<pod id>: the sandbox, its gofers and so every
// container are accounted there, which is what Controller.Metrics
// reports). The root container runs the pause: magnetar-podinit (or this
// binary re-executed as it) from a read-only rootfs of its own below the
// daemon's directory, holding that binary alone; no pause image is pulled.
// The sandbox process is the pod's end: it is the daemon's child once
// runsc create has exited (the daemon is a child subreaper), watched with
// a pidfd, and its exit ends the pod (Controller.Wait).
//
// # Containers
//
// Every application container joins the sandbox: its spec (containerd's,
// rewritten) has container-type=container and io.kubernetes.cri.sandbox-id
// naming the pod, the pod's /etc/hostname, /etc/hosts, /etc/resolv.conf and
// mount hints, and the pod's /dev/shm. Tasks are served by shared/task over
// shared/runcproc (runsc's command line is runc's) with runcproc's hooks
// for what runsc does differently:
//
//   - the pid runsc reports for a container is the sandbox's: a
//     container's exit is learnt from the pod's runsc.Monitor (the
//     sandbox's control socket by default, a `runsc wait` process with
//     runsc.monitor = "processes"), from its start on;
//   - a container takes its stdio at `runsc start`, not at create;
//   - an exec is `runsc exec --detach`, whose host process waits for the
//     process in the sandbox and exits with its status (watched with a
//     pidfd as for runc); it is signalled by its pid in the sandbox
//     (`runsc kill --pid`, from --internal-pid-file), as runsc forwards no
//     signal to it;
//   - a container that never started has no process in the sandbox: a
//     kill before start ends it here (runsc refuses to signal it);
//   - statistics come from the sentry (runsc.Monitor.Stats, runsc events
//     --stats), as containerd's cgroup v1 metrics.
//
// runsc create and start leave a gofer per container, re-parented to the
// daemon: the daemon watches them (and so reaps them, gofers.go). Other
// helpers of runsc's re-parented to it and left as zombies with no watcher
// are reaped by a sweep (sweepOrphans).
//
// # Mount hints
//
// runsc shares a volume between the containers of a pod only when the
// sandbox knows it at start, from the dev.gvisor.spec.mount.<name>.*
// annotations of the root container (and of every container, for its
// gofer). The pod's own hints come from its CRI annotations (Kubernetes
// pod annotations), as containerd's pod_annotations = ["dev.gvisor.*"]
// gives them to gVisor's shim; they are checked at Create and set on the
// root container and on every container of the pod. The sandboxer adds
// one: the pod's /dev/shm is a tmpfs inside the sandbox shared by its
// containers (share=pod), not a host mount.
//
// # Restart
//
// A restarted daemon finds each pod's sandbox by pid and start time and
// asks the sandbox again for each running container's exit: the sandbox
// keeps the exit status of a container until it is deleted, so an exit
// that happened while no daemon ran is still learnt. An exec's runsc helper
// is watched again by pid (its status then unknown, as for runc).
package gvisorsb
