// Package enginekit holds the pieces both wasm engines need around a
// running instance and that have nothing engine-specific in them: the
// interruptible stdin (a pump goroutine started on the first read, so an
// idle instance costs none, whose reads a Kill abandons), writes to the
// stdio writers that a Kill does not wait for, the per-thread CPU clock,
// and the mapping of a run's end to a wasi.Result; and around their
// modules: the module table (Modules: one compiled module per digest,
// shared and reference counted, compiled once for concurrent Loads, the
// LoadInfo, the instances Close kills) and the disk side of an engine whose
// compiled module serializes to one file (Artifact: modcache lookup,
// deserialize, recompile and commit). An engine keeps only how it compiles,
// serializes and deserializes, and its instances.
//
// It is not part of the seam: the sandboxer never imports it.
package enginekit
