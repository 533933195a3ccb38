package runcsb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/store"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// sandboxIDAnnotation is where containerd's CRI names a container's pod.
const sandboxIDAnnotation = "io.kubernetes.cri.sandbox-id"

// bundleNote is written into containerd's bundle so that a shim-style
// `delete` (which gets no config) can find runc's state.
const bundleNote = "magnetar-runc.json"

type backend struct {
	cfg  *Config
	life context.Context
	dir  string // our bundles
	d    *driver

	mu         sync.Mutex
	containers map[string]*ctr
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
			be := &backend{cfg: cfg, life: env.Life, dir: filepath.Join(env.Dir, "bundles"), containers: map[string]*ctr{}}
			if err := os.MkdirAll(be.dir, 0o700); err != nil {
				return nil, nil, err
			}
			if err := os.MkdirAll(cfg.Runc.Root, 0o700); err != nil {
				return nil, nil, err
			}
			d := &driver{env: env, cfg: cfg, be: be, pods: map[string]*pod{}}
			be.d = d
			return d, be, nil
		},
		ShimDelete: shimDelete,
	}
}

func (b *backend) runc(logFile string) *runc.Runc {
	return &runc.Runc{Command: b.cfg.Runc.Binary, Root: b.cfg.Runc.Root, Log: logFile, LogFormat: runc.JSON,
		SystemdCgroup: b.cfg.Runc.SystemdCgroup}
}

// ctrState is a container's persisted, backend-private state.
type ctrState struct {
	PodID    string `json:"pod_id"`
	Dir      string `json:"dir"`
	Bundle   string `json:"bundle"`
	Cgroups  string `json:"cgroups_path,omitempty"`
	Terminal bool   `json:"terminal,omitempty"`
	Mounted  bool   `json:"rootfs_mounted,omitempty"`
	Pid      int    `json:"pid"`
	PidStart uint64 `json:"pid_start,omitempty"`
}

// ctr is one container.
type ctr struct {
	b    *backend
	id   string
	st   ctrState
	r    *runc.Runc
	io   *stdio.IO
	sock *runc.Socket

	mu      sync.Mutex
	w       *proc.Watch
	done    chan struct{}
	code    uint32
	at      time.Time
	oom     chan struct{}
	stopOOM context.CancelFunc
}

var (
	_ task.Container   = (*ctr)(nil)
	_ task.Pauser      = (*ctr)(nil)
	_ task.OOMNotifier = (*ctr)(nil)
)

// runcError turns a failed runc call into an error with runc's own message.
func runcError(op, logFile string, err error) error {
	msg := lastRuncError(logFile)
	if msg == "" {
		return fmt.Errorf("runc %s: %w", op, err)
	}
	return fmt.Errorf("runc %s: %s: %w", op, msg, errdefs.ErrFailedPrecondition)
}

func lastRuncError(logFile string) string {
	data, err := os.ReadFile(logFile)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var e struct{ Level, Msg string }
		if json.Unmarshal([]byte(lines[i]), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			return e.Msg
		}
	}
	return ""
}

// Create creates a container in its pod with `runc create`.
func (b *backend) Create(ctx context.Context, r *task.CreateRequest) (_ task.Container, retErr error) {
	podID := r.Spec.Annotations[sandboxIDAnnotation]
	if podID == "" {
		return nil, fmt.Errorf("bundle config.json: annotation %s missing: a magnetar-runc container must belong to a pod: %w", sandboxIDAnnotation, errdefs.ErrInvalidArgument)
	}
	if err := sandbox.ValidateID(sandboxIDAnnotation, podID); err != nil {
		return nil, err
	}
	p, ok := b.d.lookup(podID)
	if !ok {
		return nil, fmt.Errorf("pod %s of container %s: %w", podID, r.ID, errdefs.ErrNotFound)
	}
	select {
	case <-p.exited:
		return nil, fmt.Errorf("pod %s has stopped: %w", podID, errdefs.ErrFailedPrecondition)
	default:
	}
	if err := mount.Validate("rootfs", r.Rootfs); err != nil {
		return nil, err
	}
	p.mu.Lock()
	pst := p.st
	p.mu.Unlock()
	if err := rewriteSpec(r.Spec, &pst, pst.InitPid); err != nil {
		return nil, err
	}
	dir := filepath.Join(b.dir, r.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if os.IsExist(err) {
			return nil, fmt.Errorf("container %s: %w", r.ID, errdefs.ErrAlreadyExists)
		}
		return nil, err
	}
	c := &ctr{b: b, id: r.ID, done: make(chan struct{}), oom: make(chan struct{}, 1),
		st: ctrState{PodID: podID, Dir: dir, Bundle: r.Bundle, Terminal: r.Stdio.Terminal}}
	c.r = b.runc(filepath.Join(dir, "runc.log"))
	defer func() {
		if retErr != nil {
			c.cleanup(context.WithoutCancel(ctx))
		}
	}()
	rootfs := filepath.Join(r.Bundle, "rootfs")
	if len(r.Rootfs) > 0 {
		if err := os.MkdirAll(rootfs, 0o711); err != nil {
			return nil, err
		}
		if err := mount.All(r.Rootfs, rootfs); err != nil {
			return nil, err
		}
		c.st.Mounted = true
	}
	if r.Spec.Root == nil {
		r.Spec.Root = &specs.Root{}
	}
	if r.Spec.Root.Path == "" || !filepath.IsAbs(r.Spec.Root.Path) {
		r.Spec.Root.Path = rootfs
	}
	if r.Spec.Linux != nil {
		c.st.Cgroups = r.Spec.Linux.CgroupsPath
	}
	data, err := json.Marshal(r.Spec)
	if err != nil {
		return nil, err
	}
	if err := store.WriteFileAtomic(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		return nil, err
	}
	note, _ := json.Marshal(map[string]string{"runc_binary": b.cfg.Runc.Binary, "runc_root": b.cfg.Runc.Root, "dir": dir})
	if err := store.WriteFileAtomic(filepath.Join(r.Bundle, bundleNote), note, 0o600); err != nil {
		return nil, err
	}
	// A restarted containerd finds the runtime of a task by this file (else
	// by the runtime_type's shim name in PATH): point it at this binary so
	// that it reconnects to our tasks and uses our `delete`.
	if self, err := os.Executable(); err == nil {
		if err := store.WriteFileAtomic(filepath.Join(r.Bundle, "shim-binary-path"), []byte(self), 0o644); err != nil {
			return nil, err
		}
	}
	if c.io, err = stdio.Open(ctx, r.Stdio); err != nil {
		return nil, err
	}
	opts := &runc.CreateOpts{IO: c.io, PidFile: filepath.Join(dir, "init.pid")}
	if r.Stdio.Terminal {
		if c.sock, err = runc.NewTempConsoleSocket(); err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		opts.ConsoleSocket = c.sock
	}
	if err := c.r.Create(ctx, r.ID, dir, opts); err != nil {
		return nil, runcError("create", c.r.Log, err)
	}
	if c.sock != nil {
		con, err := c.sock.ReceiveMaster()
		if err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
		c.io.AttachConsole(con)
		c.sock.Close()
		c.sock = nil
	}
	pid, err := runc.ReadPidFile(opts.PidFile)
	if err != nil {
		return nil, fmt.Errorf("reading init pid: %w", err)
	}
	w, err := proc.Open(pid)
	if err != nil {
		return nil, err
	}
	c.st.Pid = pid
	c.st.PidStart, _ = procStart(pid)
	c.watch(w, c.io)
	b.mu.Lock()
	b.containers[r.ID] = c
	b.mu.Unlock()
	return c, nil
}

// watch records the exit of the init once its output is drained.
func (c *ctr) watch(w *proc.Watch, io *stdio.IO) {
	c.mu.Lock()
	c.w = w
	c.mu.Unlock()
	go func() {
		<-w.Done()
		if io != nil {
			io.Wait()
			io.Finish() // Close on delete (cleanup)
		}
		code, known, at := w.Status()
		if !known {
			log.G(c.b.life).WithField("container_id", c.id).Warn("exit status unknown: the container was not our child (daemon restarted)")
		}
		c.mu.Lock()
		c.code, c.at = uint32(code), at
		if c.stopOOM != nil {
			c.stopOOM()
		}
		c.mu.Unlock()
		close(c.done)
	}()
}

// Recover finds a container again after a daemon restart.
func (b *backend) Recover(ctx context.Context, rec *task.Record) (task.Container, error) {
	var st ctrState
	if err := json.Unmarshal(rec.Backend, &st); err != nil {
		return nil, fmt.Errorf("container state: %w", err)
	}
	c := &ctr{b: b, id: rec.ID, st: st, done: make(chan struct{}), oom: make(chan struct{}, 1)}
	c.r = b.runc(filepath.Join(st.Dir, "runc.log"))
	start, err := procStart(st.Pid)
	var w *proc.Watch
	if err == nil && start == st.PidStart {
		w, err = proc.Open(st.Pid)
	}
	if w == nil || err != nil {
		w = proc.Exited(st.Pid)
	}
	c.watch(w, nil)
	if rec.Status == "running" {
		c.startOOM()
	}
	b.mu.Lock()
	b.containers[rec.ID] = c
	b.mu.Unlock()
	return c, nil
}

func (c *ctr) Pid() uint32 { return uint32(c.st.Pid) }

func (c *ctr) Start(ctx context.Context) error {
	if err := c.r.Start(ctx, c.id); err != nil {
		return runcError("start", c.r.Log, err)
	}
	c.startOOM()
	return nil
}

func (c *ctr) startOOM() {
	cg, err := cgroups.Load(c.st.Cgroups)
	if err != nil {
		return
	}
	ctx, cancel := context.WithCancel(c.b.life)
	ch, err := cg.OOMEvents(ctx)
	if err != nil {
		cancel()
		return
	}
	c.mu.Lock()
	c.stopOOM = cancel
	c.mu.Unlock()
	go func() {
		for range ch {
			select {
			case c.oom <- struct{}{}:
			default:
			}
		}
	}()
}

func (c *ctr) OOM() <-chan struct{} { return c.oom }

func (c *ctr) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	select {
	case <-c.done:
		if !all {
			return nil
		}
	default:
	}
	if err := c.r.Kill(ctx, c.id, int(sig), &runc.KillOpts{All: all}); err != nil {
		select {
		case <-c.done:
			return nil // exited meanwhile
		default:
		}
		if msg := lastRuncError(c.r.Log); strings.Contains(msg, "not running") || strings.Contains(msg, "does not exist") {
			return nil
		}
		return runcError("kill", c.r.Log, err)
	}
	return nil
}

func (c *ctr) Exited() <-chan struct{} { return c.done }

func (c *ctr) ExitStatus() (uint32, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, c.at
}

func (c *ctr) ResizePty(ctx context.Context, w, h uint32) error {
	if c.io == nil {
		return fmt.Errorf("container %s: no terminal attached (daemon restarted?): %w", c.id, errdefs.ErrFailedPrecondition)
	}
	return c.io.Resize(w, h)
}

func (c *ctr) CloseStdin(ctx context.Context) error {
	if c.io != nil {
		c.io.CloseStdin()
	}
	return nil
}

// Delete removes the container: runc state, rootfs mount, our bundle.
func (c *ctr) Delete(ctx context.Context) error {
	select {
	case <-c.done:
	default:
		// a created, never started container: remove its init
		_ = c.r.Kill(ctx, c.id, int(syscall.SIGKILL), &runc.KillOpts{All: true})
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("container %s did not exit after SIGKILL: %w", c.id, errdefs.ErrUnavailable)
		}
	}
	c.cleanup(ctx)
	c.b.mu.Lock()
	delete(c.b.containers, c.id)
	c.b.mu.Unlock()
	return nil
}

// cleanup releases everything; idempotent.
func (c *ctr) cleanup(ctx context.Context) {
	if err := c.r.Delete(ctx, c.id, &runc.DeleteOpts{Force: true}); err != nil {
		if msg := lastRuncError(c.r.Log); msg != "" && !strings.Contains(msg, "does not exist") {
			log.G(ctx).WithField("container_id", c.id).Warnf("runc delete: %s", msg)
		}
	}
	if c.io != nil {
		c.io.Close()
	}
	if c.sock != nil {
		c.sock.Close()
	}
	if c.st.Mounted {
		if err := mount.UnmountAll(filepath.Join(c.st.Bundle, "rootfs")); err != nil {
			log.G(ctx).WithError(err).Warn("unmounting rootfs")
		}
	}
	_ = os.Remove(filepath.Join(c.st.Bundle, bundleNote))
	_ = os.Remove(filepath.Join(c.st.Bundle, "shim-binary-path"))
	_ = os.RemoveAll(c.st.Dir)
}

func (c *ctr) Pids(ctx context.Context) ([]*tasktypes.ProcessInfo, error) {
	pids, err := c.r.Ps(ctx, c.id)
	if err != nil {
		return nil, runcError("ps", c.r.Log, err)
	}
	out := make([]*tasktypes.ProcessInfo, 0, len(pids))
	for _, p := range pids {
		out = append(out, &tasktypes.ProcessInfo{Pid: uint32(p)})
	}
	return out, nil
}

func (c *ctr) Stats(ctx context.Context) (*anypb.Any, error) {
	cg, err := cgroups.Load(c.st.Cgroups)
	if err != nil {
		return nil, err
	}
	return cg.Metrics()
}

func (c *ctr) Update(ctx context.Context, r *specs.LinuxResources, _ map[string]string) error {
	if err := c.r.Update(ctx, c.id, r); err != nil {
		return runcError("update", c.r.Log, err)
	}
	return nil
}

func (c *ctr) Pause(ctx context.Context) error {
	if err := c.r.Pause(ctx, c.id); err != nil {
		return runcError("pause", c.r.Log, err)
	}
	return nil
}

func (c *ctr) Resume(ctx context.Context) error {
	if err := c.r.Resume(ctx, c.id); err != nil {
		return runcError("resume", c.r.Log, err)
	}
	return nil
}

func (c *ctr) State() json.RawMessage {
	data, _ := json.Marshal(&c.st)
	return data
}

// Exec prepares an exec process; Start runs it.
func (c *ctr) Exec(ctx context.Context, id string, sp *specs.Process, io stdio.Config) (task.Process, error) {
	return &execProc{c: c, id: id, spec: sp, cfg: io, done: make(chan struct{})}, nil
}

type execProc struct {
	c    *ctr
	id   string
	spec *specs.Process
	cfg  stdio.Config

	mu   sync.Mutex
	io   *stdio.IO
	pid  int
	w    *proc.Watch
	done chan struct{}
	code uint32
	at   time.Time
}

func (e *execProc) Pid() uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return uint32(e.pid)
}

func (e *execProc) Start(ctx context.Context) (retErr error) {
	ioh, err := stdio.Open(ctx, e.cfg)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			ioh.Close()
		}
	}()
	dir := e.c.st.Dir
	pidFile := filepath.Join(dir, "exec-"+e.id+".pid")
	logFile := filepath.Join(dir, "exec-"+e.id+".log")
	defer os.Remove(pidFile)
	opts := &runc.ExecOpts{IO: ioh, PidFile: pidFile, Detach: true, LogFile: logFile}
	var sock *runc.Socket
	if e.cfg.Terminal {
		if sock, err = runc.NewTempConsoleSocket(); err != nil {
			return fmt.Errorf("console socket: %w", err)
		}
		defer sock.Close()
		opts.ConsoleSocket = sock
	}
	if err := e.c.r.Exec(ctx, e.c.id, *e.spec, opts); err != nil {
		defer os.Remove(logFile)
		return runcError("exec", logFile, err)
	}
	os.Remove(logFile)
	if sock != nil {
		con, err := sock.ReceiveMaster()
		if err != nil {
			return fmt.Errorf("console: %w", err)
		}
		ioh.AttachConsole(con)
	}
	pid, err := runc.ReadPidFile(pidFile)
	if err != nil {
		return fmt.Errorf("reading exec pid: %w", err)
	}
	w, err := proc.Open(pid)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.io, e.pid, e.w = ioh, pid, w
	e.mu.Unlock()
	go func() {
		<-w.Done()
		ioh.Wait()
		ioh.Finish() // Close on Delete
		code, _, at := w.Status()
		e.mu.Lock()
		e.code, e.at = uint32(code), at
		e.mu.Unlock()
		close(e.done)
	}()
	return nil
}

func (e *execProc) Kill(ctx context.Context, sig syscall.Signal, _ bool) error {
	e.mu.Lock()
	pid := e.pid
	e.mu.Unlock()
	if pid == 0 {
		return nil
	}
	select {
	case <-e.done:
		return nil
	default:
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill exec %s: %w", e.id, err)
	}
	return nil
}

func (e *execProc) Exited() <-chan struct{} { return e.done }

func (e *execProc) ExitStatus() (uint32, time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.code, e.at
}

func (e *execProc) ResizePty(ctx context.Context, w, h uint32) error {
	e.mu.Lock()
	ioh := e.io
	e.mu.Unlock()
	if ioh == nil {
		return fmt.Errorf("exec %s has not started: %w", e.id, errdefs.ErrFailedPrecondition)
	}
	return ioh.Resize(w, h)
}

func (e *execProc) CloseStdin(ctx context.Context) error {
	e.mu.Lock()
	ioh := e.io
	e.mu.Unlock()
	if ioh != nil {
		ioh.CloseStdin()
	}
	return nil
}

func (e *execProc) Delete(ctx context.Context) error {
	e.mu.Lock()
	ioh := e.io
	e.mu.Unlock()
	if ioh != nil {
		ioh.Close()
	}
	return nil
}

// podContainers lists the containers of a pod.
func (b *backend) podContainers(podID string) []*ctr {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*ctr
	for _, c := range b.containers {
		if c.st.PodID == podID {
			out = append(out, c)
		}
	}
	return out
}

func (b *backend) podCgroups(podID string) []string {
	var out []string
	for _, c := range b.podContainers(podID) {
		select {
		case <-c.done:
		default:
			out = append(out, c.st.Cgroups)
		}
	}
	return out
}

// stopPod stops every running container of a pod: SIGTERM, then SIGKILL at
// the deadline.
func (b *backend) stopPod(ctx context.Context, podID string, timeout time.Duration) {
	cs := b.podContainers(podID)
	if timeout > 0 {
		for _, c := range cs {
			_ = c.Kill(ctx, syscall.SIGTERM, false)
		}
	}
	deadline := time.After(timeout)
	for _, c := range cs {
		select {
		case <-c.done:
			continue
		case <-deadline:
		}
		break
	}
	for _, c := range cs {
		select {
		case <-c.done:
			continue
		default:
		}
		_ = c.Kill(ctx, syscall.SIGKILL, true)
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			log.G(ctx).WithField("container_id", c.id).Warn("container did not exit after SIGKILL")
		}
	}
}

// deletePod removes what containers of a removed pod still hold.
func (b *backend) deletePod(ctx context.Context, podID string) {
	for _, c := range b.podContainers(podID) {
		c.cleanup(ctx)
	}
}

// shimDelete cleans up after containerd lost a task connection.
func shimDelete(ctx context.Context, id, bundle string) (*daemon.ShimExit, error) {
	exit := &daemon.ShimExit{Status: 128 + uint32(syscall.SIGKILL), At: time.Now()}
	if bundle == "" || !filepath.IsAbs(bundle) {
		return exit, nil
	}
	data, err := os.ReadFile(filepath.Join(bundle, bundleNote))
	if err != nil {
		return exit, nil // nothing of ours there
	}
	var note struct {
		Binary string `json:"runc_binary"`
		Root   string `json:"runc_root"`
		Dir    string `json:"dir"`
	}
	if err := json.Unmarshal(data, &note); err != nil {
		return nil, fmt.Errorf("%s: %w", bundleNote, err)
	}
	r := &runc.Runc{Command: note.Binary, Root: note.Root}
	if st, err := r.State(ctx, id); err == nil {
		exit.Pid = uint32(st.Pid)
	}
	_ = r.Delete(ctx, id, &runc.DeleteOpts{Force: true})
	_ = mount.UnmountAll(filepath.Join(bundle, "rootfs"))
	if note.Dir != "" && filepath.Base(note.Dir) == id {
		_ = os.RemoveAll(note.Dir)
	}
	_ = os.Remove(filepath.Join(bundle, bundleNote))
	return exit, nil
}

var _ = strconv.Itoa
