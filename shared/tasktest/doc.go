// Package tasktest is the conformance suite every task.Backend runs (Run):
// what containerd sees of a sandboxer's Task API v3 is checked the same way
// for runc, wasm and the backends to come, as shared/sandboxtest does for
// the drivers and wasitest for the wasm engines.
//
// The suite drives the task service and the controller joined by
// daemon.NewParts (sandboxtest.Open), as containerd drives them: through
// the ttrpc request and response types, checking gRPC status codes, with
// stdout and stderr on FIFOs read as containerd reads them, and with the
// published events recorded so that their order can be checked (TaskCreate
// < TaskStart < TaskExit < TaskDelete for an init, TaskExecAdded <
// TaskExecStarted < TaskExit for an exec).
//
// A backend supplies a Workload that runs a few canonical programs
// (Program): print a line to stdout and one to stderr and exit N, exit N at
// once, sleep until killed, copy stdin to stdout; busybox sh for runc, the
// fake engine's scripts for wasm.
//
// Cases: the lifecycle with stdout and stderr fully read by the time the
// exit is reported; exit codes; exec (output, exit code, delete twice, a
// killed exec, an exec of an exited container refused); a burst of
// ExecSync-like execs whose output is drained before their exits are
// reported; stdin echoed, ended by CloseIO, for an init and for an exec
// whose stdin containerd opens after Start; kill before start; kill after
// exit; delete twice and delete of a running container refused; the pod's
// side (a container of a stopped pod refused, pod Stop stops its
// containers, pod Shutdown deletes them); pause and resume where the
// backend can; restart after a crash (a running container and its exec are
// recovered, or reported lost with 255 where they die with the daemon:
// Suite.Lost; an exited one keeps its exit code; a created one can still
// start); a Create cut by a crash rolled back; bad input refused, leaving
// nothing. After every case nothing is left: no record, no mount below the
// state or work directory, nothing the Sandboxer's Leftovers reports.
package tasktest
