package task

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/shared/events"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
)

// fakePublisher records topics in order.
type fakePublisher struct {
	mu     sync.Mutex
	topics []string
}

func (p *fakePublisher) Publish(ctx context.Context, ns, topic string, ev proto.Message) {
	p.mu.Lock()
	p.topics = append(p.topics, topic)
	p.mu.Unlock()
}

func (p *fakePublisher) list() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.topics, " ")
}

// fakeBackend runs no process: a fakeProc exits when killed.
type fakeBackend struct {
	created int
	// refuse, when set, is what Create answers
	refuse error
	// notify, when set, makes processes that call back on exit
	// (exit.Notifier), as the real backends' do
	notify bool
}

type fakeProc struct {
	mu      sync.Mutex
	pid     uint32
	done    chan struct{}
	once    sync.Once
	code    uint32
	deleted bool
	// hold, when set, keeps Delete until it is closed
	hold chan struct{}
	// notify holds what notifyOn registered before the exit
	notify []func()
}

func newFakeProc(pid uint32) *fakeProc { return &fakeProc{pid: pid, done: make(chan struct{})} }

func (p *fakeProc) Pid() uint32                     { return p.pid }
func (p *fakeProc) Start(ctx context.Context) error { return nil }
func (p *fakeProc) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	p.once.Do(func() {
		p.mu.Lock()
		p.code = 128 + uint32(sig)
		close(p.done)
		fns := p.notify
		p.mu.Unlock()
		for _, f := range fns {
			f()
		}
	})
	return nil
}

func (p *fakeProc) notifyOn(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		go f()
	default:
		p.notify = append(p.notify, f)
	}
}

// notifyProc and notifyContainer call back on exit (exit.Notifier).
type notifyProc struct{ *fakeProc }

func (p notifyProc) Notify(f func()) { p.notifyOn(f) }

type notifyContainer struct{ *fakeContainer }

func (c notifyContainer) Notify(f func()) { c.notifyOn(f) }
func (c notifyContainer) Exec(ctx context.Context, id string, sp *specs.Process, io stdio.Config) (Process, error) {
	return notifyProc{newFakeProc(c.pid + 1)}, nil
}
func (p *fakeProc) Exited() <-chan struct{} { return p.done }
func (p *fakeProc) ExitStatus() (uint32, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.code, time.Now()
}
func (p *fakeProc) ResizePty(ctx context.Context, w, h uint32) error { return nil }
func (p *fakeProc) CloseStdin(ctx context.Context) error             { return nil }
func (p *fakeProc) Delete(ctx context.Context) error {
	if p.hold != nil {
		<-p.hold
	}
	time.Sleep(2 * time.Millisecond) // as a runtime's delete takes a while
	p.mu.Lock()
	p.deleted = true
	p.mu.Unlock()
	return nil
}

type fakeContainer struct{ *fakeProc }

func (c *fakeContainer) Exec(ctx context.Context, id string, sp *specs.Process, io stdio.Config) (Process, error) {
	return newFakeProc(c.pid + 1), nil
}
func (c *fakeContainer) Pids(ctx context.Context) ([]*tasktypes.ProcessInfo, error) {
	return []*tasktypes.ProcessInfo{{Pid: c.pid}}, nil
}
func (c *fakeContainer) Stats(ctx context.Context) (*anypb.Any, error) { return &anypb.Any{}, nil }
func (c *fakeContainer) Update(ctx context.Context, r *specs.LinuxResources, a map[string]string) error {
	return nil
}
func (c *fakeContainer) State() json.RawMessage { return json.RawMessage(`{}`) }

func (b *fakeBackend) Create(ctx context.Context, r *CreateRequest) (Container, error) {
	if b.refuse != nil {
		return nil, b.refuse
	}
	b.created++
	if b.notify {
		return notifyContainer{&fakeContainer{newFakeProc(100)}}, nil
	}
	return &fakeContainer{newFakeProc(100)}, nil
}

func bundle(t *testing.T) string {
	dir := t.TempDir()
	sp := specs.Spec{Process: &specs.Process{Args: []string{"sleep", "1"}}}
	data, _ := json.Marshal(sp)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func code(err error) codes.Code { return grpcstatus.Code(err) }

// Both ways of learning of an exit: a goroutine on Exited, or the
// process calling back (exit.Notifier).
func TestEventOrderAndStates(t *testing.T) {
	t.Run("exited", func(t *testing.T) { testEventOrderAndStates(t, false) })
	t.Run("notify", func(t *testing.T) { testEventOrderAndStates(t, true) })
}

func testEventOrderAndStates(t *testing.T, notify bool) {
	ctx := context.Background()
	pub := &fakePublisher{}
	s, err := New(ctx, t.TempDir(), &fakeBackend{notify: notify}, pub)
	if err != nil {
		t.Fatal(err)
	}
	b := bundle(t)
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: b}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: b}); code(err) != codes.AlreadyExists {
		t.Errorf("duplicate create: %v", err)
	}
	st, _ := s.State(ctx, &taskapi.StateRequest{ID: "c1"})
	if st.Status != tasktypes.Status_CREATED {
		t.Errorf("status %v", st.Status)
	}
	if _, err := s.Start(ctx, &taskapi.StartRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, &taskapi.StartRequest{ID: "c1"}); code(err) != codes.FailedPrecondition {
		t.Errorf("second start: %v", err)
	}
	spec, _ := json.Marshal(specs.Process{Args: []string{"true"}})
	if _, err := s.Exec(ctx, &taskapi.ExecProcessRequest{ID: "c1", ExecID: "e1", Spec: &anypb.Any{Value: spec}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, &taskapi.StartRequest{ID: "c1", ExecID: "e1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, &taskapi.DeleteRequest{ID: "c1"}); code(err) != codes.FailedPrecondition {
		t.Errorf("delete running: %v", err)
	}
	if _, err := s.Kill(ctx, &taskapi.KillRequest{ID: "c1", Signal: 15}); err != nil {
		t.Fatal(err)
	}
	w, err := s.Wait(ctx, &taskapi.WaitRequest{ID: "c1"})
	if err != nil || w.ExitStatus != 143 {
		t.Fatalf("wait %v %v", w, err)
	}
	// kill after exit is fine, as containerd does it
	if _, err := s.Kill(ctx, &taskapi.KillRequest{ID: "c1", Signal: 9}); err != nil {
		t.Errorf("kill after exit: %v", err)
	}
	if _, err := s.Shutdown(ctx, &taskapi.ShutdownRequest{ID: "c1"}); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	d, err := s.Delete(ctx, &taskapi.DeleteRequest{ID: "c1"})
	if err != nil || d.ExitStatus != 143 {
		t.Fatalf("delete %v %v", d, err)
	}
	time.Sleep(20 * time.Millisecond)
	got := pub.list()
	for _, want := range []string{
		"/tasks/create /tasks/start /tasks/exec-added /tasks/exec-started",
		"/tasks/exit",
		"/tasks/delete",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("events %q lack %q", got, want)
		}
	}
	if strings.Index(got, "/tasks/exit") > strings.Index(got, "/tasks/delete") {
		t.Errorf("exit after delete: %s", got)
	}
	if _, err := s.State(ctx, &taskapi.StateRequest{ID: "c1"}); code(err) != codes.NotFound {
		t.Errorf("state after delete: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	be := &fakeBackend{}
	dir := t.TempDir()
	s, _ := New(ctx, dir, be, &fakePublisher{})
	b := bundle(t)
	garbage := t.TempDir()
	os.WriteFile(filepath.Join(garbage, "config.json"), []byte("{not json"), 0o600)
	cases := []struct {
		name  string
		err   error
		code  codes.Code
		field string
	}{}
	add := func(name string, err error, c codes.Code, field string) {
		cases = append(cases, struct {
			name  string
			err   error
			code  codes.Code
			field string
		}{name, err, c, field})
	}
	_, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "", Bundle: b})
	add("empty id", err, codes.InvalidArgument, "id")
	_, err = s.Create(ctx, &taskapi.CreateTaskRequest{ID: "../x", Bundle: b})
	add("dotdot id", err, codes.InvalidArgument, "id")
	_, err = s.Create(ctx, &taskapi.CreateTaskRequest{ID: strings.Repeat("a", 300), Bundle: b})
	add("long id", err, codes.InvalidArgument, "id")
	_, err = s.Create(ctx, &taskapi.CreateTaskRequest{ID: "ok", Bundle: "relative/x"})
	add("relative bundle", err, codes.InvalidArgument, "bundle")
	_, err = s.Create(ctx, &taskapi.CreateTaskRequest{ID: "ok", Bundle: garbage})
	add("garbage config.json", err, codes.InvalidArgument, "config.json")
	_, err = s.Create(ctx, &taskapi.CreateTaskRequest{ID: "ok", Bundle: b, Stdout: "relative"})
	add("relative stdout", err, codes.InvalidArgument, "stdout")
	_, err = s.Create(ctx, &taskapi.CreateTaskRequest{ID: "ok", Bundle: b, Stdout: "ftp:///logs/x"})
	add("unsupported stdio scheme", err, codes.InvalidArgument, "stdout")
	_, err = s.Create(ctx, &taskapi.CreateTaskRequest{ID: "ok", Bundle: b, Checkpoint: "/x"})
	add("checkpoint restore", err, codes.FailedPrecondition, "checkpoint")
	_, err = s.Start(ctx, &taskapi.StartRequest{ID: "never-created"})
	add("start before create", err, codes.NotFound, "never-created")
	_, err = s.Kill(ctx, &taskapi.KillRequest{ID: "nope", Signal: 9})
	add("kill unknown", err, codes.NotFound, "nope")
	_, err = s.Checkpoint(ctx, &taskapi.CheckpointTaskRequest{ID: "x"})
	add("checkpoint", err, codes.Unimplemented, "checkpoint")
	_, err = s.Shutdown(ctx, &taskapi.ShutdownRequest{ID: "../x"})
	add("shutdown dotdot id", err, codes.InvalidArgument, "id")
	_, err = s.Shutdown(ctx, &taskapi.ShutdownRequest{ID: ""})
	add("shutdown empty id", err, codes.InvalidArgument, "id")
	for _, tc := range cases {
		if code(tc.err) != tc.code || !strings.Contains(tc.err.Error(), tc.field) {
			t.Errorf("%s: %v, want %v naming %q", tc.name, tc.err, tc.code, tc.field)
		}
	}
	if be.created != 0 {
		t.Errorf("backend was called %d times for bad requests", be.created)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("records left: %v", left)
	}
	// a real container, then bad exec requests
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c", Bundle: b}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Exec(ctx, &taskapi.ExecProcessRequest{ID: "c", ExecID: "e", Spec: &anypb.Any{Value: []byte(`{"args":["x"]}`)}})
	if code(err) != codes.FailedPrecondition {
		t.Errorf("exec in created container: %v", err)
	}
	s.Start(ctx, &taskapi.StartRequest{ID: "c"})
	_, err = s.Exec(ctx, &taskapi.ExecProcessRequest{ID: "c", ExecID: "e/1", Spec: &anypb.Any{Value: []byte(`{"args":["x"]}`)}})
	if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "exec_id") {
		t.Errorf("bad exec id: %v", err)
	}
	_, err = s.Exec(ctx, &taskapi.ExecProcessRequest{ID: "c", ExecID: "e", Spec: &anypb.Any{Value: []byte(`garbage`)}})
	if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "spec") {
		t.Errorf("garbage exec spec: %v", err)
	}
	_, err = s.Kill(ctx, &taskapi.KillRequest{ID: "c", Signal: 999})
	if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "signal") {
		t.Errorf("bad signal: %v", err)
	}
	_, err = s.Update(ctx, &taskapi.UpdateTaskRequest{ID: "c", Resources: &anypb.Any{Value: []byte("nope")}})
	if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "resources") {
		t.Errorf("garbage resources: %v", err)
	}
}

func TestRecoverWithoutRecoverer(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, _ := New(ctx, dir, &fakeBackend{}, &fakePublisher{})
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c", Bundle: bundle(t)}); err != nil {
		t.Fatal(err)
	}
	s2, _ := New(ctx, dir, &fakeBackend{}, &fakePublisher{})
	if err := s2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if len(s2.Containers()) != 0 {
		t.Error("a backend without Recover cannot keep tasks")
	}
}

// TestLatePersistAfterDelete: an exit watcher persisting its record after
// the container was deleted (a pod shut down while its container exits)
// must not bring the record back: it would be recovered as a ghost.
func TestLatePersistAfterDelete(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := New(ctx, dir, &fakeBackend{}, &fakePublisher{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: bundle(t)}); err != nil {
		t.Fatal(err)
	}
	c, err := s.get("c1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, &taskapi.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	s.persist(c) // the watcher, late
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("records left after delete: %v", names)
	}
}

// Deletes of one process from many callers at once: one deletes it, the
// others find it gone, and one TaskDelete is published (found by
// hack/rpcfuzz: 44 of 50 succeeded).
func TestConcurrentDelete(t *testing.T) {
	ctx := context.Background()
	pub := &fakePublisher{}
	s, _ := New(ctx, t.TempDir(), &fakeBackend{}, pub)
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c", Bundle: bundle(t)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, &taskapi.StartRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Kill(ctx, &taskapi.KillRequest{ID: "c", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Wait(ctx, &taskapi.WaitRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	const n = 50
	errs := make([]error, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			_, errs[i] = s.Delete(ctx, &taskapi.DeleteRequest{ID: "c"})
		}()
	}
	close(gate)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case code(err) != codes.NotFound:
			t.Errorf("a losing Delete: %v, want NotFound", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d Deletes succeeded, want 1", ok)
	}
	if got := strings.Count(pub.list(), events.TopicTaskDelete); got != 1 {
		t.Errorf("%d TaskDelete events, want 1: %s", got, pub.list())
	}
}

// What a backend cannot do for a container is never Unimplemented from
// Create (containerd would downgrade its task API client and ask again,
// losing the reason): FailedPrecondition, the backend's message kept, and
// nothing recorded.
func TestCreateNeverUnimplemented(t *testing.T) {
	ctx := context.Background()
	be := &fakeBackend{refuse: fmt.Errorf("linux.namespaces: joining the pod's cgroup namespace is not supported: %w", errdefs.ErrNotImplemented)}
	dir := t.TempDir()
	s, _ := New(ctx, dir, be, &fakePublisher{})
	_, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c", Bundle: bundle(t)})
	if code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "joining the pod's cgroup namespace") {
		t.Errorf("create refused by the backend: %v, want FailedPrecondition with its message", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("records left: %v", left)
	}
}

// While a container is being deleted, Pids answers NotFound, not the
// backend's failure on a half-deleted container: containerd, reloading its
// tasks after a restart, keeps a task whose Pids fails and cleans up one
// whose Pids is NotFound (chaos-short: a containerd killed while a delete of
// it ran left the task's bundle behind).
func TestPidsWhileDeleting(t *testing.T) {
	ctx := context.Background()
	s, _ := New(ctx, t.TempDir(), &fakeBackend{}, &fakePublisher{})
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c", Bundle: bundle(t)}); err != nil {
		t.Fatal(err)
	}
	c, _ := s.get("c")
	fp := c.c.(*fakeContainer).fakeProc
	if _, err := s.Pids(ctx, &taskapi.PidsRequest{ID: "c"}); err != nil {
		t.Fatalf("pids of a created container: %v", err)
	}
	hold := make(chan struct{})
	fp.hold = hold
	done := make(chan error, 1)
	go func() {
		_, err := s.Delete(ctx, &taskapi.DeleteRequest{ID: "c"})
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !c.init.deleting.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if _, err := s.Pids(ctx, &taskapi.PidsRequest{ID: "c"}); code(err) != codes.NotFound {
		t.Errorf("pids while the container is deleted: %v, want NotFound", err)
	}
	close(hold)
	if err := <-done; err != nil {
		t.Fatalf("delete: %v", err)
	}
}

// Tasks whose processes call back on exit cost no goroutine each while
// they run.
func TestNotifyNoGoroutines(t *testing.T) {
	ctx := context.Background()
	pub := &fakePublisher{}
	s, err := New(ctx, t.TempDir(), &fakeBackend{notify: true}, pub)
	if err != nil {
		t.Fatal(err)
	}
	b := bundle(t)
	before := goruntime.NumGoroutine()
	for i := 0; i < 30; i++ {
		id := fmt.Sprintf("c%d", i)
		if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if n := goruntime.NumGoroutine() - before; n > 5 {
		t.Errorf("%d more goroutines for 30 running tasks, want none per task", n)
	}
	if _, err := s.Kill(ctx, &taskapi.KillRequest{ID: "c3", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if w, err := s.Wait(ctx, &taskapi.WaitRequest{ID: "c3"}); err != nil || w.ExitStatus != 137 {
		t.Fatalf("wait %v %v", w, err)
	}
}

// oomContainer reports OOM kills by a call (task.OOMReporter).
type oomContainer struct {
	*fakeContainer
	mu     sync.Mutex
	report func()
}

func (c *oomContainer) ReportOOM(f func()) {
	c.mu.Lock()
	c.report = f
	c.mu.Unlock()
}

func (c *oomContainer) kill() {
	c.mu.Lock()
	f := c.report
	c.mu.Unlock()
	f()
}

type oomBackend struct{ last *oomContainer }

func (b *oomBackend) Create(ctx context.Context, r *CreateRequest) (Container, error) {
	b.last = &oomContainer{fakeContainer: &fakeContainer{newFakeProc(100)}}
	return b.last, nil
}

// A container that reports OOM kills by a call has each published as
// TaskOOM, and none once it is deleted.
func TestOOMReporter(t *testing.T) {
	ctx := context.Background()
	pub := &fakePublisher{}
	b := &oomBackend{}
	s, err := New(ctx, t.TempDir(), b, pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: bundle(t)}); err != nil {
		t.Fatal(err)
	}
	c := b.last
	c.kill()
	c.kill()
	if _, err := s.Kill(ctx, &taskapi.KillRequest{ID: "c1", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Wait(ctx, &taskapi.WaitRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, &taskapi.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	c.kill()
	if n := strings.Count(pub.list(), "/tasks/oom"); n != 2 {
		t.Fatalf("%d TaskOOM events, want 2 (none after delete): %s", n, pub.list())
	}
}
