package wasmsb

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

var testModule = []byte("\x00asm\x01\x00\x00\x00fake")

type rig struct {
	t    *testing.T
	d    *driver
	be   *backend
	eng  *fake
	root string
	dir  string
	pods map[string]sandbox.Instance
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	var eng *fake
	factories := map[string]wasi.New{
		"wasmtime": func(c wasi.EngineConfig) (wasi.Engine, error) { e, _ := newFake(c); eng = e.(*fake); return e, nil },
		"wazero":   newFake,
	}
	cfg := DefaultConfig("wasmtime", "wazero")
	cfg.Dir = dir
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env := &daemon.Env{Life: ctx, Name: Name, Dir: dir, TaskAddress: "ttrpc+unix:///x/task.sock"}
	d, be, err := build(env, cfg, factories)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "m.wasm"), testModule, 0o644); err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, d: d.(*driver), be: be.(*backend), eng: eng, root: root, dir: dir, pods: map[string]sandbox.Instance{}}
}

func (r *rig) pod(id string) sandbox.Instance {
	r.t.Helper()
	p, err := r.d.Create(context.Background(), &sandbox.Spec{ID: id, Sandboxer: HandlerWasmtime, Dir: filepath.Join(r.dir, id)})
	if err != nil {
		r.t.Fatal(err)
	}
	r.pods[id] = p
	return p
}

// create makes a container whose stdout goes to a file; it returns the
// container and the file's path.
func (r *rig) create(pod, id string, args ...string) (task.Container, string, error) {
	r.t.Helper()
	bundle := filepath.Join(r.dir, "bundle-"+id)
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		r.t.Fatal(err)
	}
	out := filepath.Join(bundle, "stdout")
	if err := os.WriteFile(out, nil, 0o600); err != nil {
		r.t.Fatal(err)
	}
	sp := &specs.Spec{
		Annotations: map[string]string{sandbox.PodAnnotation: pod},
		Root:        &specs.Root{Path: r.root},
		Process:     &specs.Process{Args: args, Env: []string{"PATH=/bin"}, Cwd: "/"},
		Mounts: []specs.Mount{
			{Destination: "/data", Type: "bind", Source: r.dir, Options: []string{"rbind", "ro"}},
			{Destination: "/etc/hosts", Type: "bind", Source: filepath.Join(bundle, "stdout"), Options: []string{"rbind"}},
			{Destination: "/proc", Type: "proc", Source: "proc"},
		},
		Linux: &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(1 << 20))}}},
	}
	c, err := r.be.Create(context.Background(), &task.CreateRequest{ID: id, Bundle: bundle, Spec: sp, Stdio: stdio.Config{Stdout: out}, Pod: r.pods[pod]})
	return c, out, err
}

func ptr[T any](v T) *T { return &v }

func wait(t *testing.T, p task.Process) uint32 {
	t.Helper()
	select {
	case <-p.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("process did not exit")
	}
	code, _ := p.ExitStatus()
	return code
}

func TestRunExitCodeAndOutput(t *testing.T) {
	r := newRig(t)
	r.pod("p1")
	c, out, err := r.create("p1", "c1", "/bin/m.wasm", "echo", "hello", "wasm")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code := wait(t, c); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	data, _ := os.ReadFile(out)
	if string(data) != "hello wasm\n" {
		t.Fatalf("stdout %q", data)
	}
	cfg := r.eng.starts[0]
	if cfg.MemoryLimit != 1<<20 {
		t.Errorf("memory limit %d", cfg.MemoryLimit)
	}
	// rootfs at /, the directory bind read-only, no file mount, no proc
	if len(cfg.Preopens) != 2 || cfg.Preopens[0].Guest != "/" || cfg.Preopens[0].Host != r.root ||
		cfg.Preopens[1].Guest != "/data" || !cfg.Preopens[1].ReadOnly {
		t.Errorf("preopens %+v", cfg.Preopens)
	}
	if err := c.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}

	c2, _, err := r.create("p1", "c2", "m.wasm", "exit", "42") // found through PATH, loaded once
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code := wait(t, c2); code != 42 {
		t.Fatalf("exit code %d, want 42", code)
	}
	if r.eng.loads != 1 {
		t.Errorf("the same module file was loaded %d times", r.eng.loads)
	}
	// a changed file is loaded again
	if err := os.WriteFile(filepath.Join(r.root, "bin", "m.wasm"), append(testModule, 'x'), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.create("p1", "c3", "/bin/m.wasm", "exit", "0"); err != nil {
		t.Fatal(err)
	}
	if r.eng.loads != 2 {
		t.Errorf("a rewritten module file: %d loads, want 2", r.eng.loads)
	}
	if err := c2.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A module that grows past its memory limit is reported as the kernel's OOM
// killer leaves a Linux container: exit status 137 whatever the module
// exited with, and an OOM notification (containerd's TaskOOM, hence the
// CRI reason OOMKilled); one under its limit exits as it chose.
func TestOutOfMemoryIsOOMKilled(t *testing.T) {
	r := newRig(t)
	r.pod("p1")
	for _, tc := range []struct {
		id, grow string
		code     uint32
		oom      bool
	}{
		{"over", "2097152", 137, true},
		{"under", "4096", 0, false},
	} {
		c, _, err := r.create("p1", tc.id, "/bin/m.wasm", "grow", tc.grow)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if code := wait(t, c); code != tc.code {
			t.Errorf("%s: exit status %d, want %d", tc.id, code, tc.code)
		}
		oom := false
		select {
		case <-c.(task.OOMNotifier).OOM():
			oom = true
		case <-time.After(100 * time.Millisecond):
		}
		if oom != tc.oom {
			t.Errorf("%s: OOM notified %v, want %v", tc.id, oom, tc.oom)
		}
		if err := c.Delete(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBadModules(t *testing.T) {
	r := newRig(t)
	r.pod("p1")
	if _, _, err := r.create("p1", "c1", "/bin/missing.wasm"); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "/bin/missing.wasm") {
		t.Errorf("missing module: %v", err)
	}
	if err := os.WriteFile(filepath.Join(r.root, "bin", "text.wasm"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.create("p1", "c2", "/bin/text.wasm"); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "not a WebAssembly module") {
		t.Errorf("not wasm: %v", err)
	}
	if err := os.WriteFile(filepath.Join(r.root, "bin", "v2.wasm"), []byte("\x00asm\x02\x00\x00\x00"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.create("p1", "c3", "/bin/v2.wasm"); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "/bin/v2.wasm") {
		t.Errorf("invalid module: %v", err)
	}
	// a symlink pointing out of the rootfs resolves inside it
	outside := filepath.Join(r.dir, "outside.wasm")
	if err := os.WriteFile(outside, testModule, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(r.root, "bin", "escape.wasm")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.create("p1", "c4", "/bin/escape.wasm"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("symlink out of the rootfs: %v", err)
	}
	if _, _, err := r.create("p1", "c5", "/../../"+filepath.Base(r.dir)+"/outside.wasm"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("dot-dot out of the rootfs: %v", err)
	}
	if _, _, err := r.create("nopod", "c6", "/bin/m.wasm"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("no pod: %v", err)
	}
	// a rootfs that is not there, as a module that is not (found by
	// hack/rpcfuzz: it was Unknown)
	r.root = filepath.Join(r.dir, "no-rootfs")
	if _, _, err := r.create("p1", "c7", "/bin/m.wasm"); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "rootfs") {
		t.Errorf("missing rootfs: %v", err)
	}
}

func TestKillStatsUpdateMetrics(t *testing.T) {
	r := newRig(t)
	p := r.pod("p1")
	c, _, err := r.create("p1", "c1", "/bin/m.wasm", "sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, err := c.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		t.Fatal(err)
	}
	m := v.(*v1.Metrics)
	if m.Memory.Usage.Usage != 65536 || m.Memory.Usage.Limit != 1<<20 || m.CPU.Usage.Total != uint64(time.Millisecond) {
		t.Errorf("stats %+v", m)
	}
	err = c.Update(context.Background(), &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(2 << 20))}, CPU: &specs.LinuxCPU{Shares: ptr(uint64(2))}}, nil)
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "cpu") || !strings.Contains(err.Error(), "applied memory.limit") {
		t.Errorf("update: %v", err)
	}
	// SIGWINCH is ignored; SIGTERM ends a module at once
	_ = c.Kill(context.Background(), syscall.SIGWINCH, false)
	select {
	case <-c.Exited():
		t.Fatal("SIGWINCH ended the module")
	case <-time.After(20 * time.Millisecond):
	}
	if err := c.Kill(context.Background(), syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	if code := wait(t, c); code != wasi.ExitCodeKilled {
		t.Fatalf("killed: exit code %d", code)
	}
	if err := p.Stop(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	<-p.Exited()
}

func TestExec(t *testing.T) {
	r := newRig(t)
	r.pod("p1")
	c, _, err := r.create("p1", "c1", "/bin/m.wasm", "sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(r.dir, "exec.out")
	if err := os.WriteFile(out, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := c.Exec(context.Background(), "e1", &specs.Process{Args: []string{"/bin/m.wasm", "echo", "from", "exec"}}, stdio.Config{Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code := wait(t, e); code != 0 {
		t.Fatalf("exec exit %d", code)
	}
	if data, _ := os.ReadFile(out); string(data) != "from exec\n" {
		t.Fatalf("exec stdout %q", data)
	}
	if _, err := c.Exec(context.Background(), "e2", &specs.Process{Args: []string{"/bin/sh"}}, stdio.Config{}); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("exec of a missing module: %v", err)
	}
	if _, err := c.Exec(context.Background(), "e3", &specs.Process{Args: []string{"/bin/m.wasm"}}, stdio.Config{Terminal: true}); !errdefs.IsNotImplemented(err) {
		t.Errorf("exec -t: %v", err)
	}
	if err := e.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRecoverReportsLost(t *testing.T) {
	r := newRig(t)
	r.pod("p1")
	c, _, err := r.create("p1", "c1", "/bin/m.wasm", "sleep")
	if err != nil {
		t.Fatal(err)
	}
	rec := &task.Record{ID: "c1", Status: "running", Backend: c.State()}
	r2 := newRig(t)
	rc, err := r2.be.Recover(context.Background(), rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if code := wait(t, rc); code != ExitCodeLost {
		t.Fatalf("recovered running container: exit %d, want %d", code, ExitCodeLost)
	}
	if err := rc.Start(context.Background()); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("start of a lost container: %v", err)
	}
	if err := rc.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestEngineFromSandboxerName(t *testing.T) {
	r := newRig(t)
	p, err := r.d.Create(context.Background(), &sandbox.Spec{ID: "pz", Sandboxer: HandlerWazero, Dir: r.dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.(*pod).st.Engine; got != "wazero" {
		t.Errorf("engine of %s: %s", HandlerWazero, got)
	}
	p2, err := r.d.Create(context.Background(), &sandbox.Spec{ID: "px", Sandboxer: "other", Dir: r.dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := p2.(*pod).st.Engine; got != "wasmtime" {
		t.Errorf("engine of an unnamed sandboxer: %s", got)
	}
}

func TestConfig(t *testing.T) {
	c := DefaultConfig("wasmtime", "wazero")
	if _, err := config.Decode("[engines]\nmy-wasm = \"wazero\"\n[cache]\nmax_bytes = 1000\n", c); err != nil {
		t.Fatal(err)
	}
	if c.EngineFor("my-wasm") != "wazero" || c.EngineFor(HandlerWasmtime) != "wasmtime" || c.Cache.MaxBytes != 1000 {
		t.Errorf("decoded %+v", c)
	}
	c = DefaultConfig("wasmtime", "wazero")
	if _, err := config.Decode("[engines]\nx = \"wasmedge\"\n", c); err == nil || !strings.Contains(err.Error(), "engines.x") {
		t.Errorf("unknown engine: %v", err)
	}
	c = DefaultConfig("wasmtime", "wazero")
	if _, err := config.Decode("[wasm]\nbogus = 1\n", c); err == nil {
		t.Error("unknown key accepted")
	}
}

func TestTerminalAndUpdate(t *testing.T) {
	r := newRig(t)
	r.pod("p1")
	bundle := filepath.Join(r.dir, "bundle-tty")
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	sp := &specs.Spec{Annotations: map[string]string{sandbox.PodAnnotation: "p1"}, Root: &specs.Root{Path: r.root},
		Process: &specs.Process{Args: []string{"/bin/m.wasm"}, Terminal: true}}
	// InvalidArgument, never NotImplemented: containerd would retry on the v2 API
	_, err := r.be.Create(context.Background(), &task.CreateRequest{ID: "tty", Bundle: bundle, Spec: sp, Stdio: stdio.Config{Terminal: true}, Pod: r.pods["p1"]})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "terminal") {
		t.Errorf("tty container: %v", err)
	}
	c, _, err := r.create("p1", "c1", "/bin/m.wasm", "sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Update(context.Background(), &specs.LinuxResources{}, nil); err != nil {
		t.Errorf("an empty update: %v", err)
	}
	if err := c.Update(context.Background(), &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(10))}}, nil); !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "pids") {
		t.Errorf("pids update: %v", err)
	}
	// a kill before start ends the container as killed, and Start then refuses
	if err := c.Kill(context.Background(), syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if code := wait(t, c); code != wasi.ExitCodeKilled {
		t.Errorf("killed before start: %d", code)
	}
	if err := c.Start(context.Background()); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("start after kill: %v", err)
	}
	if err := c.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A netns_path that is no network namespace is refused, though a wasm pod
// has no network of its own to put in it (found by hack/rpcfuzz).
func TestCreateRefusesABadNetNS(t *testing.T) {
	r := newRig(t)
	for _, p := range []string{"/etc/passwd", "/nonexistent/ns", r.dir} {
		_, err := r.d.Create(context.Background(), &sandbox.Spec{ID: "p", Sandboxer: HandlerWasmtime, Dir: filepath.Join(r.dir, "p"), NetNSPath: p})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "netns_path") {
			t.Errorf("netns_path %s: %v, want InvalidArgument naming netns_path", p, err)
		}
	}
	if _, err := r.d.Create(context.Background(), &sandbox.Spec{ID: "p", Sandboxer: HandlerWasmtime, Dir: filepath.Join(r.dir, "p"), NetNSPath: "/proc/self/ns/net"}); err != nil {
		t.Errorf("a network namespace: %v", err)
	}
}
