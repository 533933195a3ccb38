// Package enginekit holds the pieces both wasm engines need around a
// running instance and that have nothing engine-specific in them: the
// interruptible stdin (a pump goroutine started on the first read, so an
// idle instance costs none, whose reads a Kill abandons), writes to the
// stdio writers that a Kill does not wait for, the per-thread CPU clock,
// and the mapping of a run's end to a wasi.Result.
//
// It is not part of the seam: the sandboxer never imports it.
package enginekit
