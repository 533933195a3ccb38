// Package wazero is the wasm sandboxer's second engine, on wazero v1.12.0:
// pure Go, no cgo, its compiler on amd64 and arm64.
//
// # Kill
//
// Each instance runs under a context of its own (Start's ctx only bounds
// the start), in a Runtime built WithCloseOnContextDone: Kill cancels it
// and guest code exits at its next function entry or loop back-edge. The
// host calls that can block wait in Go with the instance's kill channel:
// the nanosleep behind poll_oneoff's clocks (WithNanosleep; wazero's own
// WithSysNanosleep is an uninterruptible time.Sleep, and the default clocks
// are fake: WithSysWalltime and WithSysNanotime make them real), fd 0 (the
// enginekit.Stdin pump behind an io.Reader that is also wazero's Pollable,
// so poll_oneoff on stdin waits here too), and fd 1/2 (writes in a
// goroutine a Kill does not wait for). A run that ends after a Kill is
// reported killed (137), whatever wazero returns (0xffffffff for the
// cancelled context, or the guest's own exit when a cut-short read made it
// return first).
//
// # Memory and CPU
//
// The limit is per instance, through wazero's experimental MemoryAllocator
// given in the instance's context (RuntimeConfig.WithMemoryLimitPages is
// per Runtime, and a Runtime here serves every container of an image):
// a grow past RunConfig.MemoryLimit is refused (memory.grow returns -1),
// which the allocator sees, so Result.OutOfMemory is exact; the size it
// hands out is kept in an atomic, so Stats is safe while the module runs. A
// module whose declared minimum is over the limit fails in Start. CPU is
// counted on a locked OS thread while the instance runs; the thread is
// given back during every blocking wait (sleep, stdin, stdio writes), so an
// idle instance costs a goroutine, not a thread.
//
// # Compiled-module cache
//
// wazero's file cache (NewCompilationCacheWithDir) is opaque: its keys are
// its own hash of the module and the CPU features. So each module gets a
// Runtime of its own whose compilation cache is the module's modcache entry
// directory (<hex digest>/, holding wazero's file); modcache adds what
// wazero lacks: the digest key, the checksummed meta (a corrupt entry is
// removed and recompiled before wazero maps any of it), LRU eviction by
// size across modules, and the version tag. Whether a Load compiled is
// read from the entry's files: unchanged means wazero took its code from
// them (LoadDisk), new or rewritten files mean it compiled (LoadCompiled,
// and the entry is committed again). In memory, one compiled module (and
// its Runtime) per digest is shared by every Load and instance.
//
// # Figures
//
// Same machine and method as the wasmtime engine's, 2.8 MB Go guest: Load
// cold 1.5 s; from memory 1.9 ms (sha256); from disk in a new engine 60 ms
// (wazero reads and relocates its whole file); instantiate + run hello 9 to
// 12 ms (WAT hello 0.07 ms). Idle: 3.5 MiB RSS per sleeping Go guest, 29 KiB
// per sleeping WAT module, no OS thread per instance (7 threads for 200).
// Kill: 0.13 to 0.2 ms for every case, 5 ms for the last of 200. Measured
// once with 1000 sleeping WAT instances: started in 0.14 s, 33 KiB RSS
// each, 7 threads, all killed in 23 ms.
package wazero
