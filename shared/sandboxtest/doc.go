// Package sandboxtest is the conformance suite every sandbox.Driver runs
// (Run), as wasitest is for the wasm engines: what containerd sees of a
// sandboxer's Sandbox API is checked the same way for runc, wasm and the
// sandboxers to come (a VM, gVisor).
//
// The suite drives the real joining code, daemon.NewParts: the controller
// over the driver, and the task service over the backend when there is one,
// exactly as the daemon serves them, and it checks the gRPC status codes of
// the responses, not Go errors. A Sandboxer supplies a factory that builds
// its driver and backend on a state directory (as daemon.Sandboxer.Build
// does); a second call on the same directory is the restarted daemon.
//
// Cases: the lifecycle (create, start, status, stop, wait, shutdown);
// Stop and Shutdown twice, and on unknown ids; bad ids and options refused
// with InvalidArgument, leaving nothing; a created but never started pod
// shut down; concurrent pods; recovery after a crash (the first daemon runs
// in a child process killed with SIGKILL: see Crash), of a running and of a
// stopped pod; a record left in phase starting and a sandbox directory
// left without a record, both ending clean; a pod whose own process dies
// (a capability: see Sandboxer.KillPod). After every case the state
// directory holds no sandbox, no record and no mount (Leftovers).
//
// The harness (Open, Daemon, Events, Crash, Leftovers) is exported for
// shared/tasktest, the suite of the task backends, which builds on it.
package sandboxtest
