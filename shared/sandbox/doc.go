// Package sandbox holds the seam between Magnetar's shared scaffolding and a
// sandbox technology: the Driver and Instance interfaces every sandboxer
// implements, the optional interfaces found by type assertion (Updater,
// MetricsReporter, Pinger), and the value types the controller persists.
//
// A technology (runc namespaces, wasm, a VM, an application kernel) is one
// Driver. The controller in shared/controller owns everything else: request
// validation, per-id locking, the state machine, persistence and recovery,
// Wait fan-out and the conversion of errors to gRPC status codes.
package sandbox
