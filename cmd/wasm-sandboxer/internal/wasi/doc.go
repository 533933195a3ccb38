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
//
// # Engines
//
// Each engine is a package exporting a New (the type New here):
// internal/wasmtime (the default), internal/wazero (pure Go). Every Module
// a Load returns carries a LoadInfo saying whether it was compiled, shared
// from memory or read from the on-disk cache, so the sandboxer can log it
// and tests can prove that a second start compiles nothing.
//
// WasmEdge fits the same seam as a drop-in package (internal/wasmedge,
// behind a build tag, as it needs libwasmedge and its headers, which this
// machine kind cannot install): its VM takes WASI args, env and preopens,
// host functions can shadow the blocking WASI calls as the wasmtime engine
// does, an async execution can be cancelled for Kill, a memory page limit
// is a config setting, and its AOT compiler output can sit in the same
// digest-keyed cache. Nothing in these interfaces names an engine's types.
package wasi
