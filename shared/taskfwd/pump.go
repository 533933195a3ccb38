package taskfwd

import (
	"context"
	"fmt"
	"sync"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/events"
)

// pump is the one event pump of a guest: it long-polls the guest's task
// events (Conn.Events) for the backend's lifetime and turns them into the
// ends of the guest's processes (TaskExit) and the OOM notices of its
// containers (TaskOOM). When the guest is gone every process registered
// with it ends with sandbox.ExitCodeLost.
//
// The pump is the only consumer of the guest's event queue: it acknowledges
// what it read (agentapi's GetEvents), so nothing else may poll it.
// Processes are registered before the guest call that makes them can end
// (Create, Exec, or the State query of a recovery), so that no exit passes
// unseen.
type pump struct {
	b     *backend
	g     Guest
	mu    sync.Mutex
	procs map[procKey]*process
	// ended is set once the guest is gone or the daemon ends: add refuses.
	ended bool
}

// pumpFor returns the pump of g, started on first use.
func (b *backend) pumpFor(g Guest) *pump {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.pumps[g.ID()]; ok {
		return p
	}
	p := &pump{b: b, g: g, procs: map[procKey]*process{}}
	b.pumps[g.ID()] = p
	go p.run()
	return p
}

// add registers a process whose events the pump delivers.
func (p *pump) add(pr *process) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return errGone(p.g)
	}
	if old, ok := p.procs[pr.key()]; ok && old != pr {
		return fmt.Errorf("%v: registered twice: %w", pr.key(), errdefs.ErrAlreadyExists)
	}
	p.procs[pr.key()] = pr
	return nil
}

// remove unregisters a process (once deleted).
func (p *pump) remove(pr *process) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.procs[pr.key()] == pr {
		delete(p.procs, pr.key())
	}
}

func (p *pump) get(k procKey) *process {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.procs[k]
}

// run pumps until the guest is gone or the daemon ends; when the guest is
// gone, its processes are lost.
func (p *pump) run() {
	ctx, cancel := context.WithCancel(p.b.life)
	defer cancel()
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox_id", p.g.ID()))
	// the guest's end stops a poll at once (its connection may hang)
	go func() {
		select {
		case <-p.g.Exited():
			cancel()
		case <-ctx.Done():
		}
	}()
	var seq uint64
	for !forwarding(p.g).WaitExits {
		err := withConn(ctx, p.g, func(c Conn) error {
			ec, err := asEventConn(c)
			if err != nil {
				return err
			}
			seq, err = ec.Events(ctx, seq, func(ev *agentapi.Event) error {
				p.handle(ctx, ev)
				return nil
			})
			return err
		})
		if ctx.Err() != nil || gone(p.g) {
			log.G(ctx).WithError(err).Debug("guest event pump ended")
			break
		}
		// not a broken connection: the guest answered with an error. The
		// exits of its processes still come from here only: poll again.
		log.G(ctx).WithError(err).Warn("guest events: polling again")
		select {
		case <-ctx.Done():
		case <-time.After(retryMax):
		}
	}
	// (a guest without events: each process waits for its own exit; the
	// pump only sees the guest go)
	<-ctx.Done()
	if gone(p.g) {
		p.loseAll(ctx)
	}
	p.mu.Lock()
	p.ended = true
	p.mu.Unlock()
	p.b.mu.Lock()
	if p.b.pumps[p.g.ID()] == p {
		delete(p.b.pumps, p.g.ID())
	}
	p.b.mu.Unlock()
}

// handle applies one guest event. Other topics than exits and OOMs are the
// guest's view of what the host's task service publishes itself.
func (p *pump) handle(ctx context.Context, ev *agentapi.Event) {
	switch ev.GetTopic() {
	case events.TopicTaskExit:
		var te apievents.TaskExit
		if err := ev.GetEvent().UnmarshalTo(&te); err != nil {
			log.G(ctx).WithError(err).WithField("seq", ev.GetSeq()).Warn("undecodable TaskExit from the guest")
			return
		}
		k := procKey{id: te.GetContainerID()}
		if te.GetID() != te.GetContainerID() {
			k.exec = te.GetID()
		}
		pr := p.get(k)
		if pr == nil {
			return
		}
		if pid := pr.Pid(); pid != 0 && te.GetPid() != 0 && te.GetPid() != pid {
			// an earlier process of the same ids, whose exit was not acknowledged
			log.G(ctx).WithFields(log.Fields{"container_id": k.id, "exec_id": k.exec, "pid": te.GetPid()}).Debug("stale exit ignored")
			return
		}
		pr.exited(te.GetExitStatus(), timeOf(te.GetExitedAt()))
	case events.TopicTaskOOM:
		var oom apievents.TaskOOM
		if err := ev.GetEvent().UnmarshalTo(&oom); err != nil {
			log.G(ctx).WithError(err).WithField("seq", ev.GetSeq()).Warn("undecodable TaskOOM from the guest")
			return
		}
		if pr := p.get(procKey{id: oom.GetContainerID()}); pr != nil {
			pr.c.notifyOOM()
		}
	}
}

// loseAll ends every registered process: the guest is gone.
func (p *pump) loseAll(ctx context.Context) {
	p.mu.Lock()
	p.ended = true
	procs := make([]*process, 0, len(p.procs))
	for _, pr := range p.procs {
		procs = append(procs, pr)
	}
	p.mu.Unlock()
	if len(procs) > 0 {
		log.G(ctx).WithField("processes", len(procs)).Warn("guest gone: its processes are lost")
	}
	for _, pr := range procs {
		pr.markLost()
	}
}
