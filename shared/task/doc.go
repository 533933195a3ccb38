// Package task serves containerd's Task API v3 (containerd.task.v3.Task) over
// ttrpc for every container of a sandboxer, on top of a pluggable Backend that
// knows how to run processes of one technology (runc, wasm, a guest agent).
//
// The server owns what is the same everywhere: id and path validation, the
// process state machine (created → running → stopped, paused), Wait fan-out,
// tolerant Kill after exit, event order per process (TaskCreate, TaskStart,
// TaskExit, TaskDelete; TaskExecAdded, TaskExecStarted), persistence of the
// container records so a restarted daemon finds its containers again, and the
// rule that Shutdown never ends the daemon: in a sandboxer it only means that
// one container's task connection is no longer needed.
package task
