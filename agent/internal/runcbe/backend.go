package runcbe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/agent/internal/reaper"
	"github.com/magnetar-runtime/magnetar/shared/bundle"
	"github.com/magnetar-runtime/magnetar/shared/podinit"
	"github.com/magnetar-runtime/magnetar/shared/runcproc"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
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

	podMu sync.Mutex
	// podInit is the pid of the init holding the pod's shared PID
	// namespace (0 until a container asks for it, or once it died);
	// podInitDone is closed when it exits.
	podInit     int
	podInitDone chan struct{}
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
		if int(c.Pid()) == pid {
			return true
		}
	}
	return false
}

// ctr is one container; its init and the runc calls are runcproc's.
type ctr struct {
	*runcproc.Init
	b      *Backend
	id     string
	dir    string
	cgroup string

	mu   sync.Mutex
	oom  chan struct{}
	stop context.CancelFunc
}

var (
	_ task.Container   = (*ctr)(nil)
	_ task.Pauser      = (*ctr)(nil)
	_ task.OOMNotifier = (*ctr)(nil)
)

// reaperWaiter learns exits from the agent's reaper (the agent is PID 1:
// container inits are re-parented to it).
type reaperWaiter struct{ r *reaper.Reaper }

func (w reaperWaiter) Watch(pid int, since time.Time) (runcproc.Waited, error) {
	exit := w.r.WaitPid(pid, since)
	return runcproc.WaitFunc(func() runcproc.Exit {
		e := <-exit
		return runcproc.Exit{Status: e.Status, At: e.At, Known: true}
	}), nil
}

// Create runs `runc create` for a bundle on the share.
func (b *Backend) Create(ctx context.Context, r *task.CreateRequest) (_ task.Container, retErr error) {
	real, ok := inShare(b.cfg.ShareRoot, r.Bundle)
	if !ok || real == inShareRoot(b.cfg.ShareRoot) {
		return nil, fmt.Errorf("bundle %q: must lie inside the share %s: %w", r.Bundle, b.cfg.ShareRoot, errdefs.ErrInvalidArgument)
	}
	// the bundle as judged, its symlinks followed: what was checked is what
	// is used (and runc takes no rootfs path through a symlink)
	r.Bundle = real
	if len(r.Rootfs) > 0 {
		return nil, fmt.Errorf("rootfs: %d mounts given: the host mounts the rootfs into the bundle on the share before Create: %w", len(r.Rootfs), errdefs.ErrInvalidArgument)
	}
	if err := RewriteSpec(r.Spec, r.ID, b.cfg.ShareRoot, b.isContainerPid, b.podPIDNamespace); err != nil {
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
	if _, ok := inShare(b.cfg.ShareRoot, r.Spec.Root.Path); !ok {
		return nil, fmt.Errorf("root.path %q: must lie inside the share: %w", r.Spec.Root.Path, errdefs.ErrInvalidArgument)
	}
	dir := filepath.Join(b.cfg.Dir, r.ID)
	if err := runcproc.MakeDir(r.ID, dir); err != nil {
		return nil, err
	}
	c := &ctr{b: b, id: r.ID, dir: dir, cgroup: r.Spec.Linux.CgroupsPath, oom: make(chan struct{}, 1)}
	c.Init = runcproc.New(r.ID, dir, b.runc(filepath.Join(dir, "runc.log")), reaperWaiter{b.cfg.Reaper})
	c.OnExit = func(runcproc.Exit) {
		c.mu.Lock()
		if c.stop != nil {
			c.stop()
		}
		c.mu.Unlock()
	}
	defer func() {
		if retErr != nil {
			c.cleanup(context.WithoutCancel(ctx))
		}
	}()
	if err := bundle.WriteSpec(dir, r.Spec); err != nil {
		return nil, err
	}
	c.Namespace = r.Namespace
	if err := c.Create(ctx, r.Stdio, b.cfg.NoPivot); err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.ctr[r.ID] = c
	b.mu.Unlock()
	log.G(ctx).WithFields(log.Fields{"container_id": r.ID, "pid": c.Pid()}).Info("container created")
	return c, nil
}

func (c *ctr) Start(ctx context.Context) error {
	if err := c.Init.Start(ctx); err != nil {
		return err
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

func (c *ctr) Delete(ctx context.Context) error {
	if err := c.Terminate(ctx); err != nil {
		return err
	}
	c.cleanup(ctx)
	c.b.mu.Lock()
	delete(c.b.ctr, c.id)
	c.b.mu.Unlock()
	return nil
}

func (c *ctr) cleanup(ctx context.Context) {
	c.Release(ctx)
	_ = os.RemoveAll(c.dir)
}

func (c *ctr) Stats(ctx context.Context) (*anypb.Any, error) { return metricsV2(c.cgroup) }

func (c *ctr) State() json.RawMessage {
	b, _ := json.Marshal(map[string]any{"pid": int(c.Pid()), "dir": c.dir})
	return b
}

// Exec prepares an exec process (AppArmor and SELinux labels dropped, as in
// RewriteSpec); Start runs it.
func (c *ctr) Exec(ctx context.Context, id string, sp *specs.Process, io stdio.Config) (task.Process, error) {
	sp.ApparmorProfile, sp.SelinuxLabel = "", ""
	return c.Init.Exec(ctx, id, sp, io)
}

// podPIDNamespace is the pod's shared PID namespace in the guest, held by a
// pod init (this binary re-executed as shared/podinit, PID 1 of a new PID
// namespace: it reaps the pod's orphans), started when the first container
// asks for it and again if it died.
func (b *Backend) podPIDNamespace() (string, error) {
	b.podMu.Lock()
	defer b.podMu.Unlock()
	if b.podInit > 0 {
		select {
		case <-b.podInitDone:
			b.podInit = 0
		default:
			return fmt.Sprintf("/proc/%d/ns/pid", b.podInit), nil
		}
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(self, podinit.Args("pod")...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Setsid: true}
	cmd.Dir = "/"
	ec, err := b.cfg.Reaper.Start(cmd)
	if err != nil {
		return "", fmt.Errorf("starting the pod init: %w", err)
	}
	done := make(chan struct{})
	go func() {
		e := <-ec
		log.L.WithFields(log.Fields{"pid": e.Pid, "status": e.Status}).Warn("the pod's init exited: the pod's PID namespace is gone")
		close(done)
	}()
	b.podInit, b.podInitDone = cmd.Process.Pid, done
	log.L.WithField("pid", b.podInit).Info("pod init started: the pod's shared PID namespace")
	return fmt.Sprintf("/proc/%d/ns/pid", b.podInit), nil
}
