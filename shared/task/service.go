package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
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
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/events"
	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/killpoint"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/store"
)

// namespaceKey is the ttrpc metadata key containerd puts its namespace in.
const namespaceKey = "containerd-namespace-ttrpc"

// killWait bounds how long stopping a pod waits for a SIGKILLed container.
const killWait = 5 * time.Second

// Service implements taskapi.TTRPCTaskService.
type Service struct {
	backend Backend
	pub     events.Publisher
	store   *store.Store
	life    context.Context
	pods    sandbox.Pods
	handler string

	mu         sync.Mutex
	containers map[string]*container
}

var (
	_ taskapi.TTRPCTaskService = (*Service)(nil)
	_ sandbox.Containers       = (*Service)(nil)
)

// Option configures a Service.
type Option func(*Service)

// WithPods makes every container belong to a pod: Create reads the pod's
// id from the spec's CRI annotation, resolves it through pods (it must be
// running) and hands the pod instance to the backend; the service then
// answers for the containers of a pod (sandbox.Containers). handler names
// the runtime handler in messages ("magnetar-runc").
func WithPods(pods sandbox.Pods, handler string) Option {
	return func(s *Service) { s.pods, s.handler = pods, handler }
}

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

func parseStatus(s string) status {
	switch s {
	case running.String():
		return running
	case paused.String():
		return paused
	case stopped.String():
		return stopped
	}
	return created
}

type process struct {
	id string // exec id, "" for init
	// p is nil while an Exec is creating it: lookups answer NotFound then.
	p     Process
	stdio stdio.Config
	mu    sync.Mutex
	// status is created, running or paused; the process is stopped once
	// exit is set.
	status status
	// evMu orders this process's events: Start holds it across the backend
	// start and TaskStart, the exit watcher takes it before TaskExit.
	evMu sync.Mutex
	// exit is the exit containerd is told of: set once TaskExit is queued
	// (or, for a process found exited after a restart, from its record).
	exit exit.Latch
	// final is the exit as persisted: set (under mu) before TaskExit is
	// queued, so that a record never lags what containerd was told.
	final *ExitRecord
	// gone is closed when the process is deleted.
	gone     chan struct{}
	goneOnce sync.Once
	// deleting is set while the backend deletes the process.
	deleting atomic.Bool
	// started is when Start answered (zero before).
	started time.Time
}

// startSlack separates a start from an exit seen while containerd was still
// receiving the Start answer (a container's init only): containerd's CRI stamps startedAt when it
// gets the answer, and an exit stamped before that reads as finishing before
// starting.
const startSlack = 50 * time.Millisecond

func newProcess(id string, p Process, io stdio.Config, st status) *process {
	return &process{id: id, p: p, stdio: io, status: st, gone: make(chan struct{})}
}

func (p *process) markGone() { p.goneOnce.Do(func() { close(p.gone) }) }

// setExited records an exit known already (from a record) without an event.
func (p *process) setExited(code uint32, at time.Time) {
	p.mu.Lock()
	p.final = &ExitRecord{Code: code, At: at}
	p.mu.Unlock()
	p.exit.Set(code, at)
}

// persisted is the exit for the record: nil while the process runs.
func (p *process) persisted() *ExitRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.final
}

func (p *process) getStatus() status {
	if p.exit.IsSet() {
		return stopped
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

func (p *process) setStatus(st status) {
	p.mu.Lock()
	p.status = st
	p.mu.Unlock()
}

// backendExited reports whether the backend's process has ended.
func (p *process) backendExited() bool {
	select {
	case <-p.p.Exited():
		return true
	default:
		return false
	}
}

func (p *process) record() *ExecRecord {
	r := &ExecRecord{ID: p.id, Stdio: p.stdio, Pid: p.p.Pid(), Status: p.getStatus().String(), Exit: p.persisted()}
	if r.Exit != nil {
		r.Status = stopped.String()
	}
	if ps, ok := p.p.(ProcessStater); ok {
		r.Backend = ps.State()
	}
	return r
}

type container struct {
	id        string
	ns        string
	bundle    string
	pod       string
	createdAt time.Time
	// c is nil while Create runs (the id is reserved): lookups answer
	// NotFound then.
	c    Container
	init *process
	mu   sync.Mutex // guards execs
	// pmu serialises building and writing the record, so that the last
	// write holds the latest state; deleted (under pmu) says the record
	// is gone for good: a late persist (an exit watcher's) must not bring
	// it back.
	pmu     sync.Mutex
	deleted bool
	execs   map[string]*process
	// dmu serialises the deletes of the container's processes: of
	// callers deleting one process at once, one deletes it and the
	// others find it gone
	dmu sync.Mutex
}

// New makes a task service persisting its records under dir.
func New(life context.Context, dir string, b Backend, pub events.Publisher, opts ...Option) (*Service, error) {
	st, err := store.OpenUnsynced(dir)
	if err != nil {
		return nil, err
	}
	s := &Service{backend: b, pub: pub, store: st, life: life, containers: map[string]*container{}}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Register adds the service to a ttrpc server.
func (s *Service) Register(srv *ttrpc.Server) { taskapi.RegisterTTRPCTaskService(srv, s) }

// Recover rebuilds every persisted container through the backend. With
// WithPods, recover the pods first: a container finds its pod through them,
// and a container whose pod is gone is deleted.
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
		if rec.ID != id {
			lg.WithField("record_id", rec.ID).Error("dropping task record of another id")
			_ = s.store.Delete(id)
			continue
		}
		if !ok {
			lg.Warn("backend cannot recover tasks, dropping record")
			_ = s.store.Delete(id)
			continue
		}
		var pod sandbox.Instance
		if s.pods != nil && rec.Pod != "" {
			if pod, _, err = s.pods.Pod(rec.Pod); err != nil {
				pod = nil
			}
		}
		c, err := rb.Recover(ctx, &rec, pod)
		if err != nil {
			lg.WithError(err).Warn("task could not be recovered, dropping it")
			_ = s.store.Delete(id)
			continue
		}
		switch {
		case rec.Status == StatusCreating:
			lg.Warn("the daemon died inside this task's Create: rolling it back")
			s.discard(ctx, id, c)
			continue
		case s.pods != nil && pod == nil:
			lg.WithField("sandbox_id", rec.Pod).Warn("the task's pod is gone: deleting the task")
			s.discard(ctx, id, c)
			continue
		}
		s.adopt(ctx, &rec, c)
	}
	return nil
}

// discard kills and deletes a recovered container that must not stay, and
// drops its record.
func (s *Service) discard(ctx context.Context, id string, c Container) {
	_ = c.Kill(ctx, syscall.SIGKILL, true)
	if err := c.Delete(ctx); err != nil {
		log.G(ctx).WithError(err).WithField("container_id", id).Warn("deleting task")
	}
	_ = s.store.Delete(id)
}

// adopt makes a recovered container and its execs known again.
func (s *Service) adopt(ctx context.Context, rec *Record, c Container) {
	lg := log.G(ctx).WithField("container_id", rec.ID)
	st := parseStatus(rec.Status)
	ct := &container{id: rec.ID, ns: rec.Namespace, bundle: rec.Bundle, pod: rec.Pod, createdAt: rec.CreatedAt, c: c,
		init: newProcess("", c, rec.Stdio, st), execs: map[string]*process{}}
	type watch struct {
		p     *process
		quiet bool
	}
	var watches []watch
	switch {
	case rec.Exit != nil:
		// containerd was told of this exit already
		ct.init.setExited(rec.Exit.Code, rec.Exit.At)
	case st == stopped:
		// a record from before exits were kept: the backend's status
		watches = append(watches, watch{ct.init, true})
	default:
		watches = append(watches, watch{ct.init, false})
	}
	er, canExec := c.(ExecRecoverer)
	for _, xr := range sortedExecs(rec.Execs) {
		xst := parseStatus(xr.Status)
		var p *process
		switch {
		case xr.Exit != nil:
			p = newProcess(xr.ID, &ended{pid: xr.Pid}, xr.Stdio, xst)
			p.setExited(xr.Exit.Code, xr.Exit.At)
		case canExec:
			bp, err := er.RecoverExec(ctx, xr)
			if err != nil {
				lg.WithError(err).WithField("exec_id", xr.ID).Warn("exec could not be recovered: reporting it lost")
				bp = lostProcess(xr.Pid)
			}
			p = newProcess(xr.ID, bp, xr.Stdio, xst)
			watches = append(watches, watch{p, false})
		case xst == created:
			continue // never started: nothing to report
		default:
			lg.WithField("exec_id", xr.ID).Warnf("exec lost in the daemon restart: reporting exit %d", sandbox.ExitCodeLost)
			p = newProcess(xr.ID, lostProcess(xr.Pid), xr.Stdio, xst)
			watches = append(watches, watch{p, false})
		}
		ct.execs[xr.ID] = p
	}
	s.mu.Lock()
	s.containers[rec.ID] = ct
	s.mu.Unlock()
	for _, w := range watches {
		s.watchExit(ct, w.p, w.quiet)
	}
	s.watchOOM(ct, c)
	lg.WithFields(log.Fields{"status": ct.init.getStatus(), "execs": len(ct.execs)}).Info("recovered task")
}

func sortedExecs(m map[string]*ExecRecord) []*ExecRecord {
	out := make([]*ExecRecord, 0, len(m))
	for id, r := range m {
		if r == nil || r.ID != id || sandbox.ValidateID("exec_id", id) != nil {
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ended is a process that is over: an exec found exited (or lost) after a
// restart. It accepts Kill and Delete, as a process that exited does.
type ended struct {
	exit.Latch
	pid uint32
}

// lostProcess is an exec that ran when the daemon stopped and could not be
// found again: it ends at once with sandbox.ExitCodeLost.
func lostProcess(pid uint32) *ended {
	e := &ended{pid: pid}
	e.Set(sandbox.ExitCodeLost, time.Now())
	return e
}

func (e *ended) Pid() uint32 { return e.pid }
func (e *ended) Start(context.Context) error {
	return fmt.Errorf("process has ended: %w", errdefs.ErrFailedPrecondition)
}
func (e *ended) Kill(context.Context, syscall.Signal, bool) error { return nil }
func (e *ended) ResizePty(context.Context, uint32, uint32) error {
	return fmt.Errorf("process has ended: %w", errdefs.ErrFailedPrecondition)
}
func (e *ended) CloseStdin(context.Context) error { return nil }
func (e *ended) Delete(context.Context) error     { return nil }

// Containers lists the ids of the containers the service holds.
func (s *Service) Containers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.containers))
	for id := range s.containers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func namespaceOf(ctx context.Context) string {
	if v, ok := ttrpc.GetMetadataValue(ctx, namespaceKey); ok {
		return v
	}
	return "default"
}

// withIDs puts the ids of a request into the context's logger.
func withIDs(ctx context.Context, id, execID string) context.Context {
	f := log.Fields{"container_id": id}
	if execID != "" {
		f["exec_id"] = execID
	}
	return log.WithLogger(ctx, log.G(ctx).WithFields(f))
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

// getProcess finds a container's init (execID "") or one of its execs. An
// exec whose Exec is still in flight is not found yet.
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
	switch {
	case !ok:
		return nil, nil, fmt.Errorf("exec %s in container %s: %w", execID, id, errdefs.ErrNotFound)
	case p.p == nil:
		return nil, nil, fmt.Errorf("exec %s in container %s is still being created: %w", execID, id, errdefs.ErrNotFound)
	}
	return c, p, nil
}

func (s *Service) persist(c *container) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.deleted {
		return
	}
	rec := Record{ID: c.id, Namespace: c.ns, Bundle: c.bundle, Pod: c.pod, Stdio: c.init.stdio, Pid: c.c.Pid(),
		Status: c.init.getStatus().String(), CreatedAt: c.createdAt, Backend: c.c.State(), Exit: c.init.persisted()}
	if rec.Exit != nil {
		rec.Status = stopped.String()
	}
	c.mu.Lock()
	for id, p := range c.execs {
		if p.p == nil {
			continue
		}
		if rec.Execs == nil {
			rec.Execs = map[string]*ExecRecord{}
		}
		xr := p.record()
		xr.Container = c.id
		rec.Execs[id] = xr
	}
	c.mu.Unlock()
	if err := s.store.Put(c.id, &rec); err != nil {
		log.G(s.life).WithError(err).WithField("container_id", c.id).Error("persisting task record")
	}
}

// rpcErr logs a failed call and converts its error to a status: the Task API
// is an edge.
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

// pod resolves the running pod a container's spec names.
func (s *Service) pod(sp *specs.Spec, id string) (string, sandbox.Instance, error) {
	if s.pods == nil {
		return "", nil, nil
	}
	podID, err := sandbox.PodOf(sp, s.handler)
	if err != nil {
		return "", nil, err
	}
	inst, ok, err := s.pods.Pod(podID)
	switch {
	case err != nil:
		return "", nil, fmt.Errorf("pod %s of container %s: %w", podID, id, err)
	case !ok:
		return "", nil, fmt.Errorf("pod %s of container %s is not running: %w", podID, id, errdefs.ErrFailedPrecondition)
	}
	return podID, inst, nil
}

// Create creates a container. It never answers Unimplemented: containerd
// takes that from Task.Create for "this task API version is not served",
// downgrades its client to the previous version and asks again, and the
// reason is lost; what a backend cannot do for this container (ErrNotImplemented)
// is FailedPrecondition here, its message kept.
func (s *Service) Create(ctx context.Context, r *taskapi.CreateTaskRequest) (_ *taskapi.CreateTaskResponse, retErr error) {
	ctx = withIDs(ctx, r.GetID(), "")
	defer func() {
		if errdefs.IsNotImplemented(retErr) {
			retErr = fmt.Errorf("%s: %w", retErr.Error(), errdefs.ErrFailedPrecondition)
		}
		retErr = rpcErr(ctx, "create", retErr)
	}()
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
	podID, pod, err := s.pod(sp, r.GetID())
	if err != nil {
		return nil, err
	}
	if podID != "" {
		ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox_id", podID))
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
	// a record before the backend acts: a daemon that dies inside Create
	// finds it at restart and rolls the Create back
	now := time.Now().UTC()
	intent := Record{ID: r.GetID(), Namespace: ns, Bundle: r.GetBundle(), Pod: podID, Stdio: io, Status: StatusCreating, CreatedAt: now}
	if err := s.store.Put(r.GetID(), &intent); err != nil {
		return nil, err
	}
	c, err := s.backend.Create(ctx, &CreateRequest{ID: r.GetID(), Namespace: ns, Bundle: r.GetBundle(), Spec: sp,
		Rootfs: r.GetRootfs(), Stdio: io, Options: r.GetOptions(), Pod: pod})
	if err != nil {
		_ = s.store.Delete(r.GetID())
		return nil, err
	}
	killpoint.Hit(killpoint.TaskCreateStarted)
	ct := &container{id: r.GetID(), ns: ns, bundle: r.GetBundle(), pod: podID, createdAt: now, c: c,
		init: newProcess("", c, io, created), execs: map[string]*process{}}
	s.mu.Lock()
	s.containers[r.GetID()] = ct
	s.mu.Unlock()
	s.persist(ct)
	s.watchOOM(ct, c)
	s.pub.Publish(ctx, ns, events.TopicTaskCreate, &apievents.TaskCreate{
		ContainerID: ct.id, Bundle: ct.bundle, Rootfs: r.GetRootfs(),
		IO:  &apievents.TaskIO{Stdin: io.Stdin, Stdout: io.Stdout, Stderr: io.Stderr, Terminal: io.Terminal},
		Pid: c.Pid(),
	})
	s.watchExit(ct, ct.init, false)
	log.G(ctx).WithField("pid", c.Pid()).Debug("task created")
	return &taskapi.CreateTaskResponse{Pid: c.Pid()}, nil
}

// Start starts a created init or exec process.
func (s *Service) Start(ctx context.Context, r *taskapi.StartRequest) (_ *taskapi.StartResponse, retErr error) {
	ctx = withIDs(ctx, r.GetID(), r.GetExecID())
	defer func() { retErr = rpcErr(ctx, "start", retErr) }()
	c, p, err := s.getProcess(r.GetID(), r.GetExecID())
	if err != nil {
		return nil, err
	}
	if p != c.init && c.init.getStatus() == stopped {
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
	p.mu.Lock()
	p.status = running
	p.started = time.Now()
	p.mu.Unlock()
	s.persist(c)
	if p == c.init {
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

// watchExit records the exit of a process and publishes it (unless quiet).
// When the init exits, the execs still alive are killed (they die with the
// container's pid ns anyway; this also covers a shared or host pid
// namespace).
// A process whose exit calls back (exit.Notifier) costs no goroutine
// until it exits.
func (s *Service) watchExit(c *container, p *process, quiet bool) {
	if n, ok := p.p.(exit.Notifier); ok {
		n.Notify(func() { go s.exited(c, p, quiet) })
		return
	}
	go func() {
		select {
		case <-p.p.Exited():
			s.exited(c, p, quiet)
		case <-p.gone:
		}
	}()
}

// exited records and publishes the exit of p, unless p was deleted first.
func (s *Service) exited(c *container, p *process, quiet bool) {
	select {
	case <-p.gone:
		return
	default:
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
	}
	if p == c.init {
		c.mu.Lock()
		execs := make([]*process, 0, len(c.execs))
		for _, e := range c.execs {
			if e.p != nil {
				execs = append(execs, e)
			}
		}
		c.mu.Unlock()
		for _, e := range execs {
			if e.getStatus() == running {
				_ = e.p.Kill(s.life, syscall.SIGKILL, false)
			}
		}
	}
	// persisted first: a daemon killed from here on still knows the exit
	// containerd may be told of
	p.mu.Lock()
	p.final = &ExitRecord{Code: code, At: at}
	p.mu.Unlock()
	s.persist(c)
	if !quiet {
		s.pub.Publish(s.life, c.ns, events.TopicTaskExit, &apievents.TaskExit{
			ContainerID: c.id, ID: execOrContainer(c, p), Pid: p.p.Pid(), ExitStatus: code, ExitedAt: timestamppb.New(at),
		})
	}
	p.exit.Set(code, at)
}

func execOrContainer(c *container, p *process) string {
	if p.id == "" {
		return c.id
	}
	return p.id
}

// watchOOM publishes the OOM kills of b, c's backend container, until the
// container is deleted: by a call from b (OOMReporter), else from its OOM
// channel until that is closed (a backend need not close it).
func (s *Service) watchOOM(c *container, b Container) {
	if r, ok := b.(OOMReporter); ok {
		r.ReportOOM(func() {
			select {
			case <-c.init.gone:
			default:
				s.pub.Publish(s.life, c.ns, events.TopicTaskOOM, &apievents.TaskOOM{ContainerID: c.id})
			}
		})
		return
	}
	if n, ok := b.(OOMNotifier); ok {
		go s.watchOOMChannel(c, n)
	}
}

func (s *Service) watchOOMChannel(c *container, n OOMNotifier) {
	oom := n.OOM()
	for {
		select {
		case _, ok := <-oom:
			if !ok {
				return
			}
			s.pub.Publish(s.life, c.ns, events.TopicTaskOOM, &apievents.TaskOOM{ContainerID: c.id})
		case <-c.init.gone:
			return
		}
	}
}

// Delete deletes a stopped (or never started) process.
func (s *Service) Delete(ctx context.Context, r *taskapi.DeleteRequest) (_ *taskapi.DeleteResponse, retErr error) {
	ctx = withIDs(ctx, r.GetID(), r.GetExecID())
	defer func() { retErr = rpcErr(ctx, "delete", retErr) }()
	c, p, err := s.getProcess(r.GetID(), r.GetExecID())
	if err != nil {
		return nil, err
	}
	st := p.getStatus()
	if st == running || st == paused {
		return nil, fmt.Errorf("process %s is %s: stop it before delete: %w", procName(c, p), st, errdefs.ErrFailedPrecondition)
	}
	code, at, err := s.deleteProcess(ctx, c, p)
	if err != nil {
		return nil, err
	}
	if st == created {
		code, at = 0, time.Now()
	}
	return &taskapi.DeleteResponse{Pid: p.p.Pid(), ExitStatus: code, ExitedAt: timestamppb.New(at)}, nil
}

// deleteProcess deletes a process that is not running (a container's init
// with every exec) and returns its exit; one deleted already is NotFound.
func (s *Service) deleteProcess(ctx context.Context, c *container, p *process) (uint32, time.Time, error) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	select {
	case <-p.gone:
		return 0, time.Time{}, fmt.Errorf("process %s: deleted already: %w", procName(c, p), errdefs.ErrNotFound)
	default:
	}
	if p == c.init {
		// every exec goes with the container
		c.mu.Lock()
		execs := c.execs
		c.execs = map[string]*process{}
		c.mu.Unlock()
		for _, e := range execs {
			if e.p != nil {
				_ = e.p.Kill(ctx, syscall.SIGKILL, false)
				_ = e.p.Delete(ctx)
			}
			e.markGone()
		}
	}
	p.deleting.Store(true)
	if err := p.p.Delete(ctx); err != nil {
		p.deleting.Store(false)
		return 0, time.Time{}, err
	}
	if p.backendExited() {
		// TaskExit must be queued before TaskDelete
		select {
		case <-p.exit.Done():
		case <-ctx.Done():
			return 0, time.Time{}, ctx.Err()
		}
	}
	p.markGone()
	code, at := p.exit.ExitStatus()
	pid := p.p.Pid()
	if p != c.init {
		c.mu.Lock()
		delete(c.execs, p.id)
		c.mu.Unlock()
		s.persist(c)
		return code, at, nil
	}
	s.mu.Lock()
	delete(s.containers, c.id)
	s.mu.Unlock()
	c.pmu.Lock()
	c.deleted = true
	err := s.store.Delete(c.id)
	c.pmu.Unlock()
	if err != nil {
		log.G(ctx).WithError(err).Warn("removing task record")
	}
	s.pub.Publish(ctx, c.ns, events.TopicTaskDelete, &apievents.TaskDelete{
		ContainerID: c.id, Pid: pid, ExitStatus: code, ExitedAt: timestamppb.New(at),
	})
	return code, at, nil
}

// Exec adds an exec process to a running container.
func (s *Service) Exec(ctx context.Context, r *taskapi.ExecProcessRequest) (_ *emptypb.Empty, retErr error) {
	ctx = withIDs(ctx, r.GetID(), r.GetExecID())
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
	s.persist(c)
	s.watchExit(c, placeholder, false)
	s.pub.Publish(ctx, c.ns, events.TopicTaskExecAdded, &apievents.TaskExecAdded{ContainerID: c.id, ExecID: r.GetExecID()})
	return &emptypb.Empty{}, nil
}

// State reports a process.
func (s *Service) State(ctx context.Context, r *taskapi.StateRequest) (_ *taskapi.StateResponse, retErr error) {
	ctx = withIDs(ctx, r.GetID(), r.GetExecID())
	defer func() { retErr = rpcErr(ctx, "state", retErr) }()
	c, p, err := s.getProcess(r.GetID(), r.GetExecID())
	if err != nil {
		return nil, err
	}
	st := p.getStatus()
	resp := &taskapi.StateResponse{
		ID: c.id, Bundle: c.bundle, Pid: p.p.Pid(), Status: st.api(), ExecID: p.id,
		Stdin: p.stdio.Stdin, Stdout: p.stdio.Stdout, Stderr: p.stdio.Stderr, Terminal: p.stdio.Terminal,
	}
	if st == stopped {
		code, at := p.exit.ExitStatus()
		resp.ExitStatus, resp.ExitedAt = code, timestamppb.New(at)
	}
	return resp, nil
}

// Kill signals a process. Signalling a process that has exited succeeds; a
// container that never started is removed by SIGKILL.
func (s *Service) Kill(ctx context.Context, r *taskapi.KillRequest) (_ *emptypb.Empty, retErr error) {
	ctx = withIDs(ctx, r.GetID(), r.GetExecID())
	defer func() { retErr = rpcErr(ctx, "kill", retErr) }()
	_, p, err := s.getProcess(r.GetID(), r.GetExecID())
	if err != nil {
		return nil, err
	}
	if r.GetSignal() == 0 || r.GetSignal() > 64 {
		return nil, fmt.Errorf("signal %d: out of range 1-64: %w", r.GetSignal(), errdefs.ErrInvalidArgument)
	}
	if p.getStatus() == stopped && !r.GetAll() {
		return &emptypb.Empty{}, nil
	}
	if err := p.p.Kill(ctx, syscall.Signal(r.GetSignal()), r.GetAll()); err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Wait blocks until a process exits.
func (s *Service) Wait(ctx context.Context, r *taskapi.WaitRequest) (_ *taskapi.WaitResponse, retErr error) {
	ctx = withIDs(ctx, r.GetID(), r.GetExecID())
	defer func() { retErr = rpcErr(ctx, "wait", retErr) }()
	_, p, err := s.getProcess(r.GetID(), r.GetExecID())
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exit.Done():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	code, at := p.exit.ExitStatus()
	return &taskapi.WaitResponse{ExitStatus: code, ExitedAt: timestamppb.New(at)}, nil
}

// Pids lists the processes of a container.
func (s *Service) Pids(ctx context.Context, r *taskapi.PidsRequest) (_ *taskapi.PidsResponse, retErr error) {
	ctx = withIDs(ctx, r.GetID(), "")
	defer func() { retErr = rpcErr(ctx, "pids", retErr) }()
	c, err := s.get(r.GetID())
	if err != nil {
		return nil, err
	}
	if c.init.deleting.Load() {
		// the backend's container may be half gone (runc's state is):
		// containerd, reloading its tasks after a restart, takes NotFound
		// from Pids for a task to clean up, and anything else for one to
		// keep, whose bundle then stays (chaos, a containerd killed while
		// a cut Create was rolled back)
		return nil, fmt.Errorf("container %s: being deleted: %w", c.id, errdefs.ErrNotFound)
	}
	ps, err := c.c.Pids(ctx)
	if err != nil {
		return nil, err
	}
	return &taskapi.PidsResponse{Processes: ps}, nil
}

// Pause freezes a container where the backend can.
func (s *Service) Pause(ctx context.Context, r *taskapi.PauseRequest) (_ *emptypb.Empty, retErr error) {
	ctx = withIDs(ctx, r.GetID(), "")
	defer func() { retErr = rpcErr(ctx, "pause", retErr) }()
	return s.pauseResume(ctx, r.GetID(), true)
}

// Resume thaws a paused container.
func (s *Service) Resume(ctx context.Context, r *taskapi.ResumeRequest) (_ *emptypb.Empty, retErr error) {
	ctx = withIDs(ctx, r.GetID(), "")
	defer func() { retErr = rpcErr(ctx, "resume", retErr) }()
	return s.pauseResume(ctx, r.GetID(), false)
}

func (s *Service) pauseResume(ctx context.Context, id string, pause bool) (*emptypb.Empty, error) {
	c, err := s.get(id)
	if err != nil {
		return nil, err
	}
	op, from, to, topic := "resume", paused, running, events.TopicTaskResumed
	if pause {
		op, from, to, topic = "pause", running, paused, events.TopicTaskPaused
	}
	pz, ok := c.c.(Pauser)
	if !ok {
		return nil, fmt.Errorf("%s: %w", op, errdefs.ErrNotImplemented)
	}
	if st := c.init.getStatus(); st != from {
		return nil, fmt.Errorf("container %s is %s, not %s: %w", c.id, st, from, errdefs.ErrFailedPrecondition)
	}
	do := pz.Resume
	if pause {
		do = pz.Pause
	}
	if err := do(ctx); err != nil {
		return nil, err
	}
	c.init.setStatus(to)
	s.persist(c)
	if pause {
		s.pub.Publish(ctx, c.ns, topic, &apievents.TaskPaused{ContainerID: c.id})
	} else {
		s.pub.Publish(ctx, c.ns, topic, &apievents.TaskResumed{ContainerID: c.id})
	}
	return &emptypb.Empty{}, nil
}

// Checkpoint is not supported.
func (s *Service) Checkpoint(ctx context.Context, r *taskapi.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, errgrpc.ToGRPC(fmt.Errorf("checkpoint: %w", errdefs.ErrNotImplemented))
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, r *taskapi.ResizePtyRequest) (_ *emptypb.Empty, retErr error) {
	ctx = withIDs(ctx, r.GetID(), r.GetExecID())
	defer func() { retErr = rpcErr(ctx, "resize-pty", retErr) }()
	_, p, err := s.getProcess(r.GetID(), r.GetExecID())
	if err != nil {
		return nil, err
	}
	if err := p.p.ResizePty(ctx, r.GetWidth(), r.GetHeight()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// CloseIO closes a process's stdin.
func (s *Service) CloseIO(ctx context.Context, r *taskapi.CloseIORequest) (_ *emptypb.Empty, retErr error) {
	ctx = withIDs(ctx, r.GetID(), r.GetExecID())
	defer func() { retErr = rpcErr(ctx, "close-io", retErr) }()
	_, p, err := s.getProcess(r.GetID(), r.GetExecID())
	if err != nil {
		return nil, err
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
	ctx = withIDs(ctx, r.GetID(), "")
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
	ctx = withIDs(ctx, r.GetID(), "")
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
	ctx = withIDs(ctx, r.GetID(), "")
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
	ctx = withIDs(ctx, r.GetID(), "")
	// containerd names the task it is done with: an id no task could have
	// is a bad request, not a shutdown
	if err := sandbox.ValidateID("id", r.GetID()); err != nil {
		return nil, rpcErr(ctx, "shutdown", err)
	}
	log.G(ctx).Debug("task shutdown (server keeps running)")
	return &emptypb.Empty{}, nil
}

// podContainers lists the containers of a pod (not those being created).
func (s *Service) podContainers(podID string) []*container {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*container
	for _, c := range s.containers {
		if c.c != nil && c.pod == podID {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// List names the containers of a pod.
func (s *Service) List(podID string) []string {
	cs := s.podContainers(podID)
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.id
	}
	return ids
}

// StopAll stops every container of a pod that has not exited: SIGTERM (a
// paused one is resumed first), then SIGKILL to all its processes at the
// deadline, or at once with a zero timeout. Containers never started are
// killed too. It returns once all have exited, or names those that did not
// within killWait of the SIGKILL.
func (s *Service) StopAll(ctx context.Context, podID string, timeout time.Duration) error {
	var live []*container
	for _, c := range s.podContainers(podID) {
		if !c.init.backendExited() {
			live = append(live, c)
		}
	}
	if len(live) == 0 {
		return nil
	}
	lg := log.G(ctx).WithField("sandbox_id", podID)
	for _, c := range live {
		if pz, ok := c.c.(Pauser); ok && c.init.getStatus() == paused {
			if err := pz.Resume(ctx); err != nil {
				lg.WithError(err).WithField("container_id", c.id).Warn("resuming a paused container to stop it")
			} else {
				c.init.setStatus(running)
			}
		}
		if timeout > 0 && c.init.getStatus() == running {
			_ = c.c.Kill(ctx, syscall.SIGTERM, false)
		}
	}
	if timeout > 0 {
		deadline := time.NewTimer(timeout)
		defer deadline.Stop()
	wait:
		for _, c := range live {
			select {
			case <-c.init.p.Exited():
			case <-deadline.C:
				break wait
			case <-ctx.Done():
				break wait
			}
		}
	}
	var stuck []string
	for _, c := range live {
		if c.init.backendExited() {
			continue
		}
		if err := c.c.Kill(ctx, syscall.SIGKILL, true); err != nil && !errdefs.IsNotFound(err) {
			lg.WithError(err).WithField("container_id", c.id).Warn("SIGKILL")
		}
		select {
		case <-c.init.p.Exited():
		case <-time.After(killWait):
			stuck = append(stuck, c.id)
		}
	}
	if len(stuck) > 0 {
		return fmt.Errorf("pod %s: containers %s did not exit %s after SIGKILL: %w", podID, strings.Join(stuck, ", "), killWait, errdefs.ErrUnavailable)
	}
	return nil
}

// DeleteAll deletes every container of a pod, killing what still runs, and
// publishes their deletion to containerd.
func (s *Service) DeleteAll(ctx context.Context, podID string) error {
	stopErr := s.StopAll(ctx, podID, 0)
	var errs []error
	for _, c := range s.podContainers(podID) {
		cctx := withIDs(ctx, c.id, "")
		// NotFound: a Delete of the container's came first
		if _, _, err := s.deleteProcess(cctx, c, c.init); err != nil && !errdefs.IsNotFound(err) {
			log.G(cctx).WithError(err).Warn("deleting a container of a pod that goes")
			errs = append(errs, fmt.Errorf("container %s: %w", c.id, err))
		}
	}
	return errors.Join(append(errs, stopErr)...)
}

// PodStats sums the metrics of a pod's running containers.
func (s *Service) PodStats(ctx context.Context, podID string) (*anypb.Any, error) {
	var ms []*anypb.Any
	for _, c := range s.podContainers(podID) {
		if c.init.getStatus() == stopped || c.init.getStatus() == created {
			continue
		}
		a, err := c.c.Stats(ctx)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("container %s: %w", c.id, err)
		}
		ms = append(ms, a)
	}
	return cgroups.SumMetrics(ms)
}
