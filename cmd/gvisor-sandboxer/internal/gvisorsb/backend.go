package gvisorsb

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/cmd/gvisor-sandboxer/internal/runsc"
	"github.com/magnetar-runtime/magnetar/shared/bundle"
	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/runcproc"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// bundleNote is written into containerd's bundle so that a shim-style
// `delete` (which gets no config) can find the container in runsc.
const bundleNote = "magnetar-gvisor.json"

type backend struct {
	cfg    *Config
	life   context.Context
	dir    string // our containers' directories (runsc's bundles)
	gofers *gofers
}

var (
	_ task.Backend   = (*backend)(nil)
	_ task.Recoverer = (*backend)(nil)
)

// ctrState is a container's persisted, backend-private state. It names
// the pod's runsc itself, so that a container whose pod is gone can still
// be deleted.
type ctrState struct {
	Dir     string   `json:"dir"`
	Bundle  string   `json:"bundle"`
	Mounted bool     `json:"rootfs_mounted,omitempty"`
	Runsc   string   `json:"runsc"`
	Root    string   `json:"runsc_root"`
	Flags   []string `json:"runsc_flags"`
	// Cgroup is the container's cgroupsPath: runsc makes the cgroup (its
	// processes live in the sentry: it stays empty) and leaves it behind.
	Cgroup string `json:"cgroup,omitempty"`
	// Name is the container's name in the sandbox (CRI's container name
	// annotation), by which the sentry may account its CPU time.
	Name string `json:"name,omitempty"`
	// Pid is what runsc reported: the pod's sandbox process.
	Pid     int  `json:"pid"`
	Started bool `json:"started,omitempty"`
}

// ctr is one application container of a pod's sandbox: runcproc's init
// with the hooks that make it runsc's (its exit from the pod's monitor,
// its stdio at start, its execs' sandbox pids).
type ctr struct {
	*runcproc.Init
	b   *backend
	pod *pod // nil for a container recovered without its pod
	id  string
	cli *runsc.CLI

	mu      sync.Mutex
	st      ctrState
	started chan struct{} // closed once runsc start succeeded
	early   exit.Latch    // a kill before start: the exit it gives
	// recStdio is the stdio of a container recovered before its start
	// (runsc gives a container its stdio at start); late is that stdio
	// once opened by start, closed by cleanup.
	recStdio stdio.Config
	late     *stdio.IO
}

var (
	_ task.Container     = (*ctr)(nil)
	_ task.Pauser        = (*ctr)(nil)
	_ task.ExecRecoverer = (*ctr)(nil)
)

// log is the container's runsc log (its runsc calls).
func (c *ctr) log() string { return filepath.Join(c.st.Dir, runscLog) }

// Create creates a container in its pod's sandbox with `runsc create`.
func (b *backend) Create(ctx context.Context, r *task.CreateRequest) (_ task.Container, retErr error) {
	p, ok := r.Pod.(*pod)
	if !ok {
		return nil, fmt.Errorf("container %s: no gVisor pod given (%T): %w", r.ID, r.Pod, errdefs.ErrInvalidArgument)
	}
	if err := mount.Validate("rootfs", r.Rootfs); err != nil {
		return nil, err
	}
	p.mu.Lock()
	pst := p.st
	p.mu.Unlock()
	if err := rewriteSpec(r.Spec, p.id, &pst); err != nil {
		return nil, err
	}
	dir := filepath.Join(b.dir, r.ID)
	if err := runcproc.MakeDir(r.ID, dir); err != nil {
		return nil, err
	}
	cli := p.cli()
	c := b.newCtr(r.ID, ctrState{Dir: dir, Bundle: r.Bundle, Runsc: cli.Binary, Root: cli.Root, Flags: cli.Flags}, p)
	c.Namespace = r.Namespace
	defer func() {
		if retErr != nil {
			c.early.Set(128+uint32(syscall.SIGKILL), time.Now())
			c.cleanup(context.WithoutCancel(ctx))
		}
	}()
	mounted, err := bundle.MountRootfs(r.Bundle, r.Rootfs, r.Spec)
	c.st.Mounted = mounted
	if err != nil {
		return nil, err
	}
	if err := emulateMounts(ctx, r.ID, r.Spec); err != nil {
		return nil, err
	}
	c.st.Name = r.Spec.Annotations[annContainerName]
	if r.Spec.Linux != nil {
		c.st.Cgroup = r.Spec.Linux.CgroupsPath
	}
	if err := checkProgram(r.Spec); err != nil {
		return nil, err
	}
	if err := bundle.WriteSpec(dir, r.Spec); err != nil {
		return nil, err
	}
	// a restarted containerd reconnects through this binary, and its
	// shim-style `delete` finds the container in runsc through the note
	if err := bundle.WriteNotes(r.Bundle, bundleNote, noteOf(&c.st)); err != nil {
		return nil, err
	}
	if err := c.Create(ctx, r.Stdio, false); err != nil {
		return nil, err
	}
	c.st.Pid = int(c.Pid())
	return c, nil
}

// emulateMounts adds to a container's spec (its rootfs mounted) the mounts
// that do what runsc leaves out: the host mounts below a read-only volume
// stay writable, and the readonly paths are read-only.
func emulateMounts(ctx context.Context, id string, sp *specs.Spec) error {
	lg := log.G(ctx).WithField("container_id", id)
	if slices.ContainsFunc(sp.Mounts, func(m specs.Mount) bool { return mount.NonRecursiveReadonly(&m) }) {
		table, err := mount.Self()
		if err != nil {
			return fmt.Errorf("container %s: read-only volumes: %w", id, err)
		}
		var whole []string
		if sp.Mounts, whole = mount.ReadonlySubmounts(sp.Mounts, table, false); len(whole) > 0 {
			lg.WithField("volumes", whole).Warnf("more than %d host mounts below a read-only volume: read-only as a whole", mount.MaxSubmounts)
		}
	}
	skipped, err := readonlyPaths(sp)
	if len(skipped) > 0 {
		lg.WithField("paths", skipped).Debug("readonly paths in a file system of the sandbox's kernel: left as it has them")
	}
	return err
}

// checkProgram refuses a container whose program is not in its rootfs
// before runsc is asked: runsc would accept it at create and fail at start
// with a message about the sandbox, or, for a relative name, not at all
// until the sentry looks it up in PATH, which it does itself.
func checkProgram(sp *specs.Spec) error {
	if sp.Process == nil || len(sp.Process.Args) == 0 {
		return fmt.Errorf("bundle config.json: process.args: must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	arg0 := sp.Process.Args[0]
	if !filepath.IsAbs(arg0) {
		return nil
	}
	root, err := os.OpenRoot(sp.Root.Path)
	if err != nil {
		return nil // not a directory of ours to look into: runsc's to say
	}
	defer root.Close()
	fi, err := root.Stat(strings.TrimPrefix(filepath.Clean(arg0), "/"))
	switch {
	case err != nil && os.IsNotExist(err):
		return fmt.Errorf("bundle config.json: process.args[0] %q: no such file in the container's image: %w", arg0, errdefs.ErrFailedPrecondition)
	case err == nil && fi.IsDir():
		return fmt.Errorf("bundle config.json: process.args[0] %q: is a directory: %w", arg0, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// noteOf is the bundle note of a container.
func noteOf(st *ctrState) map[string]string {
	return map[string]string{"runsc": st.Runsc, "root": st.Root, "flags": strings.Join(st.Flags, "\n"), "dir": st.Dir}
}

func (b *backend) newCtr(id string, st ctrState, p *pod) *ctr {
	c := &ctr{b: b, pod: p, id: id, st: st, started: make(chan struct{})}
	c.cli = &runsc.CLI{Binary: st.Runsc, Root: st.Root, Flags: st.Flags}
	c.Init = runcproc.New(id, st.Dir, c.cli.Runc(c.log()), runcproc.Pidfd{})
	c.Hooks = runcproc.Hooks{
		WaitInit: func(int) (runcproc.Waited, error) { return runcproc.WaitFunc(c.wait), nil },
		Start:    c.start,
		ExecArgs: func(id string) []string { return []string{"--internal-pid-file", c.internalPidFile(id)} },
	}
	c.OnExit = func(x runcproc.Exit) {
		if !x.Known {
			log.G(b.life).WithFields(log.Fields{"container_id": id, "status": x.Status}).Warn("exit status unknown: the pod's sandbox is gone")
		}
	}
	return c
}

// internalPidFile is where `runsc exec` writes the exec's pid inside the
// sandbox.
func (c *ctr) internalPidFile(execID string) string {
	return filepath.Join(c.st.Dir, "exec-"+execID+".ipid")
}

// start runs `runsc start` with the container's stdio (WaitInit's wait
// then learns its exit from the pod's monitor).
func (c *ctr) start(ctx context.Context, io *stdio.IO) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.early.IsSet() {
		return fmt.Errorf("container %s was killed before it started: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if io == nil && !c.recStdio.Terminal && c.recStdio != (stdio.Config{}) {
		cfg := c.recStdio
		cfg.ID, cfg.Namespace = c.id, c.Namespace
		late, err := stdio.Open(ctx, cfg)
		if err != nil {
			return err
		}
		c.late, io = late, late
	}
	var s runsc.Stdio
	if io != nil {
		s = io
	}
	if err := c.cli.Start(ctx, c.log(), c.id, s); err != nil {
		// after a `runsc start` that failed or was cut (its request gone
		// with a killed containerd) the sandbox may hold the container's
		// stdio, or even run it: end it there, and drop our ends, or the
		// output never ends, and containerd, which waits for that before
		// it sends the Delete, waits forever (chaos finding)
		if io != nil {
			io.CloseChildEnds()
		}
		c.Release(context.WithoutCancel(ctx))
		return err
	}
	if io != nil {
		io.CloseChildEnds() // the sandbox holds them now
	}
	c.st.Started = true
	close(c.started)
	c.b.gofers.adopt(c.st.Root)
	return nil
}

// wait is the init's exit: once started, as the pod's monitor learns it;
// before, what a kill before start gave.
func (c *ctr) wait() runcproc.Exit {
	select {
	case <-c.started:
	case <-c.early.Done():
		code, at := c.early.ExitStatus()
		return runcproc.Exit{Status: int(code), At: at, Known: true}
	}
	return c.waitRunning()
}

// lost is the exit of a container whose sandbox is gone.
func lost() runcproc.Exit {
	return runcproc.Exit{Status: sandbox.ExitCodeLost, At: time.Now(), Known: false}
}

// waitRunning asks the pod's monitor until it answers with the exit, the
// sandbox is gone (the exit is lost) or the daemon stops (the next daemon
// asks again: the sandbox keeps the status of a container until it is
// deleted).
func (c *ctr) waitRunning() runcproc.Exit {
	if c.pod == nil {
		return lost()
	}
	m := c.pod.monitor(c.log())
	backoff := 50 * time.Millisecond
	for {
		code, err := m.Wait(c.b.life, c.id)
		if err == nil {
			return runcproc.Exit{Status: code, At: time.Now(), Known: true}
		}
		if c.b.life.Err() != nil {
			select {} // the daemon stops: no exit to report
		}
		if c.pod.IsSet() {
			return lost()
		}
		lg := log.G(c.b.life).WithError(err).WithField("container_id", c.id)
		if !errdefs.IsUnavailable(err) {
			lg.Warn("waiting for the container in its sandbox failed: reporting it lost")
			return lost()
		}
		lg.Debug("waiting for the container: the sandbox did not answer, retrying")
		select {
		case <-c.pod.Done():
			return lost()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Update changes the container's resources with `runsc update`; an update
// that sets nothing is done here (runsc crashes on one).
func (c *ctr) Update(ctx context.Context, r *specs.LinuxResources, ann map[string]string) error {
	if r == nil || reflect.ValueOf(*r).IsZero() {
		return nil
	}
	return c.Init.Update(ctx, r, ann)
}

// Kill signals the container. One that never started has no process in
// the sandbox and runsc refuses to signal it; a signal that would end a
// runc init still waiting for its start ends it here too.
func (c *ctr) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	c.mu.Lock()
	if !c.st.Started {
		if terminates(sig) {
			c.early.Set(128+uint32(sig), time.Now())
		}
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	return c.Init.Kill(ctx, sig, all)
}

// terminates tells whether a signal's default action ends a process.
func terminates(sig syscall.Signal) bool {
	switch sig {
	case syscall.SIGCHLD, syscall.SIGCONT, syscall.SIGURG, syscall.SIGWINCH,
		syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU:
		return false
	}
	return true
}

// Delete removes the container: from the sandbox and runsc's state, its
// rootfs mount, our directory.
func (c *ctr) Delete(ctx context.Context) error {
	c.mu.Lock()
	if !c.st.Started {
		c.early.Set(128+uint32(syscall.SIGKILL), time.Now())
	}
	c.mu.Unlock()
	if err := c.Terminate(ctx); err != nil {
		return err
	}
	c.cleanup(ctx)
	return nil
}

// cleanup releases everything; idempotent.
func (c *ctr) cleanup(ctx context.Context) {
	c.Release(ctx)
	c.mu.Lock()
	if c.late != nil {
		c.late.Close()
	}
	c.mu.Unlock()
	bundle.Clean(ctx, c.st.Bundle, bundleNote, c.st.Mounted, c.st.Dir)
	if c.st.Cgroup != "" {
		if err := cgroups.Delete(c.st.Cgroup); err != nil && !errdefs.IsNotFound(err) {
			log.G(ctx).WithError(err).WithFields(log.Fields{"container_id": c.id, "cgroup": c.st.Cgroup}).Warn("removing the container's cgroup")
		}
	}
}

// Stats are the sentry's statistics of the container.
func (c *ctr) Stats(ctx context.Context) (*anypb.Any, error) {
	if c.pod == nil || c.pod.IsSet() {
		return nil, fmt.Errorf("container %s: its sandbox is gone: %w", c.id, errdefs.ErrNotFound)
	}
	s, err := c.pod.monitor(c.log()).Stats(ctx, c.id, c.st.Name)
	if err != nil {
		return nil, err
	}
	return cgroups.MetricsOf(cgroups.Stats{
		CPUUsageNS:  s.CPU.Usage.Total,
		UserNS:      s.CPU.Usage.User,
		SystemNS:    s.CPU.Usage.Kernel,
		MemoryUsage: s.Memory.Usage.Usage,
		MemoryLimit: s.Memory.Usage.Limit,
		WorkingSet:  s.Memory.Usage.Usage,
		RSS:         s.Memory.Usage.Usage,
		Pids:        s.Pids.Current,
	})
}

func (c *ctr) State() json.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	data, _ := json.Marshal(&c.st)
	return data
}

// Recover finds a container again after a daemon restart. For a Create
// the daemon died in, everything that Create may have made is named from
// the request and the pod, so that Delete removes it.
func (b *backend) Recover(ctx context.Context, rec *task.Record, inst sandbox.Instance) (task.Container, error) {
	p, _ := inst.(*pod)
	var st ctrState
	if rec.Status == task.StatusCreating {
		st = ctrState{Dir: filepath.Join(b.dir, rec.ID), Bundle: rec.Bundle, Mounted: true}
		if p != nil {
			cli := p.cli()
			st.Runsc, st.Root, st.Flags = cli.Binary, cli.Root, cli.Flags
		}
	} else if err := json.Unmarshal(rec.Backend, &st); err != nil {
		return nil, fmt.Errorf("container state: %w", err)
	}
	c := b.newCtr(rec.ID, st, p)
	c.Namespace = rec.Namespace
	if st.Started {
		close(c.started)
	} else {
		c.recStdio = rec.Stdio
	}
	c.Watch(st.Pid, runcproc.WaitFunc(c.wait))
	return c, nil
}

// execProc is an exec process: runcproc's, signalled through runsc by its
// pid inside the sandbox (its host pid is the `runsc exec` helper's, which
// waits for it and exits with its status, but forwards no signal).
type execProc struct {
	*runcproc.Exec
	c        *ctr
	internal int
	start    uint64
}

// execState is what finds an exec again after a restart.
type execState struct {
	Pid      int    `json:"pid"`
	PidStart uint64 `json:"pid_start,omitempty"`
	Internal int    `json:"internal_pid"`
}

// Exec prepares an exec process; its Start runs `runsc exec --detach`.
func (c *ctr) Exec(ctx context.Context, id string, sp *specs.Process, io stdio.Config) (task.Process, error) {
	p, err := c.Init.Exec(ctx, id, sp, io)
	if err != nil {
		return nil, err
	}
	return &execProc{Exec: p.(*runcproc.Exec), c: c}, nil
}

// Start runs the exec and reads its pid inside the sandbox.
func (e *execProc) Start(ctx context.Context) error {
	file := e.c.internalPidFile(e.ID())
	defer os.Remove(file)
	if err := e.Exec.Start(ctx); err != nil {
		return err
	}
	b, err := os.ReadFile(file)
	if err == nil {
		e.internal, err = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if err != nil {
		_ = syscall.Kill(int(e.Pid()), syscall.SIGKILL)
		return fmt.Errorf("exec %s: its pid in the sandbox: %w", e.ID(), err)
	}
	e.start, _ = proc.StartTime(int(e.Pid()))
	return nil
}

// Kill signals the exec inside the sandbox (`runsc kill --pid`). An exec
// not started or exited is not an error.
func (e *execProc) Kill(ctx context.Context, sig syscall.Signal, _ bool) error {
	select {
	case <-e.Exited():
		return nil
	default:
	}
	if e.Pid() == 0 || e.internal == 0 {
		return nil
	}
	if err := e.c.cli.KillPid(ctx, e.c.log(), e.c.id, e.internal, sig); err != nil {
		select {
		case <-e.Exited():
			return nil
		default:
		}
		if strings.Contains(err.Error(), "no such process") || strings.Contains(err.Error(), "not running") {
			return nil
		}
		return err
	}
	return nil
}

// State is the exec's pids, for RecoverExec.
func (e *execProc) State() json.RawMessage {
	data, _ := json.Marshal(&execState{Pid: int(e.Pid()), PidStart: e.start, Internal: e.internal})
	return data
}

// RecoverExec finds an exec again after a daemon restart: its runsc exec
// helper still runs (it was never the daemon's child: its exit status is
// unknown), it is still signalled by its sandbox pid.
func (c *ctr) RecoverExec(ctx context.Context, r *task.ExecRecord) (task.Process, error) {
	var st execState
	if err := json.Unmarshal(r.Backend, &st); err != nil {
		return nil, fmt.Errorf("exec %s state: %w", r.ID, err)
	}
	if st.Pid == 0 {
		st.Pid = int(r.Pid)
	}
	return &execProc{Exec: c.AdoptExec(r.ID, st.Pid, runcproc.WaitFor(proc.Reopen(st.Pid, st.PidStart))), c: c, internal: st.Internal, start: st.PidStart}, nil
}
