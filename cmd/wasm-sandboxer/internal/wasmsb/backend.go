package wasmsb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
	"github.com/magnetar-runtime/magnetar/shared/bundle"
	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// bundleNote is written into containerd's bundle so that a shim-style
// `delete` (which gets no config) knows what to unmount.
const bundleNote = "magnetar-wasm.json"

// ExitCodeLost is the exit code of a container whose module was running
// when the daemon stopped: modules run inside the daemon and die with it.
const ExitCodeLost = sandbox.ExitCodeLost

// killWait bounds how long Stop and Delete wait for a killed instance (the
// engine promises 100 ms).
const killWait = 5 * time.Second

type backend struct {
	cfg     *Config
	life    context.Context
	engines *engines
	keep    *keeper
	mods    *modTable
}

var (
	_ task.Backend   = (*backend)(nil)
	_ task.Recoverer = (*backend)(nil)
)

// ctrState is a container's persisted, backend-private state.
type ctrState struct {
	Bundle  string `json:"bundle"`
	Rootfs  string `json:"rootfs"`
	Mounted bool   `json:"rootfs_mounted,omitempty"`
	Engine  string `json:"engine"`
	Module  string `json:"module"`
	Digest  string `json:"digest,omitempty"`
}

// ctr is one container: a module instance run by the daemon itself.
type ctr struct {
	exit.Latch
	b   *backend
	id  string
	ns  string // containerd namespace, for a binary:// logger
	st  ctrState
	eng wasi.Engine
	mod wasi.Module
	run wasi.RunConfig // without stdio
	io  *stdio.IO

	mu       sync.Mutex
	inst     wasi.Instance
	memLimit int64
	final    usage // at exit
	oom      chan struct{}
	execs    map[string]*execProc
	cleaned  bool
}

var (
	_ task.Container   = (*ctr)(nil)
	_ task.OOMNotifier = (*ctr)(nil)
)

// Create mounts the rootfs, reads and loads the module named by args[0]
// (so that a missing or invalid module fails here, naming its path) and
// opens the stdio FIFOs. Nothing runs until Start.
func (b *backend) Create(ctx context.Context, r *task.CreateRequest) (_ task.Container, retErr error) {
	p, ok := r.Pod.(*pod)
	if !ok {
		return nil, fmt.Errorf("container %s: no wasm pod given (%T): %w", r.ID, r.Pod, errdefs.ErrInvalidArgument)
	}
	if r.Stdio.Terminal {
		// InvalidArgument, not NotImplemented: containerd takes
		// NotImplemented from Task.Create for "no v3 API" and retries on v2
		return nil, fmt.Errorf("terminal: a wasm module cannot run on a terminal (set tty: false): %w", errdefs.ErrInvalidArgument)
	}
	if err := mount.Validate("rootfs", r.Rootfs); err != nil {
		return nil, err
	}
	eng, err := b.engines.get(ctx, p.st.Engine)
	if err != nil {
		return nil, err
	}
	c := &ctr{b: b, id: r.ID, ns: r.Namespace, eng: eng, oom: make(chan struct{}, 1), execs: map[string]*execProc{},
		st: ctrState{Bundle: r.Bundle, Engine: eng.Name()}}
	defer func() {
		if retErr != nil {
			c.cleanup(context.WithoutCancel(ctx))
		}
	}()
	c.st.Rootfs = filepath.Join(r.Bundle, "rootfs")
	if len(r.Rootfs) > 0 {
		if err := os.MkdirAll(c.st.Rootfs, 0o711); err != nil {
			return nil, err
		}
		if err := mount.All(r.Rootfs, c.st.Rootfs); err != nil {
			return nil, err
		}
		c.st.Mounted = true
	} else if r.Spec.Root != nil && filepath.IsAbs(r.Spec.Root.Path) {
		c.st.Rootfs = r.Spec.Root.Path
	}
	proc := r.Spec.Process
	t0 := time.Now()
	guest, mod, err := c.load(ctx, proc.Args, proc.Cwd, proc.Env)
	if err != nil {
		return nil, err
	}
	c.mod, c.st.Module, c.st.Digest = mod, guest, mod.Digest()
	c.run = wasi.RunConfig{Args: proc.Args, Env: proc.Env, Cwd: proc.Cwd, Preopens: preopens(c.st.Rootfs, r.Spec)}
	if l := r.Spec.Linux; l != nil && l.Resources != nil && l.Resources.Memory != nil && l.Resources.Memory.Limit != nil && *l.Resources.Memory.Limit > 0 {
		c.memLimit = *l.Resources.Memory.Limit
	}
	cfg := r.Stdio
	cfg.ID, cfg.Namespace = r.ID, r.Namespace
	if c.io, err = stdio.Open(ctx, cfg); err != nil {
		return nil, err
	}
	// a restarted containerd reconnects to the task through this binary,
	// and its shim-style `delete` finds what to unmount in the note
	if err := bundle.WriteNotes(r.Bundle, bundleNote, map[string]any{"rootfs": c.st.Rootfs, "mounted": c.st.Mounted}); err != nil {
		return nil, err
	}
	info := mod.Info()
	log.G(ctx).WithFields(log.Fields{"module": guest, "read_load_ms": float64(time.Since(t0).Microseconds()) / 1000, "digest": c.st.Digest, "engine": eng.Name(),
		"load": info.Source, "load_ms": float64(info.Duration.Microseconds()) / 1000, "cache_error": info.CacheError,
		"preopens": len(c.run.Preopens), "memory_limit": c.memLimit}).Debug("wasm container created")
	return c, nil
}

// load reads the module of a process from the container's rootfs and loads
// it into the engine.
func (c *ctr) load(ctx context.Context, args []string, cwd string, env []string) (string, wasi.Module, error) {
	if len(args) == 0 {
		return "", nil, fmt.Errorf("process.args: empty: args[0] names the wasm module to run: %w", errdefs.ErrInvalidArgument)
	}
	engine := c.eng.Name()
	known := func(k fileKey) wasi.Module { return c.b.mods.acquire(engine, k) }
	guest, data, key, mod, err := readModule(c.st.Rootfs, args[0], cwd, env, c.b.cfg.Wasm.MaxModuleBytes, known)
	if err != nil {
		return "", nil, err
	}
	if mod != nil {
		return guest, mod, nil
	}
	mod, err = c.eng.Load(ctx, data)
	if err != nil {
		if errors.Is(err, wasi.ErrInvalidModule) {
			return "", nil, fmt.Errorf("wasm module %s (process.args[0] %q): %v: %w", guest, args[0], err, errdefs.ErrInvalidArgument)
		}
		return "", nil, fmt.Errorf("wasm module %s: loading into %s: %w", guest, engine, err)
	}
	mod = c.b.mods.add(engine, key, mod)
	return guest, mod, nil
}

// preopens are the rootfs at "/" and every bind-mounted directory at its
// destination, read-only where the mount is.
func preopens(rootfs string, sp *specs.Spec) []wasi.Preopen {
	ps := []wasi.Preopen{{Host: rootfs, Guest: "/", ReadOnly: sp.Root != nil && sp.Root.Readonly}}
	for _, m := range sp.Mounts {
		if m.Type != "bind" && !slices.Contains(m.Options, "bind") && !slices.Contains(m.Options, "rbind") {
			continue
		}
		dst := path.Clean("/" + m.Destination)
		if dst == "/" {
			continue
		}
		// WASI preopens are directories; file mounts such as /etc/hosts are
		// not visible to the module
		if fi, err := os.Stat(m.Source); err != nil || !fi.IsDir() {
			continue
		}
		ps = append(ps, wasi.Preopen{Host: m.Source, Guest: dst, ReadOnly: slices.Contains(m.Options, "ro")})
	}
	return ps
}

// Recover finds a container again after a daemon restart. Its module ran
// inside the daemon and is gone: the container ends at once with
// ExitCodeLost (the task service reports the exit it recorded instead, if
// it had one), and its rootfs stays mounted until Delete. For a Create the
// daemon died in, the rootfs in the bundle is what Delete unmounts.
func (b *backend) Recover(ctx context.Context, rec *task.Record, _ sandbox.Instance) (task.Container, error) {
	var st ctrState
	if rec.Status == task.StatusCreating {
		st = ctrState{Bundle: rec.Bundle, Rootfs: filepath.Join(rec.Bundle, "rootfs"), Mounted: true}
	} else if err := json.Unmarshal(rec.Backend, &st); err != nil {
		return nil, fmt.Errorf("container state: %w", err)
	}
	c := &ctr{b: b, id: rec.ID, st: st, oom: make(chan struct{}, 1), execs: map[string]*execProc{}}
	if rec.Status == "running" || rec.Status == "paused" {
		log.G(ctx).WithFields(log.Fields{"container_id": rec.ID, "status": rec.Status, "exit_status": ExitCodeLost}).
			Warn("wasm container lost: its module ran in the daemon, which restarted; reporting it exited")
	}
	c.Set(ExitCodeLost, time.Now())
	return c, nil
}

func (c *ctr) Pid() uint32 { return 0 }

// Start runs the module.
func (c *ctr) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.IsSet() {
		return fmt.Errorf("container %s was killed before it started: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if c.inst != nil {
		return fmt.Errorf("container %s already started: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if c.mod == nil {
		return fmt.Errorf("container %s: its module is gone (daemon restarted): %w", c.id, errdefs.ErrFailedPrecondition)
	}
	cfg := c.run
	cfg.MemoryLimit = c.memLimit
	setStdio(&cfg, c.io)
	inst, err := c.mod.Start(log.WithLogger(c.b.life, log.G(ctx)), &cfg)
	if err != nil {
		return fmt.Errorf("starting wasm module %s: %w", c.st.Module, err)
	}
	c.inst = inst
	go c.watch(inst)
	return nil
}

func setStdio(cfg *wasi.RunConfig, ioh *stdio.IO) {
	if ioh == nil {
		return
	}
	in, out, errf := ioh.Files()
	if in != nil {
		cfg.Stdin = in
	}
	if out != nil {
		cfg.Stdout = out
	}
	if errf != nil {
		cfg.Stderr = errf
	}
}

func (c *ctr) watch(inst wasi.Instance) {
	<-inst.Done()
	res := inst.Result()
	st := inst.Stats()
	if c.io != nil {
		c.io.Close()
	}
	lg := log.G(c.b.life).WithField("container_id", c.id)
	switch {
	case res.OutOfMemory:
		// what the kernel's OOM killer gives a Linux container: 137 (SIGKILL),
		// whatever the module did when its grow was refused (a Go module
		// exits 2, a C one its own code); the reason comes from TaskOOM
		lg.WithField("module_exit_status", res.ExitCode).Info("wasm module exceeded its memory limit: reported as OOM-killed")
		res.ExitCode = wasi.ExitCodeKilled
		select {
		case c.oom <- struct{}{}:
		default:
		}
	case res.Trap != "":
		lg.WithFields(log.Fields{"trap": res.Trap, "exit_status": res.ExitCode}).Info("wasm module trapped")
	case res.Killed:
		lg.Debug("wasm module killed")
	default:
		lg.WithField("exit_status", res.ExitCode).Debug("wasm module exited")
	}
	c.mu.Lock()
	c.final = usage{cpu: st.CPU}
	c.mu.Unlock()
	c.Set(res.ExitCode, res.ExitedAt)
}

func (c *ctr) OOM() <-chan struct{} { return c.oom }

// ignored are the signals whose default action is to do nothing; a module
// has no handlers, so every other signal ends it.
func ignored(sig syscall.Signal) bool {
	switch sig {
	case syscall.SIGCHLD, syscall.SIGCONT, syscall.SIGURG, syscall.SIGWINCH:
		return true
	}
	return false
}

// Kill ends the module: WASI has no signals, so any signal that would end a
// process ends the instance at once (SIGTERM as SIGKILL).
func (c *ctr) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	if ignored(sig) {
		return nil
	}
	c.mu.Lock()
	inst := c.inst
	started := inst != nil
	c.mu.Unlock()
	if !started {
		// created, never started: nothing runs; it ends as killed, and its
		// output ends now: containerd waits for that before it sends the
		// Delete (a failed StartContainer's cleanup hung there)
		if c.io != nil {
			c.io.Close()
		}
		c.Set(wasi.ExitCodeKilled, time.Now())
		return nil
	}
	log.G(ctx).WithFields(log.Fields{"container_id": c.id, "signal": int(sig)}).Debug("wasm kill")
	inst.Kill()
	if all {
		for _, e := range c.execList() {
			_ = e.Kill(ctx, syscall.SIGKILL, false)
		}
	}
	return nil
}

func (c *ctr) execList() []*execProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*execProc, 0, len(c.execs))
	for _, e := range c.execs {
		out = append(out, e)
	}
	return out
}

func (c *ctr) ResizePty(ctx context.Context, w, h uint32) error {
	return fmt.Errorf("container %s has no terminal: %w", c.id, errdefs.ErrFailedPrecondition)
}

func (c *ctr) CloseStdin(ctx context.Context) error {
	if c.io != nil {
		c.io.CloseStdin()
	}
	return nil
}

// Delete removes the container: kills what still runs, closes the stdio,
// unmounts the rootfs.
func (c *ctr) Delete(ctx context.Context) error {
	if err := c.stop(ctx); err != nil {
		return err
	}
	c.cleanup(ctx)
	return nil
}

// stop kills the container and waits for it to end.
func (c *ctr) stop(ctx context.Context) error {
	select {
	case <-c.Done():
		return nil
	default:
	}
	_ = c.Kill(ctx, syscall.SIGKILL, true)
	select {
	case <-c.Done():
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("container %s did not end %s after kill: %w", c.id, killWait, errdefs.ErrUnavailable)
	}
}

// cleanup releases everything; idempotent.
func (c *ctr) cleanup(ctx context.Context) {
	c.mu.Lock()
	done := c.cleaned
	c.cleaned = true
	c.mu.Unlock()
	if done {
		return
	}
	for _, e := range c.execList() {
		_ = e.Delete(ctx)
	}
	if c.io != nil {
		c.io.Close()
	}
	if c.mod != nil {
		c.b.keep.put(c.eng.Name(), c.mod)
	}
	if c.st.Mounted {
		if err := mount.UnmountAll(c.st.Rootfs); err != nil {
			log.G(ctx).WithError(err).WithField("container_id", c.id).Warn("unmounting rootfs")
		}
	}
	if c.st.Bundle != "" {
		bundle.RemoveNotes(c.st.Bundle, bundleNote)
	}
}

func (c *ctr) Pids(ctx context.Context) ([]*tasktypes.ProcessInfo, error) {
	return []*tasktypes.ProcessInfo{{Pid: c.Pid()}}, nil
}

// usage is the container's memory and CPU time now.
func (c *ctr) usage() usage {
	c.mu.Lock()
	inst, final, limit := c.inst, c.final, c.memLimit
	c.mu.Unlock()
	select {
	case <-c.Done():
		return final
	default:
	}
	u := usage{limit: uint64(limit)}
	if inst != nil {
		s := inst.Stats()
		u.mem, u.cpu = s.MemoryBytes, s.CPU
		if s.MemoryLimit > 0 {
			u.limit = s.MemoryLimit
		}
	}
	for _, e := range c.execList() {
		u.add(e.usage())
	}
	return u
}

// Stats reports memory and CPU time as containerd's cgroup v1 metrics.
func (c *ctr) Stats(ctx context.Context) (*anypb.Any, error) {
	return c.usage().metrics()
}

// Update applies what a wasm container can take: a new memory limit, for
// the exec processes started from now on (a running module's limit is fixed
// when it starts). Everything else is named in an error wrapping
// ErrNotImplemented.
func (c *ctr) Update(ctx context.Context, r *specs.LinuxResources, _ map[string]string) error {
	var cannot, applied []string
	if r.Memory != nil {
		if r.Memory.Limit != nil {
			c.mu.Lock()
			if *r.Memory.Limit > 0 {
				c.memLimit = *r.Memory.Limit
			} else {
				c.memLimit = 0
			}
			c.mu.Unlock()
			applied = append(applied, "memory.limit (for exec processes started from now on)")
			cannot = append(cannot, "memory.limit of the running module (fixed at its start)")
		}
		if r.Memory.Reservation != nil || r.Memory.Swap != nil || r.Memory.Kernel != nil || r.Memory.KernelTCP != nil || r.Memory.Swappiness != nil {
			cannot = append(cannot, "memory.reservation/swap/kernel/swappiness")
		}
	}
	if cpu := r.CPU; cpu != nil && (cpu.Shares != nil || cpu.Quota != nil || cpu.Period != nil || cpu.RealtimeRuntime != nil ||
		cpu.RealtimePeriod != nil || cpu.Cpus != "" || cpu.Mems != "" || cpu.Idle != nil || cpu.Burst != nil) {
		cannot = append(cannot, "cpu (modules run on the daemon's threads; no CPU controls)")
	}
	if r.Pids != nil {
		cannot = append(cannot, "pids")
	}
	if r.BlockIO != nil {
		cannot = append(cannot, "blockIO")
	}
	if len(r.HugepageLimits) > 0 {
		cannot = append(cannot, "hugepageLimits")
	}
	if len(r.Unified) > 0 {
		cannot = append(cannot, "unified")
	}
	if len(r.Devices) > 0 || r.Network != nil || len(r.Rdma) > 0 {
		cannot = append(cannot, "devices/network/rdma")
	}
	if len(cannot) == 0 {
		return nil
	}
	msg := "wasm container " + c.id + ": cannot apply " + strings.Join(cannot, ", ")
	if len(applied) > 0 {
		msg += "; applied " + strings.Join(applied, ", ")
	}
	return fmt.Errorf("%s: %w", msg, errdefs.ErrNotImplemented)
}

func (c *ctr) State() json.RawMessage {
	data, _ := json.Marshal(&c.st)
	return data
}
