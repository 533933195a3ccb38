// Package runsc drives gVisor's runsc binary for the gVisor sandboxer: the
// command line of one pod's sandbox (CLI: its own --root, the global flags
// every call of the pod repeats) and what the sandboxer learns from a
// running sandbox, behind one small interface (Monitor): when a container's
// init exits, and its statistics.
//
// # Two monitors
//
// runsc reports neither through the command line without a process per
// container: `runsc wait <id>` blocks for the container's whole life (a
// runsc process of about 8 MiB PSS each, measured here) and
// `runsc events --stats` is one more runsc process per call (containerd
// polls every container's stats about once a second). Both go through the
// sandbox's control socket, <root>/runsc-<sandbox id>.sock, where the
// sandbox serves runsc's own calls as JSON objects over a unix stream (one
// call, {"method": M, "arg": A}, answered by {"success": B, "err": E,
// "result": R}). Control makes the same two calls from the sandboxer itself
// ("containerManager.Wait" with the container id, answered once its init
// has exited with a wait status; "containerManager.Event" for statistics),
// so that a pod costs no process of the sandboxer's; Processes runs the
// runsc commands instead, as gVisor's own containerd shim does, for a runsc
// whose control protocol would differ from the pinned version's. Both run
// the same conformance test against the real runsc.
//
// A wait must be running before the container can end unseen: once the
// sandbox process is gone, runsc can no longer tell an exit status. For a
// container inside a living sandbox (every application container of a
// pod: the root container is the pod's pause, and the pod's end is the
// sandbox process's) the sandbox keeps the exit status until the container
// is deleted, so a wait started after the exit, by a restarted daemon, still
// learns it.
package runsc
