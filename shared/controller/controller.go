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
	"strconv"
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

	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/killpoint"
	"github.com/magnetar-runtime/magnetar/shared/mount"
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
	// containers is the task side: the pods' containers (nil: none).
	containers sandbox.Containers
	// stopTimeout is the grace period of a Stop that gives none.
	stopTimeout time.Duration
	// unstartedGrace: see WithUnstartedGrace.
	unstartedGrace time.Duration
	// registry and forgottenEvery: see WithForgotten.
	registry       Registry
	forgottenEvery time.Duration

	mu        sync.Mutex
	sandboxes map[string]*entry
}

type entry struct {
	// mu serialises the calls on one sandbox, but for the body of
	// Instance.Start, which runs unlocked (see start).
	mu    sync.Mutex
	state sandbox.State
	inst  sandbox.Instance
	// starting is set while Instance.Start runs, and closed when it has
	// returned; cancelStart cancels it.
	starting    chan struct{}
	cancelStart context.CancelCauseFunc
	// done is closed once the exit is recorded in state.
	done     chan struct{}
	doneOnce sync.Once
	gone     bool // shut down: removed from the map
}

var (
	_ sandboxapi.ControllerServer = (*Controller)(nil)
	_ sandbox.Pods                = (*Controller)(nil)
)

// errStopped is the cause given to the context of a Start that a Stop or
// Shutdown cancels.
var errStopped = fmt.Errorf("the sandbox was stopped while it started: %w", errdefs.ErrAborted)

// Option configures a Controller.
type Option func(*Controller)

// WithContainers gives the controller the task side: Stop stops a pod's
// containers before the instance, Shutdown deletes them before Cleanup,
// Metrics sums their metrics when the instance does not report its own, and
// a verbose Status lists them.
func WithContainers(cs sandbox.Containers) Option {
	return func(c *Controller) { c.containers = cs }
}

// WithStopTimeout sets the grace period (SIGTERM, then SIGKILL) given to the
// containers still running when Stop asks for none. containerd's CRI stops
// every container with its own grace period before it stops the pod, so this
// only matters to other clients (`ctr sandbox stop`). Shutdown never waits.
func WithStopTimeout(d time.Duration) Option {
	return func(c *Controller) { c.stopTimeout = d }
}

// WithUnstartedGrace makes Recover shut down, d after it, the recovered
// sandboxes that have still never started (see reapUnstarted); 0 never
// does.
func WithUnstartedGrace(d time.Duration) Option {
	return func(c *Controller) { c.unstartedGrace = d }
}

// New makes a controller keeping its state under dir (sandboxes in
// dir/sandboxes/<id>, records in dir/state). Call Recover before serving.
func New(life context.Context, dir string, d sandbox.Driver, opts ...Option) (*Controller, error) {
	st, err := store.Open(filepath.Join(dir, "state"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "sandboxes"), 0o700); err != nil {
		return nil, err
	}
	c := &Controller{driver: d, store: st, dir: dir, life: life, sandboxes: map[string]*entry{}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// SetContainers is WithContainers for a task side made after the controller
// (it resolves its pods through the controller). Call it before Recover.
func (c *Controller) SetContainers(cs sandbox.Containers) { c.containers = cs }

// Register adds the controller to a gRPC server.
func (c *Controller) Register(s *grpc.Server) { sandboxapi.RegisterControllerServer(s, c) }

// Recover loads every persisted sandbox and hands it back to the driver.
// A sandbox that cannot be recovered is kept as exited so that containerd can
// still Wait, Stop and Shutdown it. A sandbox whose Start the daemon died in
// is stopped and reported exited. Directories of sandboxes that have no
// record (a Create the daemon died in, a Shutdown cut after its record went)
// are removed, with every mount below them. Sandboxes that never started are
// shut down after the unstarted grace if they still have not (see
// WithUnstartedGrace). From then on, sandboxes containerd has forgotten are
// shut down (see WithForgotten).
func (c *Controller) Recover(ctx context.Context) error {
	ids, err := c.store.IDs()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	var unstarted []string
	for _, id := range ids {
		e := &entry{done: make(chan struct{})}
		lg := log.G(ctx).WithField("sandbox_id", id)
		if err := c.store.Get(id, &e.state); err != nil || e.state.ID != id {
			lg.WithError(err).Error("dropping unreadable sandbox record")
			_ = c.store.Delete(id)
			continue
		}
		known[id] = true
		c.sandboxes[id] = e
		inst, err := c.driver.Recover(ctx, &e.state)
		if err != nil {
			lg.WithError(err).Warn("sandbox could not be recovered, marking it exited")
			c.recordExit(ctx, e, sandbox.ExitStatus{Code: sandbox.ExitCodeLost, ExitedAt: time.Now()})
			continue
		}
		e.inst = inst
		switch e.state.Phase {
		case sandbox.PhaseStarting:
			lg.Warn("the daemon died while this sandbox started: stopping it")
			if err := inst.Stop(ctx, 0); err != nil {
				lg.WithError(err).Warn("stopping a sandbox whose start was cut")
			}
			c.recordExit(ctx, e, sandbox.ExitStatus{Code: sandbox.ExitCodeLost, ExitedAt: time.Now()})
		case sandbox.PhaseRunning:
			c.watch(e)
		case sandbox.PhaseStopped:
			e.doneOnce.Do(func() { close(e.done) })
		}
		if e.state.StartedAt.IsZero() {
			unstarted = append(unstarted, id)
		}
		lg.WithField("phase", e.state.Phase).Info("recovered sandbox")
	}
	if len(unstarted) > 0 && c.unstartedGrace > 0 {
		go c.reapUnstarted(unstarted)
	}
	if c.registry != nil && c.forgottenEvery > 0 {
		go c.reapForgotten()
	}
	dirs, err := os.ReadDir(filepath.Join(c.dir, "sandboxes"))
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if known[d.Name()] {
			continue
		}
		p := filepath.Join(c.dir, "sandboxes", d.Name())
		log.G(ctx).WithFields(log.Fields{"sandbox_id": d.Name(), "dir": p}).Warn("removing the directory of a sandbox without a record (a Create cut by a daemon restart)")
		if err := mount.RemoveAll(p); err != nil {
			log.G(ctx).WithError(err).Warn("removing a stale sandbox directory")
		}
	}
	return nil
}

// Pod returns a known sandbox's instance, and whether it is running.
func (c *Controller) Pod(id string) (sandbox.Instance, bool, error) {
	e, err := c.get(id)
	if err != nil {
		return nil, false, err
	}
	defer e.mu.Unlock()
	if e.inst == nil {
		return nil, false, fmt.Errorf("sandbox %s could not be recovered: %w", id, errdefs.ErrFailedPrecondition)
	}
	running := e.state.Phase == sandbox.PhaseRunning
	select {
	case <-e.inst.Exited():
		running = false
	default:
	}
	return e.inst, running, nil
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
			if err := mount.RemoveAll(dir); err != nil {
				log.G(ctx).WithError(err).Warn("removing the directory of a failed create")
			}
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
	killpoint.Hit(killpoint.ControllerCreateDriver)
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
	killpoint.Hit(killpoint.ControllerCreatePersisted)
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
	if err := c.start(ctx, e); err != nil {
		log.G(ctx).WithError(err).Warn("start failed")
		return nil, toGRPC(err)
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

// start is called with e.mu held, and returns with it held. Instance.Start
// runs without the lock (a VM boots for seconds): Status, Wait, Platform and
// Metrics answer meanwhile, a second Start waits for the first, and a Stop
// or Shutdown cancels it (waitStart). The phase is persisted as starting
// first, so that a daemon that dies inside Start stops the sandbox at its
// next start (Recover).
func (c *Controller) start(ctx context.Context, e *entry) error {
	if err := c.waitStart(ctx, e, false); err != nil {
		return err
	}
	switch e.state.Phase {
	case sandbox.PhaseRunning:
		return nil // containerd may retry Start: answer with what we have
	case sandbox.PhaseStopped:
		return fmt.Errorf("sandbox %s has exited: %w", e.state.ID, errdefs.ErrFailedPrecondition)
	}
	e.state.Phase = sandbox.PhaseStarting
	if err := c.persist(e); err != nil {
		e.state.Phase = sandbox.PhaseCreated
		return err
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	e.starting, e.cancelStart = done, cancel
	inst := e.inst
	e.mu.Unlock()
	killpoint.Hit(killpoint.ControllerStartStarting)
	ep, err := inst.Start(sctx)
	if err == nil {
		killpoint.Hit(killpoint.ControllerStartStarted)
	}
	e.mu.Lock()
	e.starting, e.cancelStart = nil, nil
	close(done)
	if err == nil && context.Cause(sctx) == errStopped {
		// Start finished as the Stop came: undo it; the Stop goes on
		if serr := inst.Stop(context.WithoutCancel(ctx), 0); serr != nil {
			log.G(ctx).WithError(serr).Warn("stopping a sandbox whose start was cancelled")
		}
		err = errStopped
	}
	if err != nil {
		if errors.Is(context.Cause(sctx), errStopped) {
			err = fmt.Errorf("start: %w", errStopped)
		}
		e.state.Phase = sandbox.PhaseCreated
		if perr := c.persist(e); perr != nil {
			log.G(ctx).WithError(perr).Warn("persisting a failed start")
		}
		return err
	}
	e.state.Endpoint = ep
	e.state.Phase = sandbox.PhaseRunning
	e.state.StartedAt = time.Now().UTC()
	if err := c.persist(e); err != nil {
		_ = inst.Stop(context.WithoutCancel(ctx), 0)
		e.state.Phase = sandbox.PhaseCreated
		return err
	}
	c.watch(e)
	log.G(ctx).WithField("address", ep.Address).Info("sandbox started")
	return nil
}

// waitStart waits, with e.mu held, until no Instance.Start runs on e;
// cancel cancels the one that runs. It returns with e.mu held, or an error
// when ctx ends or the sandbox went meanwhile.
func (c *Controller) waitStart(ctx context.Context, e *entry, cancel bool) error {
	for e.starting != nil {
		if cancel {
			e.cancelStart(errStopped)
		}
		ch := e.starting
		e.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			e.mu.Lock()
			return ctx.Err()
		}
		e.mu.Lock()
		if e.gone {
			return fmt.Errorf("sandbox %s: %w", e.state.ID, errdefs.ErrNotFound)
		}
	}
	return nil
}

// watch records the exit of a running sandbox.
// watch records e's exit once its instance exits, unless the daemon's
// life has ended by then. An instance that embeds an exit.Latch calls
// back: watching it costs no goroutine until then.
func (c *Controller) watch(e *entry) {
	if n, ok := e.inst.(exit.Notifier); ok {
		n.Notify(func() { go c.exited(e) })
		return
	}
	go func() {
		select {
		case <-e.inst.Exited():
			c.exited(e)
		case <-c.life.Done():
		}
	}()
}

func (c *Controller) exited(e *entry) {
	if c.life.Err() != nil {
		return
	}
	code, at := e.inst.ExitStatus()
	e.mu.Lock()
	defer e.mu.Unlock()
	c.recordExit(c.life, e, sandbox.ExitStatus{Code: code, ExitedAt: at})
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
	ctx = withSandbox(ctx, req.GetSandboxID(), req.GetSandboxer())
	e, err := c.get(req.GetSandboxID())
	if err != nil {
		log.G(ctx).WithError(err).Debug("platform failed")
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
	timeout := time.Duration(req.GetTimeoutSecs()) * time.Second
	if timeout == 0 {
		timeout = c.stopTimeout
	}
	if err := c.stop(ctx, e, timeout); err != nil {
		log.G(ctx).WithError(err).Warn("stop failed")
		return nil, toGRPC(err)
	}
	return &sandboxapi.ControllerStopResponse{}, nil
}

// stop is called with e.mu held: it cancels a Start in progress, stops the
// pod's containers, then the instance, and records the exit.
func (c *Controller) stop(ctx context.Context, e *entry, timeout time.Duration) error {
	if err := c.waitStart(ctx, e, true); err != nil {
		return err
	}
	if c.containers != nil {
		if err := c.containers.StopAll(ctx, e.state.ID, timeout); err != nil {
			return stillThere(e.state.ID, err)
		}
	}
	if e.state.Phase == sandbox.PhaseStopped && e.state.Exit != nil {
		return nil
	}
	if e.inst != nil {
		if err := e.inst.Stop(ctx, timeout); err != nil {
			return stillThere(e.state.ID, err)
		}
	}
	st := sandbox.ExitStatus{ExitedAt: time.Now()}
	if e.inst != nil {
		select {
		case <-e.inst.Exited():
			st.Code, st.ExitedAt = e.inst.ExitStatus()
		default:
		}
	}
	c.recordExit(ctx, e, st)
	return nil
}

// Wait blocks until the sandbox exits or the request ends.
func (c *Controller) Wait(ctx context.Context, req *sandboxapi.ControllerWaitRequest) (*sandboxapi.ControllerWaitResponse, error) {
	ctx = withSandbox(ctx, req.GetSandboxID(), req.GetSandboxer())
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
	ctx = withSandbox(ctx, req.GetSandboxID(), req.GetSandboxer())
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
		if c.containers != nil {
			ids := c.containers.List(st.ID)
			info["containers"] = strconv.Itoa(len(ids))
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

// stillThere is the error of a step of Stop or Shutdown on a sandbox that
// exists: one that wraps NotFound (a process, cgroup or container the step
// did not find) must not read as "no such sandbox", which containerd takes
// from Stop and Shutdown for a sandbox that is gone and forgets it, leaving
// what it holds behind. Only the sandbox's own absence answers NotFound.
func stillThere(id string, err error) error {
	if err == nil || !errdefs.IsNotFound(err) {
		return err
	}
	return fmt.Errorf("sandbox %s: %v: %w", id, err, errdefs.ErrInternal)
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
	if err := c.shutdown(ctx, e); err != nil {
		return nil, toGRPC(err)
	}
	return &sandboxapi.ControllerShutdownResponse{}, nil
}

// shutdown is Shutdown with e.mu held.
func (c *Controller) shutdown(ctx context.Context, e *entry) error {
	if err := c.stop(ctx, e, 0); err != nil {
		return err
	}
	if c.containers != nil {
		if err := c.containers.DeleteAll(ctx, e.state.ID); err != nil {
			log.G(ctx).WithError(err).Warn("deleting the pod's containers failed")
			return stillThere(e.state.ID, err)
		}
	}
	if e.inst != nil {
		if err := e.inst.Cleanup(ctx); err != nil {
			log.G(ctx).WithError(err).Warn("cleanup failed")
			return stillThere(e.state.ID, err)
		}
	}
	if err := c.store.Delete(e.state.ID); err != nil {
		return stillThere(e.state.ID, err)
	}
	if err := mount.RemoveAll(e.state.Dir); err != nil {
		log.G(ctx).WithError(err).Warn("removing sandbox dir")
	}
	e.gone = true
	c.mu.Lock()
	delete(c.sandboxes, e.state.ID)
	c.mu.Unlock()
	log.G(ctx).Info("sandbox shut down")
	return nil
}

// reapUnstarted shuts down, grace after a recovery, the sandboxes of ids
// that have still never started and hold no container. They are what a
// daemon restart inside containerd's RunPodSandbox leaves: containerd's
// Create or Start failed, and so did the Shutdown of its cleanup (no daemon
// answered), after which containerd forgets the pod and nobody else ever
// shuts it down. The grace lets a restart that only came between a Create
// and its Start go on: containerd starts what it created at once.
func (c *Controller) reapUnstarted(ids []string) {
	t := time.NewTimer(c.unstartedGrace)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.life.Done():
		return
	}
	for _, id := range ids {
		e, err := c.get(id)
		if err != nil {
			continue // shut down meanwhile
		}
		ctx := log.WithLogger(c.life, log.G(c.life).WithField("sandbox_id", id))
		if !e.state.StartedAt.IsZero() || e.starting != nil || c.containers != nil && len(c.containers.List(id)) > 0 {
			e.mu.Unlock()
			continue
		}
		log.G(ctx).WithField("unstarted_grace", c.unstartedGrace.String()).Warn("shutting down a sandbox that never started since the daemon restarted: containerd dropped it when the restart cut its RunPodSandbox")
		if err := c.shutdown(ctx, e); err != nil {
			log.G(ctx).WithError(err).Warn("shutting down a sandbox that never started")
		}
		e.mu.Unlock()
	}
}

// Metrics reports the sandbox's resource usage.
func (c *Controller) Metrics(ctx context.Context, req *sandboxapi.ControllerMetricsRequest) (*sandboxapi.ControllerMetricsResponse, error) {
	ctx = withSandbox(ctx, req.GetSandboxID(), req.GetSandboxer())
	e, err := c.get(req.GetSandboxID())
	if err != nil {
		return nil, toGRPC(err)
	}
	inst := e.inst
	e.mu.Unlock()
	var m *types.Metric
	switch mr, ok := inst.(sandbox.MetricsReporter); {
	case ok && inst != nil:
		m, err = mr.Metrics(ctx)
	case c.containers != nil:
		var a *anypb.Any
		if a, err = c.containers.PodStats(ctx, req.GetSandboxID()); err == nil {
			m = &types.Metric{Data: a}
		}
	default:
		err = fmt.Errorf("metrics: %w", errdefs.ErrNotImplemented)
	}
	if err != nil {
		log.G(ctx).WithError(err).Debug("metrics failed")
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
