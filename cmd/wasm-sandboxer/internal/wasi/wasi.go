package wasi

import (
	"context"
	"errors"
	"io"
	"time"
)

// Engine compiles and runs WASI preview1 modules. It is safe for concurrent
// use.
type Engine interface {
	// Name is the engine's short name as configured: "wasmtime", "wazero".
	Name() string
	// Load returns the compiled module for the wasm bytes, from the
	// compiled-module cache when an entry for their digest is there.
	// Invalid bytes fail with an error wrapping ErrInvalidModule.
	Load(ctx context.Context, wasm []byte) (Module, error)
	// Close kills the instances still running, waits for them and
	// releases the engine; Load and Start fail after it.
	Close() error
}

// Module is a compiled module, shared by every instance started from it.
// The engine keeps the compiled code in memory while any Module of a Load
// or any instance refers to it; after the last one, the next Load of the
// same bytes reads the on-disk cache.
type Module interface {
	// Digest is the content digest of the wasm bytes ("sha256:<hex>").
	Digest() string
	// Info says how the Load that returned this Module found it: compiled,
	// shared from memory or taken from the on-disk cache.
	Info() LoadInfo
	// Start instantiates the module and runs its _start export in the
	// background. An error here (a missing import, a bad preopen) means
	// nothing ran and nothing is left behind; it wraps
	// errdefs.ErrInvalidArgument for a bad RunConfig or a module that cannot
	// be instantiated (a missing import, an initial memory over the limit)
	// and errdefs.ErrFailedPrecondition after Close. ctx carries the logger
	// and bounds only the start itself: cancelling it later does not end
	// the instance (Kill does).
	Start(ctx context.Context, cfg *RunConfig) (Instance, error)
	// Close releases this Load's hold on the module; instances already
	// started keep running. Every Module returned by Load is closed once.
	Close() error
}

// New is the constructor every engine package exports as New, so that the
// sandboxer picks an engine by name from a table of them.
type New func(cfg EngineConfig) (Engine, error)

// LoadSource is where Load found a compiled module.
type LoadSource string

const (
	// LoadCompiled: the bytes were compiled now (and written to the cache).
	LoadCompiled LoadSource = "compiled"
	// LoadMemory: the engine already held the compiled module (another
	// container of the same image); nothing was read or compiled.
	LoadMemory LoadSource = "memory"
	// LoadDisk: the compiled module came from the on-disk cache, written by
	// this process or an earlier one; nothing was compiled.
	LoadDisk LoadSource = "disk"
)

// LoadInfo is how one Load found its module, for logs, metrics and tests
// ("no compile on the second start").
type LoadInfo struct {
	Source LoadSource
	// Duration is the time Load took.
	Duration time.Duration
	// CacheError is set when the cache could not be used (a corrupt entry
	// that was recompiled, a failed write); Load still succeeded.
	CacheError string
}

// RunConfig is one run of a module: a container's process or an exec.
type RunConfig struct {
	// Args are WASI's argv; Args[0] is the module's own path, as in OCI.
	Args []string
	// Env is WASI's environment, "KEY=VALUE" entries.
	Env []string
	// Cwd is the working directory inside the preopens ("/" when empty).
	// WASI preview1 has no working directory of its own: engines pass it as
	// PWD in the environment (unless Env sets PWD), which is where Go's
	// wasip1 runtime looks; wasi-libc programs resolve relative paths
	// against "/" whatever it says.
	Cwd string
	// Preopens are host directories the module sees at guest paths: the
	// rootfs at "/", bind mounts at their destination. A guest path that
	// climbs out with ".." is refused by the engine.
	Preopens []Preopen
	// Stdin is read when the module reads fd 0 (by a goroutine started on
	// the first read, one chunk ahead); nil reads as empty. The engine
	// never blocks a Kill on it: when the run ends (an exit or a Kill) a
	// read in flight is abandoned, and ended with a past SetReadDeadline
	// when Stdin has one (an *os.File pipe or FIFO); the owner closes Stdin
	// after Done.
	Stdin io.Reader
	// Stdout and Stderr receive fd 1 and 2; nil discards. A write blocked
	// on a full FIFO does not hold up Kill either; the owner closes them
	// after Done.
	Stdout, Stderr io.Writer
	// MemoryLimit bounds the module's linear memory in bytes; 0 is no limit
	// beyond the engine's own.
	MemoryLimit int64
}

// Preopen maps a host directory into the module.
type Preopen struct {
	Host     string
	Guest    string
	ReadOnly bool
}

// Instance is one running module.
type Instance interface {
	// Kill ends the instance; Done is closed within 100 ms of it whatever
	// the module is doing. Idempotent, and harmless after the exit.
	Kill()
	// Done is closed once the instance has ended and its output is written.
	Done() <-chan struct{}
	// Result is how the instance ended; valid once Done is closed.
	Result() Result
	// Stats is the instance's resource use so far; safe at any time.
	Stats() Stats
}

// Result is how an instance ended.
type Result struct {
	// ExitCode is proc_exit's code (0..255), 0 when _start returned,
	// ExitCodeKilled when killed, ExitCodeTrap when the module trapped.
	ExitCode uint32
	// Killed is set when Kill ended it.
	Killed bool
	// Trap is the trap message when the module trapped ("" otherwise),
	// written to the module's stderr as well.
	Trap string
	// OutOfMemory is set when the module failed (a non-zero exit or a
	// trap) with its linear memory at MemoryLimit, less than the step a
	// failed memory.grow would have taken: a best-effort reading, as no
	// engine reports the refused grow itself.
	OutOfMemory bool
	// ExitedAt is when it ended.
	ExitedAt time.Time
}

// Stats is an instance's resource use.
type Stats struct {
	// MemoryBytes is the module's linear memory size. Engines that cannot
	// read it from another goroutine while the module runs sample it at
	// each host call (see the engine's package doc).
	MemoryBytes uint64
	// MemoryLimit is the limit in force; 0 for none.
	MemoryLimit uint64
	// CPU is the CPU time the instance used, guest and host calls, read
	// from the clock of the OS thread it runs on.
	CPU time.Duration
}

// Exit codes the engine reports for an instance that did not exit itself.
const (
	// ExitCodeKilled is a killed instance's code, as for SIGKILL.
	ExitCodeKilled = 137
	// ExitCodeTrap is a trapped instance's code, as wasmtime's CLI gives
	// for a trap (128 + SIGABRT).
	ExitCodeTrap = 134
)

// EngineConfig is what every engine is built from.
type EngineConfig struct {
	// CacheDir holds the compiled-module cache; "" disables it (modules are
	// still shared in memory). The sandboxer passes <dir>/modcache/<engine>;
	// each engine owns its directory.
	CacheDir string
	// CacheMaxBytes bounds the cache; the least recently used entries are
	// evicted past it. 0 means the default (1 GiB).
	CacheMaxBytes int64
}

// ErrInvalidModule is wrapped by Load for bytes that are not a valid module.
var ErrInvalidModule = errors.New("invalid wasm module")
