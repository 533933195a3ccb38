// Package wasmtime is the wasm sandboxer's default engine, on wasmtime-go
// v39 (cgo, Cranelift). New builds one wasmtime Engine for the process; every
// instance gets its own Store.
//
// # Kill
//
// A kill must end an instance within 100 ms whatever it does. Two things
// can hold it up: guest code (a loop with no calls) and a host call that
// blocks (poll_oneoff, a stdin read, a write to a full FIFO).
//
// Guest code: the engine compiles with epoch interruption, each store's
// deadline is one epoch ahead, and a store-local epoch-deadline callback
// (wasmtime_store_epoch_deadline_callback from wasmtime's C API, which
// wasmtime-go v39 does not wrap: declared in epoch.go's cgo preamble and
// linked from the libwasmtime.a wasmtime-go links anyway) decides what
// happens when the deadline passes. Kill sets the store's flag (C memory)
// and increments the engine's epoch once: every running store reaches its
// deadline, the killed one gets an error (a trap) from the callback, the
// others one more epoch and go on. The callback is plain C, so no Go runs
// on a wasm thread and there is no ticker: the epoch only moves on a Kill.
// The callback needs the *wasmtime_store_t, which wasmtime-go keeps in an
// unexported first field of Store; storeLayoutOK checks that layout
// (reflect) and New refuses to run on another one.
//
// The alternative, one wasmtime Engine per instance (IncrementEpoch then
// only touches it), deserializes the module once per instance and gives up
// the in-memory sharing of one compiled module by every container of an
// image. Measured for the 2.8 MB Go guest (50 instances instantiated, not
// started): engine + NewModuleDeserializeFile + instantiate 536 µs and
// +804 KiB RSS per instance, against 177 µs and +56 KiB with one shared
// Engine and Module. The callback keeps one Engine and one Module per image,
// and Kill stays within the bound: 0.3 ms for a spinning, sleeping,
// stdin-blocked or stdout-blocked module, 14 ms for the last of 200 killed
// at once (wasitest logs).
//
// Host calls: the engine's Linker defines WASI and then shadows (FuncNew,
// AllowShadowing) the calls that block or need our semantics: poll_oneoff
// (clock and fd subscriptions, waited for in Go on a select that includes
// the instance's kill channel), fd_read on fd 0 (the enginekit.Stdin pump,
// O_NONBLOCK honoured through shadowed fd_fdstat_set_flags/fd_fdstat_get
// on fd 0, which Go guests set at start), fd_write on fd 1 and 2 (the
// RunConfig's writers, in a goroutine a Kill does not wait for; so no
// SetStdoutFile path is opened), clock_time_get (one monotonic base with
// poll_oneoff's absolute deadlines; the CPU clocks are the instance's) and
// proc_exit (wasmtime's own refuses codes 126..255: the shadow records the
// code and ends the run with a trap the instance recognises). A shadow
// that leaves an fd alone calls the original: wasmtime's WASI functions
// find memory through their caller's "memory" export, which a Func.Call
// from Go lacks, so the originals are reached through a trampoline
// instance per store (imports the guest's memory and the originals,
// re-exports the memory, forwards each call). Every shadow checks the
// kill flag on entry. Guest-opened FIFOs inside preopens (a read of one
// would block in wasmtime's own fd_read) are the one host call left that
// a Kill cannot cut short.
//
// # Memory and CPU
//
// RunConfig.MemoryLimit is a Store limiter (memory.grow past it returns
// -1). wasmtime reports no refused grow, so Result.OutOfMemory is
// enginekit.NearLimit: a failed run with the memory within one growth step
// of the limit. A Store is not safe to read from another thread while it
// runs, so Stats' memory is sampled at every shadowed host call (and at
// instantiation and the end) into an atomic; a module that never calls the
// host shows its size at the last call. Each instance runs on one locked OS
// thread (a host call runs on the wasm thread inside cgo anyway), and CPU
// is that thread's own CPU clock, read by tid (enginekit.CPUMeter).
//
// # Compiled-module cache
//
// Load keys modules by the sha256 of their bytes. In memory, one compiled
// Module per digest is shared by every Load and instance (reference
// counted; dropped with the last). On disk (modcache, under
// EngineConfig.CacheDir): the Serialize()d module in <hex>/module.cwasm,
// guarded by modcache's checksummed meta file (wasmtime's deserialization
// of corrupt bytes is unsafe), verified before NewModuleDeserializeFile
// maps it. The cache tag is the wasmtime-go version, OS/arch and the epoch
// setting; wasmtime also refuses an artifact of another version or config,
// and either way the module is recompiled and the entry replaced.
//
// # Figures
//
// On this 2-core machine, shared with other builds (wasitest's Figures,
// MAGNETAR_WASM_FIGURES=1 go test -v -run Figures), for the 2.8 MB Go
// guest: Load cold 1.5 s (Cranelift compile, serialize, cache write);
// Load shared from memory 1.9 ms (all of it the sha256 of the bytes); Load
// from disk in a new engine (a restarted daemon) 4.0 ms (sha256, CRC-32C of
// the 9 MB artifact, mmap); instantiate + run hello 1.4 ms (WAT hello
// 0.11 ms). Idle instances: 1.8 MiB RSS per sleeping Go guest (its Go
// heap), 35 KiB per sleeping WAT module; one OS thread each (the host call
// waits on the wasm thread's C stack), so 1000 idle containers are 1000
// threads, well under Go's 10000 default. Measured once with 1000 sleeping
// WAT instances in one engine: started in 0.34 s, 52 KiB RSS each, 1007
// threads, all 1000 killed (Kill to the last Done) in 92 ms.
package wasmtime
