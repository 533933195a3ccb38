// Package wasi is the seam between the wasm sandboxer and a WebAssembly
// engine: the Engine, Module and Instance interfaces every engine implements
// (wasmtime through wasmtime-go, wazero in pure Go, WasmEdge later), and the
// value types that describe one run of a WASI preview1 module.
//
// The sandboxer never imports an engine's own API. It asks an Engine to load
// a module (compiling it, or taking it from the compiled-module cache), then
// starts instances of it with a RunConfig and waits for their Result. An
// engine owns three promises the sandboxer cannot keep for it:
//
//   - Kill ends an instance within 100 ms whatever the module is doing:
//     running guest code, sleeping in poll_oneoff, blocked reading stdin.
//   - Exit codes are the module's own, 0 to 255, as it passed them to
//     proc_exit; a trap is a non-zero code with the trap's message.
//   - A module that grows its memory past RunConfig.MemoryLimit fails on its
//     own; the process hosting it lives on.
//
// The conformance suite in package wasitest checks these for every engine.
package wasi
