package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"
	"time"

	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/store"
)

// Status strings reported in ControllerStatusResponse.State.
const (
	StateReady    = "SANDBOX_READY"
	StateNotReady = "SANDBOX_NOTREADY"
)

// Controller implements sandboxapi.ControllerServer over a sandbox.Driver.
type Controller struct {
	sandboxapi.UnimplementedControllerServer

	driver sandbox.Driver
	store  *store.Store
	dir    string
	// life is the daemon's lifetime context: exit watchers run under it, not
	// under the request that started the sandbox.
	life context.Context

	mu        sync.Mutex
	sandboxes map[string]*entry
}

type entry struct {
	// mu serialises the calls on one sandbox.
	mu    sync.Mutex
	state sandbox.State
	inst  sandbox.Instance
	// done is closed once the exit is recorded in state.
	done     chan struct{}
	doneOnce sync.Once
	gone     bool // shut down: removed from the map
}

var _ sandboxapi.ControllerServer = (*Controller)(nil)

// New makes a controller keeping its state under dir (sandboxes in
// dir/sandboxes/<id>, records in dir/state). Call Recover before serving.
func New(life context.Context, dir string, d sandbox.Driver) (*Controller, error) {
	st, err := store.Open(filepath.Join(dir, "state"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "sandboxes"), 0o700); err != nil {
		return nil, err
	}
	return &Controller{driver: d, store: st, dir: dir, life: life, sandboxes: map[string]*entry{}}, nil
}

// Register adds the controller to a gRPC server.
func (c *Controller) Register(s *grpc.Server) { sandboxapi.RegisterControllerServer(s, c) }

// Recover loads every persisted sandbox and hands it back to the driver.
// A sandbox that cannot be recovered is kept as exited so that containerd can
// still Wait, Stop and Shutdown it.
func (c *Controller) Recover(ctx context.Context) error {
	ids, err := c.store.IDs()
	if err != nil {
		return err
	}
	for _, id := range ids {
		e := &entry{done: make(chan struct{})}
		if err := c.store.Get(id, &e.state); err != nil {
			log.G(ctx).WithError(err).WithField("sandbox_id", id).Error("dropping unreadable sandbox record")
			_ = c.store.Delete(id)
			continue
		}
		lg := log.G(ctx).WithField("sandbox_id", id)
		inst, err := c.driver.Recover(ctx, &e.state)
		if err != nil {
			lg.WithError(err).Warn("sandbox could not be recovered, marking it exited")
			c.recordExit(ctx, e, sandbox.ExitStatus{Code: 255, ExitedAt: time.Now()})
		} else {
			e.inst = inst
			switch e.state.Phase {
			case sandbox.PhaseRunning:
				go c.watch(e)
			case sandbox.PhaseStopped:
				e.doneOnce.Do(func() { close(e.done) })
			}
		}
		c.sandboxes[id] = e
		lg.WithField("phase", e.state.Phase).Info("recovered sandbox")
	}
	return nil
}

// get returns the entry of a known sandbox, locked.
func (c *Controller) get(id string) (*entry, error) {
	if err := sandbox.ValidateID("sandbox_id", id); err != nil {
		return nil, err
	}
	c.mu.Lock()
	e, ok := c.sandboxes[id]
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("sandbox %s: %w", id, errdefs.ErrNotFound)
	}
	e.mu.Lock()
	if e.gone {
		e.mu.Unlock()
		return nil, fmt.Errorf("sandbox %s: %w", id, errdefs.ErrNotFound)
	}
	return e, nil
}

func withSandbox(ctx context.Context, id, sandboxer string) context.Context {
	return log.WithLogger(ctx, log.G(ctx).WithFields(log.Fields{"sandbox_id": id, "sandboxer": sandboxer}))
}

// toGRPC converts an internal error to a gRPC status at the edge.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	return errgrpc.ToGRPC(err)
}

// Create prepares a sandbox.
func (c *Controller) Create(ctx context.Context, req *sandboxapi.ControllerCreateRequest) (*sandboxapi.ControllerCreateResponse, error) {
	ctx = withSandbox(ctx, req.GetSandboxID(), req.GetSandboxer())
	if err := c.create(ctx, req); err != nil {
		log.G(ctx).WithError(err).Warn("create failed")
		return nil, toGRPC(err)
	}
	return &sandboxapi.ControllerCreateResponse{SandboxID: req.GetSandboxID()}, nil
}

func (c *Controller) create(ctx context.Context, req *sandboxapi.ControllerCreateRequest) (retErr error) {
	id := req.GetSandboxID()
	if err := sandbox.ValidateID("sandbox_id", id); err != nil {
		return err
	}
	if p := req.GetNetnsPath(); p != "" && !filepath.IsAbs(p) {
		return fmt.Errorf("netns_path %q: must be absolute: %w", p, errdefs.ErrInvalidArgument)
	}
	cfg, ociSpec, err := decodeOptions(req.GetOptions())
	if err != nil {
		return err
	}
	e := &entry{done: make(chan struct{})}
	e.mu.Lock()
	defer e.mu.Unlock()
	c.mu.Lock()
	if _, ok := c.sandboxes[id]; ok {
		c.mu.Unlock()
		return fmt.Errorf("sandbox %s: %w", id, errdefs.ErrAlreadyExists)
	}
	c.sandboxes[id] = e // reserve the id while we work
	c.mu.Unlock()

	dir := filepath.Join(c.dir, "sandboxes", id)
	defer func() {
		if retErr != nil {
			_ = os.RemoveAll(dir)
			c.mu.Lock()
			delete(c.sandboxes, id)
			c.mu.Unlock()
			e.gone = true
		}
	}()
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("sandbox dir: %w", err)
	}
	spec := &sandbox.Spec{
		ID:          id,
		Sandboxer:   req.GetSandboxer(),
		NetNSPath:   req.GetNetnsPath(),
		Rootfs:      req.GetRootfs(),
		Annotations: req.GetAnnotations(),
		Labels:      req.GetSandbox().GetLabels(),
		Config:      cfg,
		OCISpec:     ociSpec,
		Dir:         dir,
	}
	inst, err := c.driver.Create(ctx, spec)
	if err != nil {
		return err
	}
	cfgBytes, _ := proto.Marshal(cfg)
	e.inst = inst
	e.state = sandbox.State{
		ID:          id,
		Sandboxer:   req.GetSandboxer(),
		Phase:       sandbox.PhaseCreated,
		NetNSPath:   req.GetNetnsPath(),
		Labels:      spec.Labels,
		Annotations: spec.Annotations,
		Config:      cfgBytes,
		Dir:         dir,
		CreatedAt:   time.Now().UTC(),
	}
	if err := c.persist(e); err != nil {
		_ = inst.Cleanup(context.WithoutCancel(ctx))
		return err
	}
	log.G(ctx).Debug("sandbox created")
	return nil
}

// decodeOptions reads the CRI PodSandboxConfig (or an OCI spec) from the
// Create options. No options is an empty configuration.
func decodeOptions(a *anypb.Any) (*runtime.PodSandboxConfig, *specs.Spec, error) {
	cfg := &runtime.PodSandboxConfig{}
	if a == nil || (a.GetTypeUrl() == "" && len(a.GetValue()) == 0) {
		return cfg, nil, nil
	}
	url := a.GetTypeUrl()
	switch {
	case strings.HasSuffix(url, "runtime.v1.PodSandboxConfig"):
		if err := proto.Unmarshal(a.GetValue(), cfg); err != nil {
			return nil, nil, fmt.Errorf("options: not a valid runtime.v1.PodSandboxConfig: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		return cfg, nil, nil
	case strings.HasSuffix(url, "opencontainers/runtime-spec/1/Spec"):
		var s specs.Spec
		if err := json.Unmarshal(a.GetValue(), &s); err != nil {
			return nil, nil, fmt.Errorf("options: not a valid OCI runtime spec: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		return cfg, &s, nil
	default:
		return nil, nil, fmt.Errorf("options: unsupported type %q (want runtime.v1.PodSandboxConfig): %w", url, errdefs.ErrInvalidArgument)
	}
}

// persist writes the sandbox record, including the driver's state.
func (c *Controller) persist(e *entry) error {
	if e.inst != nil {
		ds, err := e.inst.DriverState()
		if err != nil {
			return fmt.Errorf("driver state: %w", err)
		}
		e.state.Driver = ds
	}
	return c.store.Put(e.state.ID, &e.state)
}

// Start starts a created sandbox and returns its Task API endpoint.
func (c *Controller) Start(ctx context.Context, req *sandboxapi.ControllerStartRequest) (*sandboxapi.ControllerStartResponse, error) {
	ctx = withSandbox(ctx, req.GetSandboxID(), req.GetSandboxer())
	e, err := c.get(req.GetSandboxID())
	if err != nil {
		return nil, toGRPC(err)
	}
	defer e.mu.Unlock()
	switch e.state.Phase {
	case sandbox.PhaseRunning:
		// containerd may retry Start: answer with what we have.
	case sandbox.PhaseStopped:
		return nil, toGRPC(fmt.Errorf("sandbox %s has exited: %w", e.state.ID, errdefs.ErrFailedPrecondition))
	default:
		ep, err := e.inst.Start(ctx)
		if err != nil {
			log.G(ctx).WithError(err).Warn("start failed")
			return nil, toGRPC(err)
		}
		e.state.Endpoint = ep
		e.state.Phase = sandbox.PhaseRunning
		e.state.StartedAt = time.Now().UTC()
		if err := c.persist(e); err != nil {
			_ = e.inst.Stop(context.WithoutCancel(ctx), 0)
			e.state.Phase = sandbox.PhaseCreated
			return nil, toGRPC(err)
		}
		go c.watch(e)
		log.G(ctx).WithField("address", ep.Address).Info("sandbox started")
	}
	return &sandboxapi.ControllerStartResponse{
		SandboxID: e.state.ID,
		Pid:       e.state.Endpoint.Pid,
		CreatedAt: timestamppb.New(e.state.CreatedAt),
		Labels:    e.state.Labels,
		Address:   e.state.Endpoint.Address,
		Version:   e.state.Endpoint.Version,
	}, nil
}

// watch records the exit of a running sandbox.
func (c *Controller) watch(e *entry) {
	select {
	case <-e.inst.Exited():
	case <-c.life.Done():
		return
	}
	st := e.inst.ExitStatus()
	e.mu.Lock()
	defer e.mu.Unlock()
	c.recordExit(c.life, e, st)
}

// recordExit marks the sandbox stopped, persists it and wakes the waiters.
// Called with e.mu held.
func (c *Controller) recordExit(ctx context.Context, e *entry, st sandbox.ExitStatus) {
	if e.state.Exit == nil {
		if st.ExitedAt.IsZero() {
			st.ExitedAt = time.Now()
		}
		st.ExitedAt = st.ExitedAt.UTC()
		e.state.Exit = &st
		e.state.Phase = sandbox.PhaseStopped
		if !e.gone {
			if err := c.persist(e); err != nil {
				log.G(ctx).WithError(err).WithField("sandbox_id", e.state.ID).Error("persisting sandbox exit")
			}
		}
		log.G(ctx).WithFields(log.Fields{"sandbox_id": e.state.ID, "exit_status": st.Code}).Info("sandbox exited")
	}
	e.doneOnce.Do(func() { close(e.done) })
}

// Platform reports the platform of this host.
func (c *Controller) Platform(ctx context.Context, req *sandboxapi.ControllerPlatformRequest) (*sandboxapi.ControllerPlatformResponse, error) {
	e, err := c.get(req.GetSandboxID())
	if err != nil {
		return nil, toGRPC(err)
	}
	e.mu.Unlock()
	return &sandboxapi.ControllerPlatformResponse{Platform: HostPlatform()}, nil
}

// HostPlatform is the OS and architecture of the running daemon.
func HostPlatform() *types.Platform {
	p := &types.Platform{OS: goruntime.GOOS, Architecture: goruntime.GOARCH}
	if goruntime.GOARCH == "arm64" {
		p.Variant = "v8"
	}
	return p
}

// Stop stops a sandbox. An unknown sandbox is already stopped.
func (c *Controller) Stop(ctx context.Context, req *sandboxapi.ControllerStopRequest) (*sandboxapi.ControllerStopResponse, error) {
	ctx = withSandbox(ctx, req.GetSandboxID(), req.GetSandboxer())
	e, err := c.get(req.GetSandboxID())
	if errdefs.IsNotFound(err) {
		return &sandboxapi.ControllerStopResponse{}, nil
	} else if err != nil {
		return nil, toGRPC(err)
	}
	defer e.mu.Unlock()
	if err := c.stop(ctx, e, time.Duration(req.GetTimeoutSecs())*time.Second); err != nil {
		log.G(ctx).WithError(err).Warn("stop failed")
		return nil, toGRPC(err)
	}
	return &sandboxapi.ControllerStopResponse{}, nil
}

// stop is called with e.mu held.
func (c *Controller) stop(ctx context.Context, e *entry, timeout time.Duration) error {
	if e.state.Phase == sandbox.PhaseStopped && e.state.Exit != nil {
		return nil
	}
	if e.inst != nil {
		if err := e.inst.Stop(ctx, timeout); err != nil {
			return err
		}
	}
	st := sandbox.ExitStatus{ExitedAt: time.Now()}
	if e.inst != nil {
		select {
		case <-e.inst.Exited():
			st = e.inst.ExitStatus()
		default:
		}
	}
	c.recordExit(ctx, e, st)
	return nil
}

// Wait blocks until the sandbox exits or the request ends.
func (c *Controller) Wait(ctx context.Context, req *sandboxapi.ControllerWaitRequest) (*sandboxapi.ControllerWaitResponse, error) {
	e, err := c.get(req.GetSandboxID())
	if err != nil {
		return nil, toGRPC(err)
	}
	done := e.done
	e.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, toGRPC(ctx.Err())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	resp := &sandboxapi.ControllerWaitResponse{}
	if x := e.state.Exit; x != nil {
		resp.ExitStatus = x.Code
		resp.ExitedAt = timestamppb.New(x.ExitedAt)
	}
	return resp, nil
}

// Status reports the state of a sandbox.
func (c *Controller) Status(ctx context.Context, req *sandboxapi.ControllerStatusRequest) (*sandboxapi.ControllerStatusResponse, error) {
	e, err := c.get(req.GetSandboxID())
	if err != nil {
		return nil, toGRPC(err)
	}
	defer e.mu.Unlock()
	st := &e.state
	resp := &sandboxapi.ControllerStatusResponse{
		SandboxID: st.ID,
		Pid:       st.Endpoint.Pid,
		State:     StateNotReady,
		CreatedAt: timestamppb.New(st.CreatedAt),
		Address:   st.Endpoint.Address,
		Version:   st.Endpoint.Version,
	}
	if st.Phase == sandbox.PhaseRunning {
		resp.State = StateReady
	}
	if st.Exit != nil {
		resp.ExitedAt = timestamppb.New(st.Exit.ExitedAt)
	}
	if req.GetVerbose() {
		info := map[string]string{
			"phase":     string(st.Phase),
			"dir":       st.Dir,
			"sandboxer": st.Sandboxer,
		}
		if !st.StartedAt.IsZero() {
			info["started_at"] = st.StartedAt.Format(time.RFC3339Nano)
		}
		if d, ok := e.inst.(sandbox.Describer); ok && e.inst != nil {
			for k, v := range d.Describe(ctx) {
				info[k] = v
			}
		}
		resp.Info = info
	}
	return resp, nil
}

// Shutdown releases everything a sandbox holds. An unknown sandbox is gone already.
func (c *Controller) Shutdown(ctx context.Context, req *sandboxapi.ControllerShutdownRequest) (*sandboxapi.ControllerShutdownResponse, error) {
	ctx = withSandbox(ctx, req.GetSandboxID(), req.GetSandboxer())
	e, err := c.get(req.GetSandboxID())
	if errdefs.IsNotFound(err) {
		return &sandboxapi.ControllerShutdownResponse{}, nil
	} else if err != nil {
		return nil, toGRPC(err)
	}
	defer e.mu.Unlock()
	if err := c.stop(ctx, e, 0); err != nil {
		return nil, toGRPC(err)
	}
	if e.inst != nil {
		if err := e.inst.Cleanup(ctx); err != nil {
			log.G(ctx).WithError(err).Warn("cleanup failed")
			return nil, toGRPC(err)
		}
	}
	if err := c.store.Delete(e.state.ID); err != nil {
		return nil, toGRPC(err)
	}
	if err := os.RemoveAll(e.state.Dir); err != nil {
		log.G(ctx).WithError(err).Warn("removing sandbox dir")
	}
	e.gone = true
	c.mu.Lock()
	delete(c.sandboxes, e.state.ID)
	c.mu.Unlock()
	log.G(ctx).Info("sandbox shut down")
	return &sandboxapi.ControllerShutdownResponse{}, nil
}

// Metrics reports the sandbox's resource usage.
func (c *Controller) Metrics(ctx context.Context, req *sandboxapi.ControllerMetricsRequest) (*sandboxapi.ControllerMetricsResponse, error) {
	e, err := c.get(req.GetSandboxID())
	if err != nil {
		return nil, toGRPC(err)
	}
	inst := e.inst
	e.mu.Unlock()
	mr, ok := inst.(sandbox.MetricsReporter)
	if !ok || inst == nil {
		return nil, toGRPC(fmt.Errorf("metrics: %w", errdefs.ErrNotImplemented))
	}
	m, err := mr.Metrics(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	if m.ID == "" {
		m.ID = req.GetSandboxID()
	}
	if m.Timestamp == nil {
		m.Timestamp = timestamppb.Now()
	}
	return &sandboxapi.ControllerMetricsResponse{Metrics: m}, nil
}

// Update applies a sandbox update. Labels and annotations are always kept;
// other fields go to the driver, which says what it cannot apply.
func (c *Controller) Update(ctx context.Context, req *sandboxapi.ControllerUpdateRequest) (*sandboxapi.ControllerUpdateResponse, error) {
	ctx = withSandbox(ctx, req.GetSandboxID(), req.GetSandboxer())
	e, err := c.get(req.GetSandboxID())
	if err != nil {
		return nil, toGRPC(err)
	}
	defer e.mu.Unlock()
	if req.GetSandbox() == nil {
		return nil, toGRPC(fmt.Errorf("sandbox: must be set: %w", errdefs.ErrInvalidArgument))
	}
	u, err := decodeUpdate(req)
	if err != nil {
		return nil, toGRPC(err)
	}
	var unsupported []string
	rest := u.Fields[:0:0]
	for _, f := range u.Fields {
		switch {
		case f == "labels" || strings.HasPrefix(f, "labels."):
			e.state.Labels = u.Labels
		case f == "extensions" || strings.HasPrefix(f, "extensions.") || f == "spec" || f == "resources":
			rest = append(rest, f)
		default:
			unsupported = append(unsupported, f)
		}
	}
	var driverErr error
	if len(rest) > 0 {
		if up, ok := e.inst.(sandbox.Updater); ok && e.inst != nil {
			u.Fields = rest
			driverErr = up.Update(ctx, u)
		} else {
			unsupported = append(unsupported, rest...)
		}
	}
	if err := c.persist(e); err != nil {
		return nil, toGRPC(err)
	}
	if driverErr != nil {
		return nil, toGRPC(driverErr)
	}
	if len(unsupported) > 0 {
		sort.Strings(unsupported)
		return nil, toGRPC(fmt.Errorf("update: fields %s cannot be updated (others were applied): %w", strings.Join(unsupported, ", "), errdefs.ErrNotImplemented))
	}
	return &sandboxapi.ControllerUpdateResponse{}, nil
}

func decodeUpdate(req *sandboxapi.ControllerUpdateRequest) (*sandbox.Update, error) {
	sb := req.GetSandbox()
	u := &sandbox.Update{Fields: req.GetFields(), Labels: sb.GetLabels()}
	if len(u.Fields) == 0 {
		u.Fields = []string{"labels", "extensions"}
	}
	for k, a := range sb.GetExtensions() {
		if !strings.HasSuffix(a.GetTypeUrl(), "runtime.v1.LinuxContainerResources") {
			continue
		}
		r := &runtime.LinuxContainerResources{}
		if err := proto.Unmarshal(a.GetValue(), r); err != nil {
			return nil, fmt.Errorf("sandbox.extensions[%s]: %v: %w", k, err, errdefs.ErrInvalidArgument)
		}
		u.Resources = r
	}
	return u, nil
}

// Close stops watching; sandboxes keep running (they outlive the daemon).
func (c *Controller) Close() error { return nil }

var errClosed = errors.New("controller closed")
