// Package controller serves containerd's Sandbox API
// (containerd.services.sandbox.v1.Controller) over gRPC for one sandbox
// technology, given as a sandbox.Driver.
//
// It owns what every sandboxer needs the same way: ids are validated before
// any use, calls on one sandbox are serialised by a per-id lock, the state of
// each sandbox is persisted atomically through shared/store before a call
// answers, and on daemon start every persisted sandbox is recovered through
// the driver. Stop and Shutdown are idempotent (an unknown sandbox is already
// stopped and already gone), Wait fans out to any number of callers, and
// errors are errdefs categories inside, gRPC status only at the edge.
package controller
