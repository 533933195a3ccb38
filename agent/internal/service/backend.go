package service

import (
	"context"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// WithStreams wraps a container backend so that every process's stdio
// FIFOs exist (and the hub holds its ends) before the backend opens them,
// and are removed when the process is deleted.
func WithStreams(b task.Backend, h *Hub) task.Backend { return &streamBackend{b: b, h: h} }

type streamBackend struct {
	b task.Backend
	h *Hub
}

func (s *streamBackend) Create(ctx context.Context, r *task.CreateRequest) (task.Container, error) {
	if err := s.h.Prepare(r.ID, "", r.Stdio); err != nil {
		return nil, err
	}
	c, err := s.b.Create(ctx, r)
	if err != nil {
		s.h.ReleaseContainer(r.ID)
		return nil, err
	}
	// the container's init holds its write ends now (runc create)
	s.h.Started(r.ID, "")
	return &streamContainer{Container: c, h: s.h, id: r.ID}, nil
}

type streamContainer struct {
	task.Container
	h  *Hub
	id string
}

func (c *streamContainer) Exec(ctx context.Context, id string, sp *specs.Process, io stdio.Config) (task.Process, error) {
	if err := c.h.Prepare(c.id, id, io); err != nil {
		return nil, err
	}
	p, err := c.Container.Exec(ctx, id, sp, io)
	if err != nil {
		c.h.Release(c.id, id)
		return nil, err
	}
	return &streamProcess{Process: p, h: c.h, id: c.id, exec: id}, nil
}

func (c *streamContainer) Delete(ctx context.Context) error {
	if err := c.Container.Delete(ctx); err != nil {
		return err
	}
	c.h.ReleaseContainer(c.id)
	return nil
}

// Pause and Resume forward to a backend that can; others answer
// NotImplemented as the task server would.
func (c *streamContainer) Pause(ctx context.Context) error {
	if p, ok := c.Container.(task.Pauser); ok {
		return p.Pause(ctx)
	}
	return errdefs.ErrNotImplemented
}

func (c *streamContainer) Resume(ctx context.Context) error {
	if p, ok := c.Container.(task.Pauser); ok {
		return p.Resume(ctx)
	}
	return errdefs.ErrNotImplemented
}

var closedOOM = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *streamContainer) OOM() <-chan struct{} {
	if n, ok := c.Container.(task.OOMNotifier); ok {
		return n.OOM()
	}
	return closedOOM
}

type streamProcess struct {
	task.Process
	h        *Hub
	id, exec string
}

func (p *streamProcess) Start(ctx context.Context) error {
	if err := p.Process.Start(ctx); err != nil {
		return err
	}
	p.h.Started(p.id, p.exec)
	return nil
}

func (p *streamProcess) Delete(ctx context.Context) error {
	if err := p.Process.Delete(ctx); err != nil {
		return err
	}
	p.h.Release(p.id, p.exec)
	return nil
}
