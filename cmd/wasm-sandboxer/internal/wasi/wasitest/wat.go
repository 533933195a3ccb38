package wasitest

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	wt "github.com/bytecodealliance/wasmtime-go/v39"
)

// The test modules, in WAT, so that the suite needs no wasm toolchain.
// Memory layout: 0..24 scratch (iovec at 0, nwritten at 8, fd at 16, nread
// at 20), strings from 1024, the poll subscription at 2048 and its event at
// 2112, buffers from 4096, argv/environ pointers at 8192 and their bytes at
// 12288.
const watPrelude = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1000) "\n")
  (data (i32.const 1100) "ready\n")
  (func $write (param $fd i32) (param $p i32) (param $n i32) (result i32)
    (i32.store (i32.const 0) (local.get $p))
    (i32.store (i32.const 4) (local.get $n))
    (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
  (func $strlen (param $p i32) (result i32) (local $q i32)
    (local.set $q (local.get $p))
    (block $done (loop $l
      (br_if $done (i32.eqz (i32.load8_u (local.get $q))))
      (local.set $q (i32.add (local.get $q) (i32.const 1)))
      (br $l)))
    (i32.sub (local.get $q) (local.get $p)))
  ;; exit 100+errno when a call failed
  (func $check (param $e i32)
    (if (local.get $e) (then (call $proc_exit (i32.add (i32.const 100) (local.get $e))))))
  (func $ready (call $check (call $write (i32.const 1) (i32.const 1100) (i32.const 6))))
  ;; print the NUL-terminated strings whose n pointers are at 8192, one a line
  (func $lines (param $n i32) (local $i i32) (local $p i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $p (i32.load (i32.add (i32.const 8192) (i32.mul (local.get $i) (i32.const 4)))))
      (call $check (call $write (i32.const 1) (local.get $p) (call $strlen (local.get $p))))
      (call $check (call $write (i32.const 1) (i32.const 1000) (i32.const 1)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))
`

func watString(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "\\%02x", s[i])
	}
	return b.String()
}

// module completes the prelude; body closes the module.
func module(body string) string { return watPrelude + body }

var (
	watHello = module(`
  (data (i32.const 1024) "hello stdout\n")
  (data (i32.const 1040) "hello stderr\n")
  (func (export "_start")
    (call $check (call $write (i32.const 1) (i32.const 1024) (i32.const 13)))
    (call $check (call $write (i32.const 2) (i32.const 1040) (i32.const 13)))))`)

	// argv then environ, one a line
	watArgsEnv = module(`
  (func (export "_start")
    (call $check (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (call $check (call $args_get (i32.const 8192) (i32.const 12288)))
    (call $lines (i32.load (i32.const 16)))
    (call $check (call $environ_sizes_get (i32.const 16) (i32.const 20)))
    (call $check (call $environ_get (i32.const 8192) (i32.const 12288)))
    (call $lines (i32.load (i32.const 16)))))`)

	watTrap = module(`
  (func (export "_start") unreachable))`)

	// a load far out of the one-page memory
	watOutOfBounds = module(`
  (func (export "_start")
    (drop (i32.load (i32.const 0x7ffffff0)))))`)

	// unbounded recursion
	watStackOverflow = module(`
  (func $f (param i32) (result i32)
    (i32.add (call $f (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "_start") (drop (call $f (i32.const 0)))))`)

	// grow a page at a time until memory.grow fails, then exit 12 (ENOMEM)
	watMemGrow = module(`
  (func (export "_start")
    (loop $l
      (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1))
        (then (call $proc_exit (i32.const 12))))
      (br $l))))`)

	watSpin = module(`
  (func (export "_start")
    (call $ready)
    (loop $l (br $l))))`)

	// say ready, then write to stderr forever
	watStderrFlood = module(`
  (data (i32.const 1024) "flood\n")
  (func (export "_start")
    (call $ready)
    (loop $l
      (call $check (call $write (i32.const 2) (i32.const 1024) (i32.const 6)))
      (br $l))))`)

	// echo stdin to stdout until EOF
	watStdin = module(`
  (func (export "_start")
    (call $ready)
    (block $eof (loop $l
      (i32.store (i32.const 0) (i32.const 4096))
      (i32.store (i32.const 4) (i32.const 4096))
      (call $check (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 20)))
      (br_if $eof (i32.eqz (i32.load (i32.const 20))))
      (call $check (call $write (i32.const 1) (i32.const 4096) (i32.load (i32.const 20))))
      (br $l)))))`)
)

// watBadImport needs a host function no engine has.
const watBadImport = `(module
  (import "env" "nope" (func $nope))
  (memory (export "memory") 1)
  (func (export "_start") (call $nope)))`

// watNoStart is a valid module that is not a WASI command.
const watNoStart = `(module (memory (export "memory") 1) (func (export "main")))`

// watExit exits with code through proc_exit.
func watExit(code int) string {
	return module(fmt.Sprintf(`
  (func (export "_start") (call $proc_exit (i32.const %d))))`, code))
}

// watSleep sleeps ns in one poll_oneoff on the monotonic clock, then prints
// "slept".
func watSleep(ns int64) string {
	return module(fmt.Sprintf(`
  (data (i32.const 1024) "slept\n")
  (func (export "_start")
    (i64.store (i32.const 2048) (i64.const 7))
    (i32.store8 (i32.const 2056) (i32.const 0))
    (i32.store (i32.const 2064) (i32.const 1))
    (i64.store (i32.const 2072) (i64.const %d))
    (i64.store (i32.const 2080) (i64.const 0))
    (i32.store16 (i32.const 2088) (i32.const 0))
    (call $ready)
    (call $check (call $poll_oneoff (i32.const 2048) (i32.const 2112) (i32.const 1) (i32.const 2160)))
    (call $check (call $write (i32.const 1) (i32.const 1024) (i32.const 6)))))`, ns))
}

// watReadFile prints the file at path, relative to the first preopen (fd 3).
func watReadFile(path string) string {
	return module(fmt.Sprintf(`
  (data (i32.const 1024) "%s")
  (func (export "_start")
    (call $check (call $path_open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const %d)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 4096))
    (i32.store (i32.const 4) (i32.const 4096))
    (call $check (call $fd_read (i32.load (i32.const 16)) (i32.const 0) (i32.const 1) (i32.const 20)))
    (call $check (call $write (i32.const 1) (i32.const 4096) (i32.load (i32.const 20))))))`, watString(path), len(path)))
}

// watWriteFile creates (or truncates) path in the preopen at fd and writes
// content to it.
func watWriteFile(fd int, path, content string) string {
	return module(fmt.Sprintf(`
  (data (i32.const 1024) "%s")
  (data (i32.const 1536) "%s")
  (func (export "_start")
    (call $check (call $path_open (i32.const %d) (i32.const 0) (i32.const 1024) (i32.const %d)
      (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 16)))
    (call $check (call $write (i32.load (i32.const 16)) (i32.const 1536) (i32.const %d)))))`,
		watString(path), watString(content), fd, len(path), len(content)))
}

var (
	wasmMu    sync.Mutex
	wasmCache = map[string][]byte{}
)

// wasm compiles WAT with wasmtime's Wat2Wasm (test code only: the wazero
// engine's tests use it too).
func wasm(t testing.TB, wat string) []byte {
	t.Helper()
	wasmMu.Lock()
	defer wasmMu.Unlock()
	if b, ok := wasmCache[wat]; ok {
		return b
	}
	b, err := wt.Wat2Wasm(wat)
	if err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, wat)
	}
	wasmCache[wat] = b
	return b
}
