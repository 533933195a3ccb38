// Package daemon is the main of every Magnetar sandboxer: the common command
// line (--listen, --dir, --config, --containerd-address, --log-level,
// --version), configuration loading, the two servers (the Sandbox API over
// gRPC for containerd's proxy plugin, the Task API over ttrpc for the tasks),
// recovery of persisted sandboxes and tasks, systemd readiness and watchdog
// notifications, and the shim-style `delete` invocation containerd makes of a
// runtime binary after losing a task connection.
//
// The daemon's lifetime context is separate from every request context: it
// ends on SIGTERM or SIGINT, which stops the servers but leaves the pods
// running, so that a restarted daemon picks them up again.
package daemon
