package wazero

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	wt "github.com/bytecodealliance/wasmtime-go/v39"
	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasmsb"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/sandboxtest"
	"github.com/magnetar-runtime/magnetar/shared/task"
	"github.com/magnetar-runtime/magnetar/shared/tasktest"
)

// suiteGuest is the task suite's programs as one WASI command, chosen by
// the first letter of argv[1]: "print OUT ERR N" (OUT and ERR a line each
// on stdout and stderr, exit N), "exit N", "sleep" (until killed), "cat"
// (stdin to stdout until EOF). Memory: iovec at 0, nwritten/nread at 8,
// argc and argv size at 16 and 20, the poll subscription at 2048 and its
// event at 2112, the cat buffer at 4096, argv pointers at 8192 and their
// bytes at 12288.
const suiteGuest = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1000) "\n")
  (func $write (param $fd i32) (param $p i32) (param $n i32)
    (i32.store (i32.const 0) (local.get $p))
    (i32.store (i32.const 4) (local.get $n))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func $strlen (param $p i32) (result i32) (local $q i32)
    (local.set $q (local.get $p))
    (block $done (loop $l
      (br_if $done (i32.eqz (i32.load8_u (local.get $q))))
      (local.set $q (i32.add (local.get $q) (i32.const 1)))
      (br $l)))
    (i32.sub (local.get $q) (local.get $p)))
  (func $arg (param $i i32) (result i32)
    (i32.load (i32.add (i32.const 8192) (i32.mul (local.get $i) (i32.const 4)))))
  (func $line (param $fd i32) (param $p i32)
    (call $write (local.get $fd) (local.get $p) (call $strlen (local.get $p)))
    (call $write (local.get $fd) (i32.const 1000) (i32.const 1)))
  (func $atoi (param $p i32) (result i32) (local $n i32) (local $c i32)
    (block $done (loop $l
      (local.set $c (i32.load8_u (local.get $p)))
      (br_if $done (i32.lt_u (local.get $c) (i32.const 48)))
      (br_if $done (i32.gt_u (local.get $c) (i32.const 57)))
      (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (i32.sub (local.get $c) (i32.const 48))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $l)))
    (local.get $n))
  (func (export "_start") (local $mode i32) (local $n i32)
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $args_get (i32.const 8192) (i32.const 12288)))
    (if (i32.lt_u (i32.load (i32.const 16)) (i32.const 2)) (then (call $proc_exit (i32.const 2))))
    (local.set $mode (i32.load8_u (call $arg (i32.const 1))))
    (if (i32.eq (local.get $mode) (i32.const 112)) (then ;; print
      (call $line (i32.const 1) (call $arg (i32.const 2)))
      (call $line (i32.const 2) (call $arg (i32.const 3)))
      (call $proc_exit (call $atoi (call $arg (i32.const 4))))))
    (if (i32.eq (local.get $mode) (i32.const 101)) (then ;; exit
      (call $proc_exit (call $atoi (call $arg (i32.const 2))))))
    (if (i32.eq (local.get $mode) (i32.const 99)) (then ;; cat
      (block $eof (loop $l
        (i32.store (i32.const 0) (i32.const 4096))
        (i32.store (i32.const 4) (i32.const 4096))
        (br_if $eof (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $eof (i32.eqz (local.get $n)))
        (call $write (i32.const 1) (i32.const 4096) (local.get $n))
        (br $l)))
      (call $proc_exit (i32.const 0))))
    (if (i32.eq (local.get $mode) (i32.const 115)) (then ;; sleep, an hour at a time
      (loop $l
        (i64.store (i32.const 2048) (i64.const 7))
        (i32.store8 (i32.const 2056) (i32.const 0))
        (i32.store (i32.const 2064) (i32.const 1))
        (i64.store (i32.const 2072) (i64.const 3600000000000))
        (i64.store (i32.const 2080) (i64.const 0))
        (i32.store16 (i32.const 2088) (i32.const 0))
        (drop (call $poll_oneoff (i32.const 2048) (i32.const 2112) (i32.const 1) (i32.const 2160)))
        (br $l))))
    (call $proc_exit (i32.const 2))))`

// TestTaskSuite runs the wasm sandboxer's task backend on this engine
// through the task conformance suite (the sandboxer's own tests run it on a
// fake engine): real module instances, stdio through WASI fd_write and
// fd_read, kills of modules blocked in poll_oneoff.
func TestTaskSuite(t *testing.T) {
	guest, err := wt.Wat2Wasm(suiteGuest)
	if err != nil {
		t.Fatal(err)
	}
	sb := wasmsb.Sandboxer(map[string]wasi.New{Name: New})
	tasktest.Run(t, &tasktest.Suite{
		Sandboxer: &sandboxtest.Sandboxer{
			Name: wasmsb.Name,
			New: func(t *testing.T, env *daemon.Env) (sandbox.Driver, task.Backend) {
				cfg := sb.NewConfig().(*wasmsb.Config)
				cfg.Dir = env.Dir
				cfg.Wasm.DefaultEngine = Name
				d, be, err := sb.Build(env, cfg)
				if err != nil {
					t.Fatal(err)
				}
				return d, be
			},
			Caches: []string{"modcache"},
			Pod: func(t *testing.T, id string) *sandboxapi.ControllerCreateRequest {
				return &sandboxapi.ControllerCreateRequest{SandboxID: id, Sandboxer: wasmsb.HandlerWazero,
					Options: sandboxtest.PodOptions(t, &runtime.PodSandboxConfig{})}
			},
		},
		Workload: tasktest.Workload{
			Bundle: func(t *testing.T, bundle string) []*types.Mount {
				image := bundle + ".image"
				if err := os.MkdirAll(filepath.Join(image, "bin"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(image, "bin", "guest.wasm"), guest, 0o644); err != nil {
					t.Fatal(err)
				}
				sp := &specs.Spec{Version: specs.Version, Root: &specs.Root{Path: image},
					Process: &specs.Process{Env: []string{"PATH=/bin"}, Cwd: "/"}}
				b, err := json.Marshal(sp)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			Args: func(p tasktest.Program) []string {
				switch p.Kind {
				case tasktest.Print:
					return []string{"/bin/guest.wasm", "print", p.Stdout, p.Stderr, strconv.Itoa(p.Code)}
				case tasktest.Exit:
					return []string{"/bin/guest.wasm", "exit", strconv.Itoa(p.Code)}
				case tasktest.Sleep:
					return []string{"/bin/guest.wasm", "sleep"}
				case tasktest.Cat:
					return []string{"/bin/guest.wasm", "cat"}
				}
				return []string{"/bin/missing.wasm"}
			},
		},
		Lost: "modules run inside the daemon and die with it",
	})
}
