package runcbe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

	"github.com/magnetar-runtime/magnetar/agent/internal/reaper"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/store"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// Config locates runc and the backend's state.
type Config struct {
	// Runc is the runc binary (/bin/runc in the image).
	Runc string
	// Root is runc's --root (/run/magnetar/runc).
	Root string
	// Dir holds one directory per container (/run/magnetar/ctr).
	Dir string
	// ShareRoot confines bundles and bind sources (agentapi.ShareRoot).
	ShareRoot string
	// Reaper delivers the exits of container processes.
	Reaper *reaper.Reaper
	// NoPivot runs `runc create --no-pivot`: needed when the guest's root
	// is the initramfs (rootfs cannot be pivot_root'ed). The container is
	// then jailed with MS_MOVE + chroot; the VM is the isolation boundary.
	NoPivot bool
}

// Backend is the guest runc backend.
type Backend struct {
	cfg Config
	mu  sync.Mutex
	ctr map[string]*ctr
}

// New makes the backend; the reaper must already be runc.Monitor.
func New(cfg Config) (*Backend, error) {
	if cfg.Runc == "" || cfg.Root == "" || cfg.Dir == "" || cfg.ShareRoot == "" || cfg.Reaper == nil {
		return nil, errors.New("runcbe: Runc, Root, Dir, ShareRoot and Reaper are required")
	}
	for _, d := range []string{cfg.Root, cfg.Dir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	return &Backend{cfg: cfg, ctr: map[string]*ctr{}}, nil
}

func (b *Backend) runc(logFile string) *runc.Runc {
	return &runc.Runc{Command: b.cfg.Runc, Root: b.cfg.Root, Log: logFile, LogFormat: runc.JSON}
}

func (b *Backend) isContainerPid(pid int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.ctr {
		if c.pid == pid {
			return true
		}
	}
	return false
}

type ctr struct {
	b      *Backend
	id     string
	dir    string
	cgroup string
	r      *runc.Runc
	io     *stdio.IO
	pid    int

	done chan struct{}
	mu   sync.Mutex
	code uint32
	at   time.Time
	oom  chan struct{}
	stop context.CancelFunc
}

var (
	_ task.Container   = (*ctr)(nil)
	_ task.Pauser      = (*ctr)(nil)
	_ task.OOMNotifier = (*ctr)(nil)
)

func runcError(op, logFile string, err error) error {
	if msg := lastRuncError(logFile); msg != "" {
		return fmt.Errorf("runc %s: %s: %w", op, msg, errdefs.ErrFailedPrecondition)
	}
	return fmt.Errorf("runc %s: %w", op, err)
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

// Create runs `runc create` for a bundle on the share.
func (b *Backend) Create(ctx context.Context, r *task.CreateRequest) (_ task.Container, retErr error) {
	if !within(b.cfg.ShareRoot, r.Bundle) || r.Bundle == b.cfg.ShareRoot {
		return nil, fmt.Errorf("bundle %q: must lie inside the share %s: %w", r.Bundle, b.cfg.ShareRoot, errdefs.ErrInvalidArgument)
	}
	if len(r.Rootfs) > 0 {
		return nil, fmt.Errorf("rootfs: %d mounts given: the host mounts the rootfs into the bundle on the share before Create: %w", len(r.Rootfs), errdefs.ErrInvalidArgument)
	}
	if err := RewriteSpec(r.Spec, r.ID, b.cfg.ShareRoot, b.isContainerPid); err != nil {
		return nil, err
	}
	if r.Spec.Root == nil {
		r.Spec.Root = &specs.Root{}
	}
	if r.Spec.Root.Path == "" {
		r.Spec.Root.Path = "rootfs"
	}
	if !filepath.IsAbs(r.Spec.Root.Path) {
		r.Spec.Root.Path = filepath.Join(r.Bundle, r.Spec.Root.Path)
	}
	if p := filepath.Clean(r.Spec.Root.Path); !within(b.cfg.ShareRoot, p) {
		return nil, fmt.Errorf("root.path %q: must lie inside the share: %w", r.Spec.Root.Path, errdefs.ErrInvalidArgument)
	}
	dir := filepath.Join(b.cfg.Dir, r.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if os.IsExist(err) {
			return nil, fmt.Errorf("container %s: %w", r.ID, errdefs.ErrAlreadyExists)
		}
		return nil, err
	}
	c := &ctr{b: b, id: r.ID, dir: dir, cgroup: r.Spec.Linux.CgroupsPath, r: b.runc(filepath.Join(dir, "runc.log")),
		done: make(chan struct{}), oom: make(chan struct{}, 1)}
	defer func() {
		if retErr != nil {
			c.cleanup(context.WithoutCancel(ctx))
		}
	}()
	data, err := json.Marshal(r.Spec)
	if err != nil {
		return nil, err
	}
	if err := store.WriteFileAtomic(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		return nil, err
	}
	if c.io, err = stdio.Open(ctx, r.Stdio); err != nil {
		return nil, err
	}
	opts := &runc.CreateOpts{IO: c.io, PidFile: filepath.Join(dir, "init.pid"), NoPivot: b.cfg.NoPivot}
	var sock *runc.Socket
	if r.Stdio.Terminal {
		if sock, err = runc.NewTempConsoleSocket(); err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		defer sock.Close()
		opts.ConsoleSocket = sock
	}
	since := time.Now()
	if err := c.r.Create(ctx, r.ID, dir, opts); err != nil {
		return nil, runcError("create", c.r.Log, err)
	}
	if sock != nil {
		con, err := sock.ReceiveMaster()
		if err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
		c.io.AttachConsole(con)
	}
	pid, err := runc.ReadPidFile(opts.PidFile)
	if err != nil {
		return nil, fmt.Errorf("reading init pid: %w", err)
	}
	c.pid = pid
	exit := b.cfg.Reaper.WaitPid(pid, since)
	go func() {
		e := <-exit
		c.io.Wait()
		c.io.Finish()
		c.mu.Lock()
		c.code, c.at = uint32(e.Status), e.At
		if c.stop != nil {
			c.stop()
		}
		c.mu.Unlock()
		close(c.done)
	}()
	b.mu.Lock()
	b.ctr[r.ID] = c
	b.mu.Unlock()
	log.G(ctx).WithFields(log.Fields{"container_id": r.ID, "pid": pid}).Info("container created")
	return c, nil
}

func (c *ctr) Pid() uint32 { return uint32(c.pid) }

func (c *ctr) Start(ctx context.Context) error {
	if err := c.r.Start(ctx, c.id); err != nil {
		return runcError("start", c.r.Log, err)
	}
	c.watchOOM()
	return nil
}

func (c *ctr) watchOOM() {
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.stop = cancel
	c.mu.Unlock()
	watchOOMv2(ctx, c.cgroup, c.oom)
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
			return nil
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

func (c *ctr) ResizePty(ctx context.Context, w, h uint32) error { return c.io.Resize(w, h) }

func (c *ctr) CloseStdin(ctx context.Context) error {
	c.io.CloseStdin()
	return nil
}

func (c *ctr) Delete(ctx context.Context) error {
	select {
	case <-c.done:
	default:
		_ = c.r.Kill(ctx, c.id, int(syscall.SIGKILL), &runc.KillOpts{All: true})
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("container %s did not exit after SIGKILL: %w", c.id, errdefs.ErrUnavailable)
		}
	}
	c.cleanup(ctx)
	c.b.mu.Lock()
	delete(c.b.ctr, c.id)
	c.b.mu.Unlock()
	return nil
}

func (c *ctr) cleanup(ctx context.Context) {
	if err := c.r.Delete(ctx, c.id, &runc.DeleteOpts{Force: true}); err != nil {
		if msg := lastRuncError(c.r.Log); msg != "" && !strings.Contains(msg, "does not exist") {
			log.G(ctx).WithField("container_id", c.id).Warnf("runc delete: %s", msg)
		}
	}
	if c.io != nil {
		c.io.Close()
	}
	_ = os.RemoveAll(c.dir)
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

func (c *ctr) Stats(ctx context.Context) (*anypb.Any, error) { return metricsV2(c.cgroup) }

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
	b, _ := json.Marshal(map[string]any{"pid": c.pid, "dir": c.dir})
	return b
}

func (c *ctr) Exec(ctx context.Context, id string, sp *specs.Process, io stdio.Config) (task.Process, error) {
	sp.ApparmorProfile, sp.SelinuxLabel = "", ""
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
	pidFile := filepath.Join(e.c.dir, "exec-"+e.id+".pid")
	logFile := filepath.Join(e.c.dir, "exec-"+e.id+".log")
	defer os.Remove(pidFile)
	defer os.Remove(logFile)
	opts := &runc.ExecOpts{IO: ioh, PidFile: pidFile, Detach: true}
	var sock *runc.Socket
	if e.cfg.Terminal {
		if sock, err = runc.NewTempConsoleSocket(); err != nil {
			return fmt.Errorf("console socket: %w", err)
		}
		defer sock.Close()
		opts.ConsoleSocket = sock
	}
	r := *e.c.r
	r.Log = logFile
	since := time.Now()
	if err := r.Exec(ctx, e.c.id, *e.spec, opts); err != nil {
		return runcError("exec", logFile, err)
	}
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
	exit := e.c.b.cfg.Reaper.WaitPid(pid, since)
	e.mu.Lock()
	e.io, e.pid = ioh, pid
	e.mu.Unlock()
	go func() {
		x := <-exit
		ioh.Wait()
		ioh.Finish()
		e.mu.Lock()
		e.code, e.at = uint32(x.Status), x.At
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
