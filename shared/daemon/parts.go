package daemon

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/magnetar-runtime/magnetar/shared/controller"
	"github.com/magnetar-runtime/magnetar/shared/events"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// Parts are a sandboxer's two servers, joined: the Sandbox API controller
// over the driver, and (when the sandboxer runs tasks itself) the Task API
// service over the backend. Containers meet their pods through the
// controller (task.WithPods), and the controller stops and deletes a pod's
// containers through the service (sandbox.Containers).
type Parts struct {
	Controller *controller.Controller
	// Tasks is nil for a sandboxer without a task backend.
	Tasks *task.Service
}

// NewParts makes the parts of sandboxer name keeping state under dir
// (dir/sandboxes, dir/state, dir/tasks). Call Recover before serving.
func NewParts(life context.Context, dir, name string, d sandbox.Driver, b task.Backend, pub events.Publisher, opts ...controller.Option) (*Parts, error) {
	ctrl, err := controller.New(life, dir, d, opts...)
	if err != nil {
		return nil, err
	}
	p := &Parts{Controller: ctrl}
	if b == nil {
		return p, nil
	}
	if p.Tasks, err = task.New(life, filepath.Join(dir, "tasks"), b, pub, task.WithPods(ctrl, "magnetar-"+name)); err != nil {
		return nil, err
	}
	ctrl.SetContainers(p.Tasks)
	return p, nil
}

// Recover recovers the sandboxes, then the tasks: a container finds its pod
// when it recovers, and a VM's containers need their pod's agent.
func (p *Parts) Recover(ctx context.Context) error {
	if err := p.Controller.Recover(ctx); err != nil {
		return fmt.Errorf("recovering sandboxes: %w", err)
	}
	if p.Tasks != nil {
		if err := p.Tasks.Recover(ctx); err != nil {
			return fmt.Errorf("recovering tasks: %w", err)
		}
	}
	return nil
}
