package wasmsb

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/nsutil"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
)

// driver creates pods. A wasm pod costs no process and no namespace: it is
// a record, its state directory and the engine its containers run on.
type driver struct {
	env     *daemon.Env
	cfg     *Config
	engines *engines
}

var _ sandbox.Driver = (*driver)(nil)

// podState is a pod's persisted, driver-private state.
type podState struct {
	// Engine runs the pod's containers, chosen at Create from the sandboxer
	// name containerd sent (the proxy plugin of the runtime handler).
	Engine string `json:"engine"`
	Dir    string `json:"dir"`
}

type pod struct {
	exit.Latch
	id string
	d  *driver
	st podState
}

var (
	_ sandbox.Instance  = (*pod)(nil)
	_ exit.Notifier     = (*pod)(nil) // the controller watches it without a goroutine
	_ sandbox.Describer = (*pod)(nil)
)

// Create records the pod and the engine of its sandboxer name.
func (d *driver) Create(ctx context.Context, s *sandbox.Spec) (sandbox.Instance, error) {
	// a wasm pod has no network of its own, but what it is given must be one
	if err := nsutil.CheckNetNSPath(s.NetNSPath); err != nil {
		return nil, err
	}
	name := d.cfg.EngineFor(s.Sandboxer)
	if _, err := d.engines.get(ctx, name); err != nil {
		return nil, fmt.Errorf("sandboxer %q: %w", s.Sandboxer, err)
	}
	if _, ok := d.cfg.Engines[s.Sandboxer]; !ok {
		log.G(ctx).WithField("engine", name).Infof("sandboxer name %q has no [engines] entry: default engine", s.Sandboxer)
	}
	p := d.newPod(s.ID, podState{Engine: name, Dir: s.Dir})
	log.G(ctx).WithField("engine", name).Debug("pod created")
	return p, nil
}

func (d *driver) newPod(id string, st podState) *pod {
	return &pod{id: id, d: d, st: st}
}

// Recover rebuilds a pod after a restart: a pod holds nothing that dies
// with the daemon, so a running pod is running again (its containers are
// not: see backend.Recover).
func (d *driver) Recover(ctx context.Context, s *sandbox.State) (sandbox.Instance, error) {
	var st podState
	if err := json.Unmarshal(s.Driver, &st); err != nil {
		return nil, fmt.Errorf("pod state: %w", err)
	}
	if st.Engine == "" {
		st.Engine = d.cfg.EngineFor(s.Sandboxer)
	}
	p := d.newPod(s.ID, st)
	if s.Phase == sandbox.PhaseStopped {
		p.Set(0, time.Now())
	}
	return p, nil
}

// Start returns the daemon's Task API endpoint; nothing to start.
func (p *pod) Start(ctx context.Context) (sandbox.Endpoint, error) {
	return sandbox.Endpoint{Address: p.d.env.TaskAddress, Version: 3}, nil
}

// Stop ends the pod; its containers (modules run by the daemon) are
// stopped already.
func (p *pod) Stop(ctx context.Context, _ time.Duration) error {
	p.Set(0, time.Now())
	return nil
}

// Cleanup has nothing to release: a pod holds nothing but its record and
// directory, which the controller removes. Idempotent.
func (p *pod) Cleanup(ctx context.Context) error { return nil }

func (p *pod) DriverState() (json.RawMessage, error) { return json.Marshal(&p.st) }

// Describe adds the pod's engine to a verbose status.
func (p *pod) Describe(ctx context.Context) map[string]string {
	return map[string]string{"engine": p.st.Engine}
}
