package taskfwd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/bundle"
	"github.com/magnetar-runtime/magnetar/shared/fdstore"
	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// Defaults of Config.
const (
	DefaultDrainTimeout = time.Second
	DefaultCallTimeout  = 10 * time.Second
)

// Config configures the forwarding backend.
type Config struct {
	// Life is the daemon's lifetime: the event pumps and stdio relays end
	// with it (the guests' processes run on, for a restarted daemon to
	// recover). Required.
	Life context.Context
	// Logger logs what runs for the lifetime (pumps, relays); nil: the
	// logger of Life.
	Logger *log.Entry
	// DrainTimeout bounds how long a process's exit, once the guest
	// reported it, is held for its output to reach EOF (0:
	// DefaultDrainTimeout). Output held open longer (a daemonized child
	// keeping stdout) is still copied after the exit is reported, until EOF
	// or Delete.
	DrainTimeout time.Duration
	// CallTimeout bounds the guest calls the backend makes on its own
	// behalf: rolling back a failed Create (0: DefaultCallTimeout).
	CallTimeout time.Duration
	// FDs is the keeper's descriptor store: containerd's stdio FIFOs are
	// held there while they are relayed, so that containerd's side sees
	// neither EOF nor EPIPE while no daemon runs (see the package doc).
	// nil: nothing held.
	FDs *fdstore.Client
}

// backend is the forwarding task.Backend.
type backend struct {
	life        context.Context
	drain       time.Duration
	callTimeout time.Duration
	fds         *fdstore.Client

	mu    sync.Mutex
	pumps map[string]*pump // by pod (guest) id
}

var (
	_ task.Backend   = (*backend)(nil)
	_ task.Recoverer = (*backend)(nil)
)

// New makes the forwarding backend. Every container it creates must belong
// to a pod whose instance implements Guest (serve the task service
// task.WithPods).
func New(cfg Config) task.Backend {
	life := cfg.Life
	if life == nil {
		life = context.Background()
	}
	if cfg.Logger != nil {
		life = log.WithLogger(life, cfg.Logger)
	}
	b := &backend{life: life, drain: cfg.DrainTimeout, callTimeout: cfg.CallTimeout, fds: cfg.FDs, pumps: map[string]*pump{}}
	if b.drain <= 0 {
		b.drain = DefaultDrainTimeout
	}
	if b.callTimeout <= 0 {
		b.callTimeout = DefaultCallTimeout
	}
	return b
}

// cleanupContext is a context for undoing after ctx failed or ended.
func (b *backend) cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), b.callTimeout)
}

// Create mounts the container's bundle into its pod's share, writes the
// rewritten config.json there and creates the container in the guest, with
// the host's stdio relayed. On error nothing is left: no mount, no
// directory, no container in the guest.
func (b *backend) Create(ctx context.Context, r *task.CreateRequest) (_ task.Container, retErr error) {
	g, ok := r.Pod.(Guest)
	if !ok || g == nil {
		return nil, fmt.Errorf("container %s: no guest pod given (%T): %w", r.ID, r.Pod, errdefs.ErrInvalidArgument)
	}
	if gone(g) {
		return nil, errGone(g)
	}
	if err := mount.Validate("rootfs", r.Rootfs); err != nil {
		return nil, err
	}
	st := newCtrState(g, r.ID)
	if err := os.Mkdir(st.Dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("container %s: its directory in the share exists: %w", r.ID, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("container %s: %w", r.ID, err)
	}
	c := b.newCtr(g, r.ID, r.Namespace, st)
	p := c.newProcess("", r.Stdio)
	c.process = p
	sentCreate := false
	defer func() {
		if retErr == nil {
			return
		}
		cctx, cancel := b.cleanupContext(ctx)
		defer cancel()
		if sentCreate {
			if err := p.deleteInGuest(cctx); err != nil {
				log.G(ctx).WithError(err).Warn("rolling back the container in the guest")
			}
		}
		p.release()
		if err := removeBundle(st.Dir); err != nil {
			log.G(ctx).WithError(err).Warn("removing the container's directory in the share")
		}
	}()
	if err := writeBundle(ctx, r, g, c.fw, st); err != nil {
		return nil, err
	}
	// a restarted containerd reconnects to the task through this binary,
	// and its shim-style `delete` finds the directory in the note
	c.st.HostBundle = r.Bundle
	if err := bundle.WriteNotes(r.Bundle, BundleNote, bundleNote{Dir: st.Dir}); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			bundle.RemoveNotes(r.Bundle, BundleNote)
		}
	}()
	if err := p.openIO(ctx, false); err != nil {
		return nil, err
	}
	if err := c.pump.add(p); err != nil {
		return nil, err
	}
	cctx, t, err := c.taskAPI(ctx)
	if err != nil {
		return nil, err
	}
	gs := p.guestStdio()
	sentCreate = true
	resp, err := t.Create(cctx, &taskapi.CreateTaskRequest{ID: r.ID, Bundle: st.Bundle, Terminal: gs.Terminal,
		Stdin: gs.Stdin, Stdout: gs.Stdout, Stderr: gs.Stderr})
	if err != nil {
		// a container of this id in the guest is not ours to roll back
		sentCreate = !errdefs.IsAlreadyExists(err)
		return nil, c.guestErr("create", err)
	}
	p.pid.Store(resp.GetPid())
	p.attach()
	log.G(ctx).WithField("pid", resp.GetPid()).Debug("container created in the guest")
	return c, nil
}

// Recover finds a container again after a daemon restart, from its record
// and its pod (a Guest; nil when the pod is gone). A container the guest
// still has gets its stdio relays re-attached (containerd's host targets
// reopened) and is watched again; one that exited meanwhile ends with the
// guest's exit status; one the guest does not have (or whose guest is
// gone) is lost (sandbox.ExitCodeLost). For a Create the daemon died in
// (task.StatusCreating) the container is named from the record and the pod
// alone, for the service's Delete to remove it in the guest and on the
// host.
func (b *backend) Recover(ctx context.Context, rec *task.Record, pod sandbox.Instance) (task.Container, error) {
	g, _ := pod.(Guest)
	var st ctrState
	switch {
	case rec.Status == task.StatusCreating && g != nil:
		st = newCtrState(g, rec.ID)
	case rec.Status == task.StatusCreating:
		// pod gone: so is its share
	default:
		if err := json.Unmarshal(rec.Backend, &st); err != nil {
			return nil, fmt.Errorf("container %s state: %v: %w", rec.ID, err, errdefs.ErrInvalidArgument)
		}
		if st.Dir != "" && filepath.Base(st.Dir) != rec.ID {
			return nil, fmt.Errorf("container %s state: directory %q is not the container's: %w", rec.ID, st.Dir, errdefs.ErrInvalidArgument)
		}
	}
	c := b.newCtr(g, rec.ID, rec.Namespace, st)
	p := c.newProcess("", rec.Stdio)
	c.process = p
	p.pid.Store(rec.Pid)
	switch {
	case rec.Status == task.StatusCreating:
		if c.pump != nil {
			// so that Delete sees the exit of the SIGKILL the service sends first
			_ = c.pump.add(p)
		}
		return c, nil
	case rec.Exit != nil:
		p.markEnded(rec.Exit.Code, rec.Exit.At)
		return c, nil
	case g == nil:
		p.markLost()
		return c, nil
	}
	if err := c.recoverProcess(ctx, p); err != nil {
		if !errdefs.IsNotFound(err) && !errdefs.IsUnavailable(err) {
			return nil, err
		}
		log.G(ctx).WithError(err).WithField("container_id", rec.ID).Warn("container lost with its guest")
		p.markLost()
	}
	return c, nil
}

// recoverProcess finds p in the guest again: registered with the pump
// first, then the guest's state (so that an exit in between is seen either
// way), the host targets reopened and the relays attached.
func (c *ctr) recoverProcess(ctx context.Context, p *process) error {
	if err := c.pump.add(p); err != nil {
		return err
	}
	cctx, t, err := c.taskAPI(ctx)
	if err != nil {
		c.pump.remove(p)
		return err
	}
	st, err := t.State(cctx, &taskapi.StateRequest{ID: c.id, ExecID: p.execID})
	if err != nil {
		c.pump.remove(p)
		return c.guestErr("state", err)
	}
	if st.GetPid() != 0 {
		p.pid.Store(st.GetPid())
	}
	if st.GetStatus() != tasktypes.Status_CREATED {
		p.started.Store(true)
	}
	if c.fw.StdioByPath {
		// the guest holds containerd's FIFOs, bound into the share
	} else if err := p.openIO(ctx, true); err != nil {
		// the output stays in the guest; the process is still watched
		p.logger().WithError(err).Warn("containerd's stdio could not be reopened: not relaying")
	}
	p.attach()
	if st.GetStatus() == tasktypes.Status_STOPPED {
		p.exited(st.GetExitStatus(), timeOf(st.GetExitedAt()))
	}
	return nil
}
