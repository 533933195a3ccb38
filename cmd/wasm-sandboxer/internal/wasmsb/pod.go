package wasmsb

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/log"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
)

// driver creates pods. A wasm pod costs no process and no namespace: it is
// a record, its state directory and the engine its containers run on.
type driver struct {
	env     *daemon.Env
	cfg     *Config
	be      *backend
	engines *engines
	mu      sync.Mutex
	pods    map[string]*pod
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
	id string
	d  *driver
	st podState

	exited   chan struct{}
	exitOnce sync.Once
	exit     sandbox.ExitStatus
}

var (
	_ sandbox.Instance        = (*pod)(nil)
	_ sandbox.MetricsReporter = (*pod)(nil)
	_ sandbox.Describer       = (*pod)(nil)
)

func (d *driver) lookup(id string) (*pod, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.pods[id]
	return p, ok
}

// Create records the pod and the engine of its sandboxer name.
func (d *driver) Create(ctx context.Context, s *sandbox.Spec) (sandbox.Instance, error) {
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
	p := &pod{id: id, d: d, st: st, exited: make(chan struct{})}
	d.mu.Lock()
	d.pods[id] = p
	d.mu.Unlock()
	return p
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
		p.markExited(0)
	}
	return p, nil
}

// Start returns the daemon's Task API endpoint; nothing to start.
func (p *pod) Start(ctx context.Context) (sandbox.Endpoint, error) {
	return sandbox.Endpoint{Address: p.d.env.TaskAddress, Version: 3}, nil
}

func (p *pod) markExited(code uint32) {
	p.exitOnce.Do(func() {
		p.exit = sandbox.ExitStatus{Code: code, ExitedAt: time.Now()}
		close(p.exited)
	})
}

// Stop ends every container of the pod. A module has no signal handlers,
// so there is nothing to wait for: every container is killed at once.
func (p *pod) Stop(ctx context.Context, _ time.Duration) error {
	p.d.be.stopPod(ctx, p.id)
	p.markExited(0)
	return nil
}

func (p *pod) Exited() <-chan struct{}        { return p.exited }
func (p *pod) ExitStatus() sandbox.ExitStatus { return p.exit }

// Cleanup releases what the pod's containers still hold. Idempotent.
func (p *pod) Cleanup(ctx context.Context) error {
	p.d.be.stopPod(ctx, p.id)
	p.d.be.deletePod(ctx, p.id)
	p.d.mu.Lock()
	delete(p.d.pods, p.id)
	p.d.mu.Unlock()
	return nil
}

func (p *pod) DriverState() (json.RawMessage, error) { return json.Marshal(&p.st) }

// Metrics sums the memory and CPU time of the pod's containers (cheap: no
// file is read, the engine keeps the counters).
func (p *pod) Metrics(ctx context.Context) (*types.Metric, error) {
	var sum usage
	for _, c := range p.d.be.podContainers(p.id) {
		sum.add(c.usage())
	}
	a, err := sum.metrics()
	if err != nil {
		return nil, err
	}
	return &types.Metric{Timestamp: timestamppb.Now(), ID: p.id, Data: a}, nil
}

// Describe adds the pod's engine to a verbose status.
func (p *pod) Describe(ctx context.Context) map[string]string {
	return map[string]string{
		"engine":     p.st.Engine,
		"containers": strconv.Itoa(len(p.d.be.podContainers(p.id))),
	}
}
