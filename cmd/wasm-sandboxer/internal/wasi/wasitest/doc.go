// Package wasitest is the conformance suite every wasm engine's tests run
// (Run), so that the promises of package wasi are checked the same way for
// wasmtime, wazero and any later engine: stdio, args, env, cwd, preopens
// (read-only, no escape), exit codes 0..255, traps, the memory limit, Kill
// within 100 ms of a spinning, sleeping or stdin-blocked module (200 at
// once too), a real clock, Stats, and the compiled-module cache (hits in
// the same and a new engine, corrupt entries recompiled, eviction under the
// bound).
//
// The modules are WAT, compiled with wasmtime's Wat2Wasm (test code only),
// so the suite needs no wasm toolchain; one subtest builds the Go guest in
// testdata/goguest with GOOS=wasip1 and skips, saying why, without a go
// command. Kill latencies and load times are logged (go test -v) so that
// they can be quoted.
package wasitest
