package task

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/magnetar-runtime/magnetar/shared/events"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/store"
)

// namespaceKey is the ttrpc metadata key containerd puts its namespace in.
const namespaceKey = "containerd-namespace-ttrpc"

// Service implements taskapi.TTRPCTaskService.
type Service struct {
	backend Backend
	pub     events.Publisher
	store   *store.Store
	life    context.Context

	mu         sync.Mutex
	containers map[string]*container
}

var _ taskapi.TTRPCTaskService = (*Service)(nil)

type status int

const (
	created status = iota
	running
	paused
	stopped
)

func (s status) api() tasktypes.Status {
	switch s {
	case created:
		return tasktypes.Status_CREATED
	case running:
		return tasktypes.Status_RUNNING
	case paused:
		return tasktypes.Status_PAUSED
	default:
		return tasktypes.Status_STOPPED
	}
}

func (s status) String() string { return [...]string{"created", "running", "paused", "stopped"}[s] }

type process struct {
	id     string // exec id, "" for init
	p      Process
	stdio  stdio.Config
	mu     sync.Mutex
	status status
	// evMu orders this process's events: Start holds it across the backend
	// start and TaskStart, the exit watcher takes it before TaskExit.
	evMu sync.Mutex
	// exitPub is closed once TaskExit is queued (or will never be).
	exitPub chan struct{}
	// gone is closed when the process is deleted.
	gone     chan struct{}
	goneOnce sync.Once
	// started is when Start answered (zero before).
	started time.Time
	// exitAt overrides the backend's exit time when it was adjusted.
	exitAt time.Time
}

// exitStatus is the backend's exit status with the adjusted time.
func (p *process) exitStatus() (uint32, time.Time) {
	code, at := p.p.ExitStatus()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.exitAt.IsZero() {
		at = p.exitAt
	}
	return code, at
}

// startSlack separates a start from an exit seen while containerd was still
// receiving the Start answer (a container's init only): containerd's CRI stamps startedAt when it
// gets the answer, and an exit stamped before that reads as finishing before
// starting.
const startSlack = 50 * time.Millisecond

func newProcess(id string, p Process, io stdio.Config, st status) *process {
	return &process{id: id, p: p, stdio: io, status: st, exitPub: make(chan struct{}), gone: make(chan struct{})}
}

func (p *process) markGone() { p.goneOnce.Do(func() { close(p.gone) }) }

func (p *process) getStatus() status {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.p.Exited():
		return stopped
	default:
	}
	return p.status
}

func (p *process) setStatus(st status) {
	p.mu.Lock()
	p.status = st
	p.mu.Unlock()
}

type container struct {
	id        string
	ns        string
	bundle    string
	createdAt time.Time
	c         Container
	init      *process
	mu        sync.Mutex // guards execs
	execs     map[string]*process
}

// New makes a task service persisting its records under dir.
func New(life context.Context, dir string, b Backend, pub events.Publisher) (*Service, error) {
	st, err := store.Open(dir)
	if err != nil {
		return nil, err
	}
	return &Service{backend: b, pub: pub, store: st, life: life, containers: map[string]*container{}}, nil
}

// Register adds the service to a ttrpc server.
func (s *Service) Register(srv *ttrpc.Server) { taskapi.RegisterTTRPCTaskService(srv, s) }

// Recover rebuilds every persisted container through the backend.
func (s *Service) Recover(ctx context.Context) error {
	ids, err := s.store.IDs()
	if err != nil {
		return err
	}
	rb, ok := s.backend.(Recoverer)
	for _, id := range ids {
		var rec Record
		lg := log.G(ctx).WithField("container_id", id)
		if err := s.store.Get(id, &rec); err != nil {
			lg.WithError(err).Error("dropping unreadable task record")
			_ = s.store.Delete(id)
			continue
		}
		if !ok {
			lg.Warn("backend cannot recover tasks, dropping record")
			_ = s.store.Delete(id)
			continue
		}
		c, err := rb.Recover(ctx, &rec)
		if err != nil {
			lg.WithError(err).Warn("task could not be recovered, dropping it")
			_ = s.store.Delete(id)
			continue
		}
		st := created
		switch rec.Status {
		case running.String():
			st = running
		case paused.String():
			st = paused
		case stopped.String():
			st = stopped
		}
		ct := &container{id: id, ns: rec.Namespace, bundle: rec.Bundle, createdAt: rec.CreatedAt, c: c,
			init: newProcess("", c, rec.Stdio, st), execs: map[string]*process{}}
		s.mu.Lock()
		s.containers[id] = ct
		s.mu.Unlock()
		go s.watchExit(ct, ct.init, st == stopped)
		if n, ok := c.(OOMNotifier); ok {
			go s.watchOOM(ct, n)
		}
		lg.WithField("status", st).Info("recovered task")
	}
	return nil
}

// Containers lists the ids of the containers the service holds.
func (s *Service) Containers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.containers))
	for id := range s.containers {
		ids = append(ids, id)
	}
	return ids
}

func namespaceOf(ctx context.Context) string {
	if v, ok := ttrpc.GetMetadataValue(ctx, namespaceKey); ok {
		return v
	}
	return "default"
}

func (s *Service) get(id string) (*container, error) {
	if err := sandbox.ValidateID("id", id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok || c.c == nil { // absent, or still being created
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (s *Service) getProcess(id, execID string) (*container, *process, error) {
	c, err := s.get(id)
	if err != nil {
		return nil, nil, err
	}
	if execID == "" {
		return c, c.init, nil
	}
	if err := sandbox.ValidateID("exec_id", execID); err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.execs[execID]
	if !ok {
		return nil, nil, fmt.Errorf("exec %s in container %s: %w", execID, id, errdefs.ErrNotFound)
	}
	return c, p, nil
}

func (s *Service) persist(c *container) {
	rec := Record{ID: c.id, Namespace: c.ns, Bundle: c.bundle, Stdio: c.init.stdio, Pid: c.c.Pid(),
		Status: c.init.getStatus().String(), CreatedAt: c.createdAt, Backend: c.c.State()}
	if err := s.store.Put(c.id, &rec); err != nil {
		log.G(s.life).WithError(err).WithField("container_id", c.id).Error("persisting task record")
	}
}

func rpcErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	log.G(ctx).WithError(err).Debugf("task %s failed", op)
	return errgrpc.ToGRPC(err)
}

// loadSpec reads and checks the bundle of a Create.
func loadSpec(bundle string) (*specs.Spec, error) {
	if bundle == "" || !filepath.IsAbs(bundle) || filepath.Clean(bundle) != bundle {
		return nil, fmt.Errorf("bundle %q: must be an absolute, clean path: %w", bundle, errdefs.ErrInvalidArgument)
	}
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("bundle %q: %v: %w", bundle, err, errdefs.ErrInvalidArgument)
	}
	var sp specs.Spec
	if err := json.Unmarshal(data, &sp); err != nil {
		return nil, fmt.Errorf("bundle %q: config.json: %v: %w", bundle, err, errdefs.ErrInvalidArgument)
	}
	if sp.Process == nil {
		return nil, fmt.Errorf("bundle %q: config.json has no process: %w", bundle, errdefs.ErrInvalidArgument)
	}
	return &sp, nil
}

// Create creates a container.
func (s *Service) Create(ctx context.Context, r *taskapi.CreateTaskRequest) (_ *taskapi.CreateTaskResponse, retErr error) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("container_id", r.GetID()))
	defer func() { retErr = rpcErr(ctx, "create", retErr) }()
	if err := sandbox.ValidateID("id", r.GetID()); err != nil {
		return nil, err
	}
	if r.GetCheckpoint() != "" || r.GetParentCheckpoint() != "" {
		return nil, fmt.Errorf("checkpoint: restore is not supported: %w", errdefs.ErrNotImplemented)
	}
	sp, err := loadSpec(r.GetBundle())
	if err != nil {
		return nil, err
	}
	io := stdio.Config{Stdin: r.GetStdin(), Stdout: r.GetStdout(), Stderr: r.GetStderr(), Terminal: r.GetTerminal()}
	if err := io.Validate(); err != nil {
		return nil, err
	}
	ns := namespaceOf(ctx)
	s.mu.Lock()
	if _, ok := s.containers[r.GetID()]; ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("container %s: %w", r.GetID(), errdefs.ErrAlreadyExists)
	}
	placeholder := &container{id: r.GetID()}
	s.containers[r.GetID()] = placeholder // reserve
	s.mu.Unlock()
	defer func() {
		if retErr != nil {
			s.mu.Lock()
			if s.containers[r.GetID()] == placeholder {
				delete(s.containers, r.GetID())
			}
			s.mu.Unlock()
		}
	}()
	c, err := s.backend.Create(ctx, &CreateRequest{ID: r.GetID(), Namespace: ns, Bundle: r.GetBundle(), Spec: sp,
		Rootfs: r.GetRootfs(), Stdio: io, Options: r.GetOptions()})
	if err != nil {
		return nil, err
	}
	ct := &container{id: r.GetID(), ns: ns, bundle: r.GetBundle(), createdAt: time.Now().UTC(), c: c,
		init: newProcess("", c, io, created), execs: map[string]*process{}}
	s.mu.Lock()
	s.containers[r.GetID()] = ct
	s.mu.Unlock()
	s.persist(ct)
	if n, ok := c.(OOMNotifier); ok {
		go s.watchOOM(ct, n)
	}
	s.pub.Publish(ctx, ns, events.TopicTaskCreate, &apievents.TaskCreate{
		ContainerID: ct.id, Bundle: ct.bundle, Rootfs: r.GetRootfs(),
		IO:  &apievents.TaskIO{Stdin: io.Stdin, Stdout: io.Stdout, Stderr: io.Stderr, Terminal: io.Terminal},
		Pid: c.Pid(),
	})
	go s.watchExit(ct, ct.init, false)
	log.G(ctx).WithField("pid", c.Pid()).Debug("task created")
	return &taskapi.CreateTaskResponse{Pid: c.Pid()}, nil
}

// Start starts a created init or exec process.
func (s *Service) Start(ctx context.Context, r *taskapi.StartRequest) (_ *taskapi.StartResponse, retErr error) {
	defer func() { retErr = rpcErr(ctx, "start", retErr) }()
	c, p, err := s.getProcess(r.GetID(), r.GetExecID())
	if err != nil {
		return nil, err
	}
	if c.init.getStatus() == stopped && p != c.init {
		return nil, fmt.Errorf("container %s is not running: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	p.evMu.Lock()
	defer p.evMu.Unlock()
	if st := p.getStatus(); st != created {
		return nil, fmt.Errorf("process %s is %s, not created: %w", procName(c, p), st, errdefs.ErrFailedPrecondition)
	}
	if err := p.p.Start(ctx); err != nil {
		return nil, err
	}
	p.setStatus(running)
	p.mu.Lock()
	p.started = time.Now()
	p.mu.Unlock()
	if p == c.init {
		s.persist(c)
		s.pub.Publish(ctx, c.ns, events.TopicTaskStart, &apievents.TaskStart{ContainerID: c.id, Pid: p.p.Pid()})
	} else {
		s.pub.Publish(ctx, c.ns, events.TopicTaskExecStarted, &apievents.TaskExecStarted{ContainerID: c.id, ExecID: p.id, Pid: p.p.Pid()})
	}
	return &taskapi.StartResponse{Pid: p.p.Pid()}, nil
}

func procName(c *container, p *process) string {
	if p.id == "" {
		return c.id
	}
	return c.id + "/" + p.id
}

// watchExit publishes the exit of a started process. When the init exits,
// the execs still alive are killed (they die with the container's pid ns
// anyway; this also covers a shared or host pid namespace).
func (s *Service) watchExit(c *container, p *process, quiet bool) {
	defer close(p.exitPub)
	select {
	case <-p.p.Exited():
	case <-p.gone:
		return
	}
	p.evMu.Lock() // after a Start in progress has published TaskStart
	defer p.evMu.Unlock()
	code, at := p.p.ExitStatus()
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if p == c.init && !started.IsZero() && at.Before(started.Add(startSlack)) {
		time.Sleep(time.Until(started.Add(startSlack)))
		at = time.Now()
		p.mu.Lock()
		p.exitAt = at
		p.mu.Unlock()
	}
	if p == c.init {
		c.mu.Lock()
		execs := make([]*process, 0, len(c.execs))
		for _, e := range c.execs {
			execs = append(execs, e)
		}
		c.mu.Unlock()
		for _, e := range execs {
			if e.getStatus() == running {
				_ = e.p.Kill(s.life, syscall.SIGKILL, false)
			}
		}
		s.persist(c)
	}
	if quiet {
		return
	}
	s.pub.Publish(s.life, c.ns, events.TopicTaskExit, &apievents.TaskExit{
		ContainerID: c.id, ID: execOrContainer(c, p), Pid: p.p.Pid(), ExitStatus: code, ExitedAt: timestamppb.New(at),
	})
}

func execOrContainer(c *container, p *process) string {
	if p.id == "" {
		return c.id
	}
	return p.id
}

func (s *Service) watchOOM(c *container, n OOMNotifier) {
	for range n.OOM() {
		s.pub.Publish(s.life, c.ns, events.TopicTaskOOM, &apievents.TaskOOM{ContainerID: c.id})
	}
}

// Delete deletes a stopped (or never started) process.
func (s *Service) Delete(ctx context.Context, r *taskapi.DeleteRequest) (_ *taskapi.DeleteResponse, retErr error) {
	defer func() { retErr = rpcErr(ctx, "delete", retErr) }()
	c, p, err := s.getProcess(r.GetID(), r.GetExecID())
	if err != nil {
		return nil, err
	}
	st := p.getStatus()
	if st == running || st == paused {
		return nil, fmt.Errorf("process %s is %s: stop it before delete: %w", procName(c, p), st, errdefs.ErrFailedPrecondition)
	}
	if p == c.init {
		// every exec goes with the container
		c.mu.Lock()
		for id, e := range c.execs {
			if e.p != nil {
				_ = e.p.Kill(ctx, syscall.SIGKILL, false)
				_ = e.p.Delete(ctx)
			}
			e.markGone()
			delete(c.execs, id)
		}
		c.mu.Unlock()
	}
	if err := p.p.Delete(ctx); err != nil {
		return nil, err
	}
	select {
	case <-p.p.Exited():
		// TaskExit must be queued before TaskDelete
		select {
		case <-p.exitPub:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	default:
	}
	p.markGone()
	code, at := p.exitStatus()
	if st == created {
		code, at = 0, time.Now()
	}
	pid := p.p.Pid()
	if p == c.init {
		s.mu.Lock()
		delete(s.containers, c.id)
		s.mu.Unlock()
		if err := s.store.Delete(c.id); err != nil {
			log.G(ctx).WithError(err).Warn("removing task record")
		}
		s.pub.Publish(ctx, c.ns, events.TopicTaskDelete, &apievents.TaskDelete{
			ContainerID: c.id, Pid: pid, ExitStatus: code, ExitedAt: timestamppb.New(at),
		})
	} else {
		c.mu.Lock()
		delete(c.execs, p.id)
		c.mu.Unlock()
	}
	return &taskapi.DeleteResponse{Pid: pid, ExitStatus: code, ExitedAt: timestamppb.New(at)}, nil
}

// Exec adds an exec process to a running container.
func (s *Service) Exec(ctx context.Context, r *taskapi.ExecProcessRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = rpcErr(ctx, "exec", retErr) }()
	c, err := s.get(r.GetID())
	if err != nil {
		return nil, err
	}
	if err := sandbox.ValidateID("exec_id", r.GetExecID()); err != nil {
		return nil, err
	}
	if st := c.init.getStatus(); st != running {
		return nil, fmt.Errorf("container %s is %s, not running: %w", c.id, st, errdefs.ErrFailedPrecondition)
	}
	if r.GetSpec() == nil {
		return nil, fmt.Errorf("spec: must be set: %w", errdefs.ErrInvalidArgument)
	}
	var ps specs.Process
	if err := json.Unmarshal(r.GetSpec().GetValue(), &ps); err != nil {
		return nil, fmt.Errorf("spec: not a runtime-spec Process: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if len(ps.Args) == 0 && ps.CommandLine == "" {
		return nil, fmt.Errorf("spec.args: must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	io := stdio.Config{Stdin: r.GetStdin(), Stdout: r.GetStdout(), Stderr: r.GetStderr(), Terminal: r.GetTerminal()}
	if err := io.Validate(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if _, ok := c.execs[r.GetExecID()]; ok {
		c.mu.Unlock()
		return nil, fmt.Errorf("exec %s in container %s: %w", r.GetExecID(), c.id, errdefs.ErrAlreadyExists)
	}
	placeholder := newProcess(r.GetExecID(), nil, io, created)
	c.execs[r.GetExecID()] = placeholder
	c.mu.Unlock()
	p, err := c.c.Exec(ctx, r.GetExecID(), &ps, io)
	c.mu.Lock()
	if err != nil {
		delete(c.execs, r.GetExecID())
		c.mu.Unlock()
		return nil, err
	}
	placeholder.p = p
	c.mu.Unlock()
	go s.watchExit(c, placeholder, false)
	s.pub.Publish(ctx, c.ns, events.TopicTaskExecAdded, &apievents.TaskExecAdded{ContainerID: c.id, ExecID: r.GetExecID()})
	return &emptypb.Empty{}, nil
}

// State reports a process.
func (s *Service) State(ctx context.Context, r *taskapi.StateRequest) (_ *taskapi.StateResponse, retErr error) {
	defer func() { retErr = rpcErr(ctx, "state", retErr) }()
	c, p, err := s.getProcess(r.GetID(), r.GetExecID())
	if err != nil {
		return nil, err
	}
	if p.p == nil {
		return nil, fmt.Errorf("exec %s is being created: %w", r.GetExecID(), errdefs.ErrNotFound)
	}
	st := p.getStatus()
	resp := &taskapi.StateResponse{
		ID: c.id, Bundle: c.bundle, Pid: p.p.Pid(), Status: st.api(), ExecID: p.id,
		Stdin: p.stdio.Stdin, Stdout: p.stdio.Stdout, Stderr: p.stdio.Stderr, Terminal: p.stdio.Terminal,
	}
	if st == stopped {
		code, at := p.exitStatus()
		resp.ExitStatus, resp.ExitedAt = code, timestamppb.New(at)
	}
	return resp, nil
}

// Kill signals a process. Signalling a process that has exited succeeds.
func (s *Service) Kill(ctx context.Context, r *taskapi.KillRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = rpcErr(ctx, "kill", retErr) }()
	c, p, err := s.getProcess(r.GetID(), r.GetExecID())
	if err != nil {
		return nil, err
	}
	if p.p == nil {
		return nil, fmt.Errorf("exec %s is being created: %w", r.GetExecID(), errdefs.ErrNotFound)
	}
	if r.GetSignal() == 0 || r.GetSignal() > 64 {
		return nil, fmt.Errorf("signal %d: out of range 1-64: %w", r.GetSignal(), errdefs.ErrInvalidArgument)
	}
	st := p.getStatus()
	if st == stopped && !r.GetAll() {
		return &emptypb.Empty{}, nil
	}
	if st == created && p == c.init {
		// a container that never started: SIGKILL removes its init
		if err := p.p.Kill(ctx, syscall.Signal(r.GetSignal()), r.GetAll()); err != nil && !errdefs.IsNotFound(err) {
			return nil, err
		}
		return &emptypb.Empty{}, nil
	}
	if err := p.p.Kill(ctx, syscall.Signal(r.GetSignal()), r.GetAll()); err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Wait blocks until a process exits.
func (s *Service) Wait(ctx context.Context, r *taskapi.WaitRequest) (_ *taskapi.WaitResponse, retErr error) {
	defer func() { retErr = rpcErr(ctx, "wait", retErr) }()
	_, p, err := s.getProcess(r.GetID(), r.GetExecID())
	if err != nil {
		return nil, err
	}
	if p.p == nil {
		return nil, fmt.Errorf("exec %s is being created: %w", r.GetExecID(), errdefs.ErrNotFound)
	}
	select {
	case <-p.exitPub:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	code, at := p.exitStatus()
	return &taskapi.WaitResponse{ExitStatus: code, ExitedAt: timestamppb.New(at)}, nil
}

// Pids lists the processes of a container.
func (s *Service) Pids(ctx context.Context, r *taskapi.PidsRequest) (_ *taskapi.PidsResponse, retErr error) {
	defer func() { retErr = rpcErr(ctx, "pids", retErr) }()
	c, err := s.get(r.GetID())
	if err != nil {
		return nil, err
	}
	ps, err := c.c.Pids(ctx)
	if err != nil {
		return nil, err
	}
	return &taskapi.PidsResponse{Processes: ps}, nil
}

// Pause freezes a container where the backend can.
func (s *Service) Pause(ctx context.Context, r *taskapi.PauseRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = rpcErr(ctx, "pause", retErr) }()
	c, err := s.get(r.GetID())
	if err != nil {
		return nil, err
	}
	pz, ok := c.c.(Pauser)
	if !ok {
		return nil, fmt.Errorf("pause: %w", errdefs.ErrNotImplemented)
	}
	if st := c.init.getStatus(); st != running {
		return nil, fmt.Errorf("container %s is %s, not running: %w", c.id, st, errdefs.ErrFailedPrecondition)
	}
	if err := pz.Pause(ctx); err != nil {
		return nil, err
	}
	c.init.setStatus(paused)
	s.persist(c)
	s.pub.Publish(ctx, c.ns, events.TopicTaskPaused, &apievents.TaskPaused{ContainerID: c.id})
	return &emptypb.Empty{}, nil
}

// Resume thaws a paused container.
func (s *Service) Resume(ctx context.Context, r *taskapi.ResumeRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = rpcErr(ctx, "resume", retErr) }()
	c, err := s.get(r.GetID())
	if err != nil {
		return nil, err
	}
	pz, ok := c.c.(Pauser)
	if !ok {
		return nil, fmt.Errorf("resume: %w", errdefs.ErrNotImplemented)
	}
	if st := c.init.getStatus(); st != paused {
		return nil, fmt.Errorf("container %s is %s, not paused: %w", c.id, st, errdefs.ErrFailedPrecondition)
	}
	if err := pz.Resume(ctx); err != nil {
		return nil, err
	}
	c.init.setStatus(running)
	s.persist(c)
	s.pub.Publish(ctx, c.ns, events.TopicTaskResumed, &apievents.TaskResumed{ContainerID: c.id})
	return &emptypb.Empty{}, nil
}

// Checkpoint is not supported.
func (s *Service) Checkpoint(ctx context.Context, r *taskapi.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, errgrpc.ToGRPC(fmt.Errorf("checkpoint: %w", errdefs.ErrNotImplemented))
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, r *taskapi.ResizePtyRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = rpcErr(ctx, "resize-pty", retErr) }()
	_, p, err := s.getProcess(r.GetID(), r.GetExecID())
	if err != nil {
		return nil, err
	}
	if p.p == nil {
		return nil, fmt.Errorf("exec %s is being created: %w", r.GetExecID(), errdefs.ErrNotFound)
	}
	if err := p.p.ResizePty(ctx, r.GetWidth(), r.GetHeight()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// CloseIO closes a process's stdin.
func (s *Service) CloseIO(ctx context.Context, r *taskapi.CloseIORequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = rpcErr(ctx, "close-io", retErr) }()
	_, p, err := s.getProcess(r.GetID(), r.GetExecID())
	if err != nil {
		return nil, err
	}
	if p.p == nil {
		return nil, fmt.Errorf("exec %s is being created: %w", r.GetExecID(), errdefs.ErrNotFound)
	}
	if r.GetStdin() {
		if err := p.p.CloseStdin(ctx); err != nil {
			return nil, err
		}
	}
	return &emptypb.Empty{}, nil
}

// Update changes a container's resources.
func (s *Service) Update(ctx context.Context, r *taskapi.UpdateTaskRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = rpcErr(ctx, "update", retErr) }()
	c, err := s.get(r.GetID())
	if err != nil {
		return nil, err
	}
	var res specs.LinuxResources
	if r.GetResources() != nil {
		if err := json.Unmarshal(r.GetResources().GetValue(), &res); err != nil {
			return nil, fmt.Errorf("resources: not runtime-spec LinuxResources: %v: %w", err, errdefs.ErrInvalidArgument)
		}
	}
	if err := c.c.Update(ctx, &res, r.GetAnnotations()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Stats reports a container's cgroup metrics.
func (s *Service) Stats(ctx context.Context, r *taskapi.StatsRequest) (_ *taskapi.StatsResponse, retErr error) {
	defer func() { retErr = rpcErr(ctx, "stats", retErr) }()
	c, err := s.get(r.GetID())
	if err != nil {
		return nil, err
	}
	a, err := c.c.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return &taskapi.StatsResponse{Stats: a}, nil
}

// Connect reports the daemon's pid and the container's.
func (s *Service) Connect(ctx context.Context, r *taskapi.ConnectRequest) (_ *taskapi.ConnectResponse, retErr error) {
	defer func() { retErr = rpcErr(ctx, "connect", retErr) }()
	c, err := s.get(r.GetID())
	if err != nil {
		return nil, err
	}
	return &taskapi.ConnectResponse{ShimPid: uint32(os.Getpid()), TaskPid: c.c.Pid(), Version: "3"}, nil
}

// Shutdown is containerd saying it needs no more of this task connection. In
// a sandboxer other tasks still use the server, so it never exits.
func (s *Service) Shutdown(ctx context.Context, r *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	log.G(ctx).WithField("container_id", r.GetID()).Debug("task shutdown (server keeps running)")
	return &emptypb.Empty{}, nil
}
