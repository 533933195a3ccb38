package taskfwd

import (
	"context"
	"encoding/json"
	"fmt"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/shared/bundle"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// Type URLs of the runtime-spec JSON that containerd puts in Task API Anys
// (the guest's task server reads the JSON and ignores the URL).
const (
	processTypeURL   = "types.containerd.io/opencontainers/runtime-spec/1/Process"
	resourcesTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
)

// ctr is one forwarded container; the embedded process is its init.
type ctr struct {
	*process
	b *backend
	// g is the container's guest; nil when recovered without its pod.
	g    Guest
	pump *pump // nil without g
	// fw is how g is forwarded to.
	fw  Forwarding
	id  string
	ns  string
	st  ctrState
	oom chan struct{}
}

var (
	_ task.Container     = (*ctr)(nil)
	_ task.Pauser        = (*ctr)(nil)
	_ task.OOMNotifier   = (*ctr)(nil)
	_ task.ExecRecoverer = (*ctr)(nil)
)

func (b *backend) newCtr(g Guest, id, ns string, st ctrState) *ctr {
	c := &ctr{b: b, g: g, id: id, ns: ns, st: st, oom: make(chan struct{}, 1)}
	if g != nil {
		c.fw = forwarding(g)
		c.pump = b.pumpFor(g)
	}
	return c
}

// guestGone reports whether the container's guest is gone (or was never
// found again).
func (c *ctr) guestGone() bool { return c.g == nil || gone(c.g) }

// taskAPI is the guest's Task API, with ctx carrying the container's
// namespace as containerd sends it.
func (c *ctr) taskAPI(ctx context.Context) (context.Context, taskapi.TTRPCTaskService, error) {
	if c.g == nil {
		return ctx, nil, fmt.Errorf("container %s: %w", c.id, errGone(nil))
	}
	conn, err := c.g.Conn(ctx)
	if err != nil {
		return ctx, nil, fmt.Errorf("guest of pod %s: %w", c.g.ID(), err)
	}
	return withNamespace(ctx, c.ns), conn.Task(), nil
}

// guestErr names the guest in the error of a forwarded call; the error's
// errdefs category (the guest's, runc's message included) is kept.
func (c *ctr) guestErr(op string, err error) error {
	if err == nil || c.g == nil {
		return err
	}
	return fmt.Errorf("%s in the guest of pod %s: %w", op, c.g.ID(), err)
}

// notifyOOM notes an OOM kill in the container (at most one pending).
func (c *ctr) notifyOOM() {
	select {
	case c.oom <- struct{}{}:
	default:
	}
}

// OOM delivers the guest's OOM kills in the container.
func (c *ctr) OOM() <-chan struct{} { return c.oom }

// State is the container's backend record: its directory in the share, on
// both sides (the rest is in the task record).
func (c *ctr) State() json.RawMessage {
	data, _ := json.Marshal(&c.st)
	return data
}

// Delete deletes the container in the guest, then unmounts its rootfs and
// binds and removes its directory in the share. Idempotent.
func (c *ctr) Delete(ctx context.Context) error {
	if err := c.deleteInGuest(ctx); err != nil {
		return err
	}
	c.release()
	if err := removeBundle(c.st.Dir); err != nil {
		return fmt.Errorf("container %s: %w", c.id, err)
	}
	if c.st.HostBundle != "" {
		bundle.RemoveNotes(c.st.HostBundle, BundleNote)
	}
	return nil
}

// Exec creates an exec process in the guest (the spec as containerd sends
// it); Start starts it.
func (c *ctr) Exec(ctx context.Context, id string, sp *specs.Process, io stdio.Config) (_ task.Process, retErr error) {
	if c.guestGone() {
		return nil, fmt.Errorf("container %s: %w", c.id, errGone(c.g))
	}
	data, err := json.Marshal(sp)
	if err != nil {
		return nil, fmt.Errorf("exec spec: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	p := c.newProcess(id, io)
	sentExec := false
	defer func() {
		if retErr == nil {
			return
		}
		if sentExec {
			cctx, cancel := c.b.cleanupContext(ctx)
			_ = p.deleteInGuest(cctx)
			cancel()
		}
		p.release()
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
	sentExec = true
	if _, err := t.Exec(cctx, &taskapi.ExecProcessRequest{ID: c.id, ExecID: id, Terminal: gs.Terminal,
		Stdin: gs.Stdin, Stdout: gs.Stdout, Stderr: gs.Stderr, Spec: &anypb.Any{TypeUrl: processTypeURL, Value: data}}); err != nil {
		sentExec = !errdefs.IsAlreadyExists(err)
		return nil, c.guestErr("exec", err)
	}
	p.attach()
	return p, nil
}

// RecoverExec finds an exec again after a daemon restart, as Recover finds
// the init: running, it is relayed and watched again; exited meanwhile, it
// ends with the guest's status. One the guest does not have fails, and the
// service reports it lost.
func (c *ctr) RecoverExec(ctx context.Context, r *task.ExecRecord) (task.Process, error) {
	if c.guestGone() {
		return nil, fmt.Errorf("exec %s: %w", r.ID, errGone(c.g))
	}
	p := c.newProcess(r.ID, r.Stdio)
	p.pid.Store(r.Pid)
	if err := c.recoverProcess(ctx, p); err != nil {
		p.release()
		return nil, err
	}
	return p, nil
}

// Pids lists the container's processes, with guest pids.
func (c *ctr) Pids(ctx context.Context) ([]*tasktypes.ProcessInfo, error) {
	cctx, t, err := c.taskAPI(ctx)
	if err != nil {
		return nil, err
	}
	r, err := t.Pids(cctx, &taskapi.PidsRequest{ID: c.id})
	if err != nil {
		return nil, c.guestErr("pids", err)
	}
	return r.GetProcesses(), nil
}

// Stats is the guest cgroup's metrics, as the guest returns them.
func (c *ctr) Stats(ctx context.Context) (*anypb.Any, error) {
	cctx, t, err := c.taskAPI(ctx)
	if err != nil {
		return nil, err
	}
	r, err := t.Stats(cctx, &taskapi.StatsRequest{ID: c.id})
	if err != nil {
		return nil, c.guestErr("stats", err)
	}
	return r.GetStats(), nil
}

// Update forwards a resources update (runc update in the guest).
func (c *ctr) Update(ctx context.Context, res *specs.LinuxResources, annotations map[string]string) error {
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("resources: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	cctx, t, err := c.taskAPI(ctx)
	if err != nil {
		return err
	}
	_, err = t.Update(cctx, &taskapi.UpdateTaskRequest{ID: c.id, Resources: &anypb.Any{TypeUrl: resourcesTypeURL, Value: data},
		Annotations: annotations})
	return c.guestErr("update", err)
}

// Pause freezes the container in the guest (NotImplemented where the guest
// cannot).
func (c *ctr) Pause(ctx context.Context) error {
	cctx, t, err := c.taskAPI(ctx)
	if err != nil {
		return err
	}
	_, err = t.Pause(cctx, &taskapi.PauseRequest{ID: c.id})
	return c.guestErr("pause", err)
}

// Resume thaws the container in the guest.
func (c *ctr) Resume(ctx context.Context) error {
	cctx, t, err := c.taskAPI(ctx)
	if err != nil {
		return err
	}
	_, err = t.Resume(cctx, &taskapi.ResumeRequest{ID: c.id})
	return c.guestErr("resume", err)
}
