package wasmsb

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/sandboxtest"
	"github.com/magnetar-runtime/magnetar/shared/task"
	"github.com/magnetar-runtime/magnetar/shared/tasktest"
)

// The conformance suites run the wasm sandboxer with the fake engine
// (fake_test.go), whose modules follow the script in their args. Without
// root, the rootfs is the image directory itself (config.json's root.path)
// rather than a bind mount of it.

// fakeSandboxer is the wasm sandboxer over the fake engine.
func fakeSandboxer() *sandboxtest.Sandboxer {
	return &sandboxtest.Sandboxer{
		Name: Name,
		New: func(t *testing.T, env *daemon.Env) (sandbox.Driver, task.Backend) {
			cfg := DefaultConfig("wasmtime", "wazero")
			cfg.Dir = env.Dir
			d, be, err := build(env, cfg, map[string]wasi.New{"wasmtime": newFake, "wazero": newFake})
			if err != nil {
				t.Fatal(err)
			}
			return d, be
		},
		Lacks:  map[sandboxtest.Capability]string{sandboxtest.PodProcess: "a wasm pod is a record: no process of its own"},
		Caches: []string{"modcache"},
	}
}

func TestSandboxSuite(t *testing.T) {
	sandboxtest.Run(t, fakeSandboxer())
}

func TestTaskSuite(t *testing.T) {
	tasktest.Run(t, &tasktest.Suite{
		Sandboxer: fakeSandboxer(),
		Workload:  fakeWorkload(),
		Lost:      "modules run inside the daemon and die with it",
	})
}

// fakeWorkload runs the suite's programs as fake-engine scripts of the
// module /bin/m.wasm.
func fakeWorkload() tasktest.Workload {
	return tasktest.Workload{
		Bundle: func(t *testing.T, bundle string) []*types.Mount {
			image := bundle + ".image"
			if err := os.MkdirAll(filepath.Join(image, "bin"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(image, "bin", "m.wasm"), testModule, 0o644); err != nil {
				t.Fatal(err)
			}
			sp := &specs.Spec{Version: specs.Version, Root: &specs.Root{Path: "rootfs"},
				Process: &specs.Process{Env: []string{"PATH=/bin"}, Cwd: "/"}}
			var rootfs []*types.Mount
			if os.Geteuid() == 0 {
				rootfs = []*types.Mount{{Type: "bind", Source: image, Options: []string{"rbind", "ro"}}}
			} else {
				sp.Root.Path = image
			}
			writeJSON(t, filepath.Join(bundle, "config.json"), sp)
			return rootfs
		},
		Args: func(p tasktest.Program) []string {
			switch p.Kind {
			case tasktest.Print:
				return []string{"/bin/m.wasm", "print", p.Stdout, p.Stderr, strconv.Itoa(p.Code)}
			case tasktest.Exit:
				return []string{"/bin/m.wasm", "exit", strconv.Itoa(p.Code)}
			case tasktest.Sleep:
				return []string{"/bin/m.wasm", "sleep"}
			case tasktest.Cat:
				return []string{"/bin/m.wasm", "cat"}
			}
			return []string{"/bin/missing.wasm"}
		},
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
