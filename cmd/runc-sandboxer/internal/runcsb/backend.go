package runcsb

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/shared/bundle"
	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/runcproc"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// bundleNote is written into containerd's bundle so that a shim-style
// `delete` (which gets no config) can find runc's state.
const bundleNote = "magnetar-runc.json"

type backend struct {
	cfg  *Config
	life context.Context
	dir  string // our bundles
}

var (
	_ task.Backend   = (*backend)(nil)
	_ task.Recoverer = (*backend)(nil)
)

// Sandboxer describes the runc sandboxer to the daemon.
func Sandboxer() daemon.Sandboxer {
	return daemon.Sandboxer{
		Name:      Name,
		NewConfig: func() daemon.Config { return DefaultConfig() },
		Build: func(env *daemon.Env, c daemon.Config) (sandbox.Driver, task.Backend, error) {
			cfg := c.(*Config)
			be := &backend{cfg: cfg, life: env.Life, dir: filepath.Join(env.Dir, "bundles")}
			if err := os.MkdirAll(be.dir, 0o700); err != nil {
				return nil, nil, err
			}
			if err := os.MkdirAll(cfg.Runc.Root, 0o700); err != nil {
				return nil, nil, err
			}
			return &driver{env: env, cfg: cfg}, be, nil
		},
		ShimDelete: shimDelete,
		Features:   runtimeFeatures,
	}
}

func (b *backend) runc(logFile string) *runc.Runc {
	return &runc.Runc{Command: b.cfg.Runc.Binary, Root: b.cfg.Runc.Root, Log: logFile, LogFormat: runc.JSON,
		SystemdCgroup: b.cfg.Runc.SystemdCgroup}
}

// ctrState is a container's persisted, backend-private state.
type ctrState struct {
	Dir      string `json:"dir"`
	Bundle   string `json:"bundle"`
	Cgroups  string `json:"cgroups_path,omitempty"`
	Terminal bool   `json:"terminal,omitempty"`
	Mounted  bool   `json:"rootfs_mounted,omitempty"`
	// procState is the init's pid and start time.
	procState
}

// ctr is one container; its init and the runc calls are runcproc's.
type ctr struct {
	*runcproc.Init
	b  *backend
	id string
	st ctrState

	mu sync.Mutex
	// oomReport is who ReportOOM names (nil before: oomPending kills wait
	// for it); stopOOM ends the cgroup's OOM watch.
	oomReport  func()
	oomPending int
	stopOOM    context.CancelFunc
}

var (
	_ task.Container     = (*ctr)(nil)
	_ task.Pauser        = (*ctr)(nil)
	_ task.OOMReporter   = (*ctr)(nil)
	_ task.ExecRecoverer = (*ctr)(nil)
)

// procState names a host process across a daemon restart: its pid, and its
// start time, which tells it apart from a later process reusing the pid.
type procState struct {
	Pid      int    `json:"pid"`
	PidStart uint64 `json:"pid_start,omitempty"`
}

// watchAgain watches a process found again after a restart: the one the
// state names if it still runs, else one that is over (status unknown).
func (st procState) watchAgain() runcproc.Waited {
	return runcproc.WaitFor(proc.Reopen(st.Pid, st.PidStart))
}

// execProc is an exec process that persists what finds it again.
type execProc struct{ *runcproc.Exec }

// State is the exec's pid and start time, for RecoverExec.
func (e execProc) State() json.RawMessage {
	st := procState{Pid: int(e.Pid())}
	st.PidStart, _ = proc.StartTime(st.Pid)
	data, _ := json.Marshal(&st)
	return data
}

// Exec prepares an exec process; its Start runs `runc exec`.
func (c *ctr) Exec(ctx context.Context, id string, sp *specs.Process, io stdio.Config) (task.Process, error) {
	p, err := c.Init.Exec(ctx, id, sp, io)
	if err != nil {
		return nil, err
	}
	return execProc{p.(*runcproc.Exec)}, nil
}

// RecoverExec finds an exec again after a daemon restart: it runs on (it
// was never the daemon's child), its exit status will be unknown.
func (c *ctr) RecoverExec(ctx context.Context, r *task.ExecRecord) (task.Process, error) {
	var st procState
	if err := json.Unmarshal(r.Backend, &st); err != nil {
		return nil, fmt.Errorf("exec %s state: %w", r.ID, err)
	}
	if st.Pid == 0 {
		st.Pid = int(r.Pid)
	}
	return execProc{c.AdoptExec(r.ID, st.Pid, st.watchAgain())}, nil
}

// Create creates a container in its pod with `runc create`.
func (b *backend) Create(ctx context.Context, r *task.CreateRequest) (_ task.Container, retErr error) {
	p, ok := r.Pod.(*pod)
	if !ok {
		return nil, fmt.Errorf("container %s: no runc pod given (%T): %w", r.ID, r.Pod, errdefs.ErrInvalidArgument)
	}
	if err := mount.Validate("rootfs", r.Rootfs); err != nil {
		return nil, err
	}
	p.mu.Lock()
	late := p.st.LateNS
	p.mu.Unlock()
	if late {
		// the second container joins what the first made
		p.lateMu.Lock()
		defer p.lateMu.Unlock()
	}
	p.mu.Lock()
	pst := p.st
	p.mu.Unlock()
	if err := rewriteSpec(r.Spec, &pst, pst.InitPid); err != nil {
		return nil, err
	}
	if late {
		p.lateSpec(r.Spec)
	}
	dir := filepath.Join(b.dir, r.ID)
	if err := runcproc.MakeDir(r.ID, dir); err != nil {
		return nil, err
	}
	c := b.newCtr(r.ID, ctrState{Dir: dir, Bundle: r.Bundle, Terminal: r.Stdio.Terminal})
	c.Namespace = r.Namespace
	defer func() {
		if retErr != nil {
			c.cleanup(context.WithoutCancel(ctx))
		}
	}()
	mounted, err := bundle.MountRootfs(r.Bundle, r.Rootfs, r.Spec)
	c.st.Mounted = mounted
	if err != nil {
		return nil, err
	}
	if r.Spec.Linux != nil {
		c.st.Cgroups = r.Spec.Linux.CgroupsPath
	}
	if err := bundle.WriteSpec(dir, r.Spec); err != nil {
		return nil, err
	}
	// a restarted containerd reconnects to the task through this binary,
	// and its shim-style `delete` finds runc's state through the note
	if err := bundle.WriteNotes(r.Bundle, bundleNote, map[string]string{"runc_binary": b.cfg.Runc.Binary, "runc_root": b.cfg.Runc.Root, "dir": dir}); err != nil {
		return nil, err
	}
	if err := c.Create(ctx, r.Stdio, false); err != nil {
		return nil, err
	}
	if late {
		if err := p.joinLate(ctx, int(c.Pid())); err != nil {
			return nil, err
		}
	}
	c.st.Pid = int(c.Pid())
	c.st.PidStart, _ = proc.StartTime(c.st.Pid)
	c.startOOM()
	return c, nil
}

func (b *backend) newCtr(id string, st ctrState) *ctr {
	c := &ctr{b: b, id: id, st: st}
	c.Init = runcproc.New(id, st.Dir, b.runc(filepath.Join(st.Dir, "runc.log")), runcproc.Pidfd{})
	c.OnExit = func(x runcproc.Exit) {
		if !x.Known {
			log.G(b.life).WithField("container_id", id).Warn("exit status unknown: the container was not our child (daemon restarted)")
		}
		c.endOOM()
	}
	return c
}

// Recover finds a container again after a daemon restart. For a Create the
// daemon died in, everything that Create may have made is named from the
// request (our dir for the id, the rootfs in the bundle), so that Delete
// removes it.
func (b *backend) Recover(ctx context.Context, rec *task.Record, _ sandbox.Instance) (task.Container, error) {
	var st ctrState
	if rec.Status == task.StatusCreating {
		st = ctrState{Dir: filepath.Join(b.dir, rec.ID), Bundle: rec.Bundle, Mounted: true, Cgroups: specCgroups(rec.Bundle)}
	} else if err := json.Unmarshal(rec.Backend, &st); err != nil {
		return nil, fmt.Errorf("container state: %w", err)
	}
	c := b.newCtr(rec.ID, st)
	c.Namespace = rec.Namespace
	c.Watch(st.Pid, st.watchAgain())
	if rec.Status == "created" || rec.Status == "running" || rec.Status == "paused" {
		c.startOOM()
	}
	return c, nil
}

// startOOM watches the container's cgroup for OOM kills from its creation
// (runc made the cgroup) until its exit; each kill is reported to the
// task service by a call (no goroutine per container). Without a memory
// controller no kill is ever reported.
func (c *ctr) startOOM() {
	cg, err := cgroups.Load(c.st.Cgroups)
	if err != nil {
		return
	}
	ctx, cancel := context.WithCancel(c.b.life)
	if err := cg.OnOOM(ctx, c.oomKilled); err != nil {
		cancel()
		log.G(ctx).WithError(err).WithField("container_id", c.id).Debug("no OOM events")
		return
	}
	c.mu.Lock()
	c.stopOOM = cancel
	c.mu.Unlock()
}

func (c *ctr) oomKilled() {
	c.mu.Lock()
	f := c.oomReport
	if f == nil {
		c.oomPending++
	}
	c.mu.Unlock()
	if f != nil {
		f()
	}
}

func (c *ctr) endOOM() {
	c.mu.Lock()
	if c.stopOOM != nil {
		c.stopOOM()
	}
	c.mu.Unlock()
}

// ReportOOM has f called once per OOM kill of the container, those before
// this call included.
func (c *ctr) ReportOOM(f func()) {
	c.mu.Lock()
	c.oomReport = f
	n := c.oomPending
	c.oomPending = 0
	c.mu.Unlock()
	for ; n > 0; n-- {
		f()
	}
}

// Delete removes the container: runc state, rootfs mount, our bundle.
func (c *ctr) Delete(ctx context.Context) error {
	if err := c.Terminate(ctx); err != nil {
		return err
	}
	c.cleanup(ctx)
	return nil
}

// cleanup releases everything; idempotent.
func (c *ctr) cleanup(ctx context.Context) {
	c.endOOM()
	c.Release(ctx)
	removeCgroup(ctx, c.id, c.st.Cgroups)
	bundle.Clean(ctx, c.st.Bundle, bundleNote, c.st.Mounted, c.st.Dir)
}

// removeCgroup removes a container's cgroup after runc's delete, which
// removes it only with runc's state: a `runc create` cut before it wrote
// its state (a request cancelled by a containerd that went away, a daemon
// killed) leaves the cgroups it had made, cpuset's first, and at times its
// init process in them, which it kills. Idempotent.
func removeCgroup(ctx context.Context, id, path string) {
	if path == "" {
		return
	}
	if err := cgroups.Destroy(path, cgroupWait); err != nil {
		log.G(ctx).WithError(err).WithFields(log.Fields{"container_id": id, "cgroup": path}).Warn("removing the container's cgroup")
	}
}

// cgroupWait bounds how long removeCgroup waits for the processes it killed
// to leave the cgroup.
const cgroupWait = 2 * time.Second

// specCgroups is the cgroupsPath of the OCI spec in a bundle; "" when the
// spec cannot be read.
func specCgroups(bundleDir string) string {
	data, err := os.ReadFile(filepath.Join(bundleDir, "config.json"))
	if err != nil {
		return ""
	}
	var sp specs.Spec
	if json.Unmarshal(data, &sp) != nil || sp.Linux == nil {
		return ""
	}
	return sp.Linux.CgroupsPath
}

func (c *ctr) Stats(ctx context.Context) (*anypb.Any, error) {
	return cgroups.MetricsAt(c.st.Cgroups)
}

func (c *ctr) State() json.RawMessage {
	data, _ := json.Marshal(&c.st)
	return data
}

// shimDelete cleans up after containerd lost a task connection.
func shimDelete(ctx context.Context, id, bundleDir string) (*daemon.ShimExit, error) {
	exit := &daemon.ShimExit{Status: 128 + uint32(syscall.SIGKILL), At: time.Now()}
	var note struct {
		Binary string `json:"runc_binary"`
		Root   string `json:"runc_root"`
		Dir    string `json:"dir"`
	}
	if ok, err := bundle.ReadNote(bundleDir, bundleNote, &note); !ok {
		return exit, err
	}
	r := &runc.Runc{Command: note.Binary, Root: note.Root}
	if st, err := r.State(ctx, id); err == nil {
		exit.Pid = uint32(st.Pid)
	}
	_ = r.Delete(ctx, id, &runc.DeleteOpts{Force: true})
	removeCgroup(ctx, id, specCgroups(bundleDir))
	_ = mount.UnmountAll(filepath.Join(bundleDir, "rootfs"))
	if note.Dir != "" && filepath.Base(note.Dir) == id {
		_ = os.RemoveAll(note.Dir)
	}
	bundle.RemoveNotes(bundleDir, bundleNote)
	return exit, nil
}
