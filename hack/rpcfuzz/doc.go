// Command rpcfuzz drives the Sandbox API (containerd.services.sandbox.v1
// Controller, gRPC) and the Task API (containerd.task.v3, ttrpc) of running
// Magnetar sandboxer daemons directly, without containerd, with malformed
// and hostile requests (make rpcfuzz, hack/rpcfuzz/rpcfuzz.mk).
//
// For each handler it starts the sandboxer binary of bin/ itself, in a
// temporary root of its own (state dir, sockets, run dirs, configuration),
// dials both APIs and runs a table of cases, then random cases drawn from a
// seeded RNG (the seed is printed; -seed replays a run, -handlers one
// handler of it):
//
//   - hostile ids on every method: empty, over the length limit, huge,
//     with '/', "..", NUL, newlines, spaces, shell characters, non-ASCII;
//   - paths outside every root: netns paths that are not network
//     namespaces or are relative, rootfs mounts of the host's /, bundles
//     that are relative, unclean or hold a config.json that is a symlink
//     out, container roots that are symlinks to /, stdio paths outside;
//   - garbage google.protobuf.Any payloads (options, resources, exec specs);
//   - calls out of order: Task.Create for an unknown pod, Start before
//     Create, Delete twice, Wait on unknown ids, Controller calls after
//     Shutdown, Create twice;
//   - the same id from 50 goroutines at once (Create, Shutdown, Status).
//
// After every case it checks that the daemon lives and answered within
// 10 s with an expected gRPC code (Unknown or Internal for bad input is a
// finding); after every group of cases that nothing was left: no process
// below the daemon but its keeper, no mount, no netns, no file outside the
// state dir (the escape targets the cases name), no cgroup of the run. It
// also checks what the daemon created (issue 16, item 4): every socket it
// listens on is 0600 and root's, its state dir 0700, its records 0600, no
// file below the state dir group- or world-writable.
//
// Pods: with -pods (the default) the runc, wasm and gVisor handlers also get
// valid pods (Controller.Create and Start of a host-network pod) to aim
// the Task API cases at, removed at the end of their group; -pods=false
// never makes one (no namespaces, no cgroups), for iterations without the
// harness lock. VM pods are never booted: the vmm daemon runs with
// hypervisors that are not installed, so that its Creates are refused
// before any VM starts.
//
// It prints one line per handler, "rpcfuzz HANDLER: N cases, M failures",
// and a total, and exits non-zero on any failure.
package main
