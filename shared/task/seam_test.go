package task

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
)

// recBackend is a fake backend that can recover: a recovered process is
// gone (it reports sandbox.ExitCodeLost), as a host process of a restarted
// daemon whose status is unknown. Its containers' execs block in Exec until
// release is closed, when set.
type recBackend struct {
	mu        sync.Mutex
	recovered []*Record
	pods      []sandbox.Instance
	deleted   []string
	release   chan struct{}
	execRec   bool // containers implement ExecRecoverer
	execsRecd []string
}

type recContainer struct {
	*fakeProc
	b  *recBackend
	id string
}

type recExecContainer struct{ *recContainer }

func (c *recExecContainer) RecoverExec(ctx context.Context, r *ExecRecord) (Process, error) {
	c.b.mu.Lock()
	c.b.execsRecd = append(c.b.execsRecd, r.ID)
	c.b.mu.Unlock()
	return newFakeProc(r.Pid), nil // still running
}

func (b *recBackend) wrap(c *recContainer) Container {
	if b.execRec {
		return &recExecContainer{c}
	}
	return c
}

func (b *recBackend) Create(ctx context.Context, r *CreateRequest) (Container, error) {
	b.mu.Lock()
	b.pods = append(b.pods, r.Pod)
	b.mu.Unlock()
	return b.wrap(&recContainer{fakeProc: newFakeProc(100), b: b, id: r.ID}), nil
}

func (b *recBackend) Recover(ctx context.Context, r *Record, pod sandbox.Instance) (Container, error) {
	b.mu.Lock()
	b.recovered = append(b.recovered, r)
	b.mu.Unlock()
	p := newFakeProc(r.Pid)
	p.Kill(ctx, syscall.Signal(sandbox.ExitCodeLost-128), false)
	return b.wrap(&recContainer{fakeProc: p, b: b, id: r.ID}), nil
}

func (c *recContainer) Exec(ctx context.Context, id string, sp *specs.Process, io stdio.Config) (Process, error) {
	if c.b.release != nil {
		<-c.b.release
	}
	return newFakeProc(c.pid + 1), nil
}
func (c *recContainer) Pids(ctx context.Context) ([]*tasktypes.ProcessInfo, error) { return nil, nil }
func (c *recContainer) Stats(ctx context.Context) (*anypb.Any, error) {
	return nil, errdefs.ErrNotFound
}
func (c *recContainer) Update(ctx context.Context, r *specs.LinuxResources, a map[string]string) error {
	return nil
}
func (c *recContainer) State() json.RawMessage { return json.RawMessage(`{"fake":true}`) }
func (c *recContainer) Delete(ctx context.Context) error {
	c.b.mu.Lock()
	c.b.deleted = append(c.b.deleted, c.id)
	c.b.mu.Unlock()
	return c.fakeProc.Delete(ctx)
}

// exitWith makes a fake process exit with code.
func exitWith(c Container, code uint32) {
	p := c.(interface{ proc() *fakeProc }).proc()
	p.once.Do(func() { p.code = code; close(p.done) })
}

func (c *recContainer) proc() *fakeProc { return c.fakeProc }

func execSpec() *anypb.Any {
	b, _ := json.Marshal(specs.Process{Args: []string{"true"}})
	return &anypb.Any{Value: b}
}

// TestExecInFlightIsNotFound races the RPCs that take an exec id against an
// Exec that has not returned yet: each must answer NotFound, none may
// dereference the process that does not exist yet (a nil interface: a
// panic before the fix, in Start and Delete).
func TestExecInFlightIsNotFound(t *testing.T) {
	ctx := context.Background()
	be := &recBackend{release: make(chan struct{})}
	s, _ := New(ctx, t.TempDir(), be, &fakePublisher{})
	b := bundle(t)
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c", Bundle: b}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, &taskapi.StartRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	execDone := make(chan error, 1)
	go func() {
		_, err := s.Exec(ctx, &taskapi.ExecProcessRequest{ID: "c", ExecID: "e", Spec: execSpec()})
		execDone <- err
	}()
	// wait until the exec's id is reserved
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, _ := s.get("c")
		c.mu.Lock()
		_, ok := c.execs["e"]
		c.mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("exec never reserved its id")
		}
		time.Sleep(time.Millisecond)
	}
	calls := map[string]func() error{
		"start":  func() error { _, err := s.Start(ctx, &taskapi.StartRequest{ID: "c", ExecID: "e"}); return err },
		"delete": func() error { _, err := s.Delete(ctx, &taskapi.DeleteRequest{ID: "c", ExecID: "e"}); return err },
		"kill":   func() error { _, err := s.Kill(ctx, &taskapi.KillRequest{ID: "c", ExecID: "e", Signal: 9}); return err },
		"state":  func() error { _, err := s.State(ctx, &taskapi.StateRequest{ID: "c", ExecID: "e"}); return err },
		"wait": func() error {
			_, err := s.Wait(ctx, &taskapi.WaitRequest{ID: "c", ExecID: "e"})
			return err
		},
		"resize": func() error { _, err := s.ResizePty(ctx, &taskapi.ResizePtyRequest{ID: "c", ExecID: "e"}); return err },
		"close-io": func() error {
			_, err := s.CloseIO(ctx, &taskapi.CloseIORequest{ID: "c", ExecID: "e", Stdin: true})
			return err
		},
	}
	var wg sync.WaitGroup
	for name, call := range calls {
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s of an exec being created panicked: %v", name, r)
					}
				}()
				if err := call(); code(err) != codes.NotFound {
					t.Errorf("%s of an exec being created: %v, want NotFound", name, err)
				}
			}()
		}
	}
	wg.Wait()
	close(be.release)
	if err := <-execDone; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, &taskapi.StartRequest{ID: "c", ExecID: "e"}); err != nil {
		t.Fatalf("start once created: %v", err)
	}
}

// TestExitKeptAcrossRestart: a container that exited with 3 before the
// daemon restarted is still reported with 3 (not the backend's "unknown"),
// also after a second restart, and without a second TaskExit.
func TestExitKeptAcrossRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	be := &recBackend{}
	s, _ := New(ctx, dir, be, &fakePublisher{})
	b := bundle(t)
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c", Bundle: b}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, &taskapi.StartRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	c, _ := s.get("c")
	exitWith(c.c, 3)
	if w, err := s.Wait(ctx, &taskapi.WaitRequest{ID: "c"}); err != nil || w.ExitStatus != 3 {
		t.Fatalf("wait: %v %v", w, err)
	}
	for restart := 1; restart <= 2; restart++ {
		pub := &fakePublisher{}
		s2, _ := New(ctx, dir, &recBackend{}, pub)
		if err := s2.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := s2.State(ctx, &taskapi.StateRequest{ID: "c"})
		if err != nil || st.Status != tasktypes.Status_STOPPED || st.ExitStatus != 3 {
			t.Fatalf("restart %d: state %v %v, want stopped with 3", restart, st, err)
		}
		time.Sleep(10 * time.Millisecond)
		if got := pub.list(); got != "" {
			t.Errorf("restart %d: events %q for an exit containerd was told of", restart, got)
		}
	}
}

// TestLostRunningReportedOnce: a container running when the daemon died,
// found gone, is reported exited with the lost code once (TaskExit), and
// with that code after a further restart.
func TestLostRunningReportedOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, _ := New(ctx, dir, &recBackend{}, &fakePublisher{})
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c", Bundle: bundle(t)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, &taskapi.StartRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	pub := &fakePublisher{}
	s2, _ := New(ctx, dir, &recBackend{}, pub)
	if err := s2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if w, err := s2.Wait(ctx, &taskapi.WaitRequest{ID: "c"}); err != nil || w.ExitStatus != sandbox.ExitCodeLost {
		t.Fatalf("wait after restart: %v %v", w, err)
	}
	time.Sleep(10 * time.Millisecond)
	if got := pub.list(); got != "/tasks/exit" {
		t.Errorf("events %q, want one /tasks/exit", got)
	}
	s3, _ := New(ctx, dir, &recBackend{}, &fakePublisher{})
	if err := s3.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := s3.State(ctx, &taskapi.StateRequest{ID: "c"}); err != nil || st.ExitStatus != sandbox.ExitCodeLost {
		t.Fatalf("second restart: %v %v", st, err)
	}
}

// TestExecsAcrossRestart: after a restart, a replayed Wait or Kill on an
// exec finds it: a running exec through ExecRecoverer, an exited one with
// its code, and a running one of a backend that cannot recover execs as
// lost.
func TestExecsAcrossRestart(t *testing.T) {
	for _, canRecover := range []bool{true, false} {
		ctx := context.Background()
		// the first service is not a dead daemon: its exit watchers may
		// still write records while the test ends, so the directory is
		// removed once they are done
		dir, err := os.MkdirTemp("", "execs")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for i := 0; i < 100 && os.RemoveAll(dir) != nil; i++ {
				time.Sleep(10 * time.Millisecond)
			}
		})
		s, _ := New(ctx, dir, &recBackend{}, &fakePublisher{})
		if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c", Bundle: bundle(t)}); err != nil {
			t.Fatal(err)
		}
		s.Start(ctx, &taskapi.StartRequest{ID: "c"})
		for _, id := range []string{"run", "done"} {
			if _, err := s.Exec(ctx, &taskapi.ExecProcessRequest{ID: "c", ExecID: id, Spec: execSpec()}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Start(ctx, &taskapi.StartRequest{ID: "c", ExecID: id}); err != nil {
				t.Fatal(err)
			}
		}
		s.Kill(ctx, &taskapi.KillRequest{ID: "c", ExecID: "done", Signal: 2}) // exits 130
		if w, _ := s.Wait(ctx, &taskapi.WaitRequest{ID: "c", ExecID: "done"}); w.ExitStatus != 130 {
			t.Fatalf("exec exit %d", w.ExitStatus)
		}
		// the restarted daemon's backend: the init is gone, execs as asked
		be := &recBackend{execRec: canRecover}
		s2, _ := New(ctx, dir, be, &fakePublisher{})
		if err := s2.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		if w, err := s2.Wait(ctx, &taskapi.WaitRequest{ID: "c", ExecID: "done"}); err != nil || w.ExitStatus != 130 {
			t.Errorf("recover=%v: exited exec: %v %v", canRecover, w, err)
		}
		if _, err := s2.Kill(ctx, &taskapi.KillRequest{ID: "c", ExecID: "run", Signal: 9}); err != nil {
			t.Errorf("recover=%v: kill of the running exec: %v", canRecover, err)
		}
		w, err := s2.Wait(ctx, &taskapi.WaitRequest{ID: "c", ExecID: "run"})
		want := uint32(sandbox.ExitCodeLost)
		if canRecover {
			want = 137 // killed just now, found by RecoverExec
			if len(be.execsRecd) != 1 || be.execsRecd[0] != "run" {
				t.Errorf("RecoverExec calls %v, want [run]", be.execsRecd)
			}
		}
		if err != nil || w.ExitStatus != want {
			t.Errorf("recover=%v: running exec: %v %v, want %d", canRecover, w, err, want)
		}
	}
}

// TestCreateCutRolledBack: a Create the daemon died in (its intent record,
// no backend state) is handed to the backend to roll back, and forgotten.
func TestCreateCutRolledBack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, _ := New(ctx, dir, &recBackend{}, &fakePublisher{})
	b := bundle(t)
	if err := s.store.Put("half", &Record{ID: "half", Bundle: b, Status: StatusCreating}); err != nil {
		t.Fatal(err)
	}
	be := &recBackend{}
	s2, _ := New(ctx, dir, be, &fakePublisher{})
	if err := s2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if len(be.recovered) != 1 || be.recovered[0].Status != StatusCreating || be.recovered[0].Bundle != b {
		t.Fatalf("recovered %+v", be.recovered)
	}
	if len(be.deleted) != 1 || be.deleted[0] != "half" {
		t.Errorf("deleted %v, want [half]", be.deleted)
	}
	if ids := s2.Containers(); len(ids) != 0 {
		t.Errorf("containers %v after rollback", ids)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("records left: %v", left)
	}
	// the replayed Create works
	if _, err := s2.Create(ctx, &taskapi.CreateTaskRequest{ID: "half", Bundle: b}); err != nil {
		t.Fatalf("create after rollback: %v", err)
	}
}

// fakePods is a controller for the task side.
type fakePods struct {
	mu      sync.Mutex
	pods    map[string]*fakePod
	running map[string]bool
}

type fakePod struct{ exit.Latch }

func (*fakePod) Start(context.Context) (sandbox.Endpoint, error) { return sandbox.Endpoint{}, nil }
func (*fakePod) Stop(context.Context, time.Duration) error       { return nil }
func (*fakePod) Cleanup(context.Context) error                   { return nil }
func (*fakePod) DriverState() (json.RawMessage, error)           { return nil, nil }

func (f *fakePods) Pod(id string) (sandbox.Instance, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[id]
	if !ok {
		return nil, false, errdefs.ErrNotFound
	}
	return p, f.running[id], nil
}

func podBundle(t *testing.T, pod string) string {
	dir := t.TempDir()
	sp := specs.Spec{Process: &specs.Process{Args: []string{"sleep", "1"}}}
	if pod != "" {
		sp.Annotations = map[string]string{sandbox.PodAnnotation: pod}
	}
	data, _ := json.Marshal(sp)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPods: containers are created in their pod (resolved once, handed to
// the backend), and stopped, deleted and counted per pod.
func TestPods(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pods := &fakePods{pods: map[string]*fakePod{"p1": {}, "p2": {}, "idle": {}}, running: map[string]bool{"p1": true, "p2": true}}
	be := &recBackend{}
	pub := &fakePublisher{}
	s, _ := New(ctx, dir, be, pub, WithPods(pods, "magnetar-test"))
	for _, tc := range []struct {
		name, pod string
		code      codes.Code
	}{{"no annotation", "", codes.InvalidArgument}, {"unknown pod", "nope", codes.NotFound},
		{"pod not running", "idle", codes.FailedPrecondition}, {"bad pod id", "../x", codes.InvalidArgument}} {
		if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "x", Bundle: podBundle(t, tc.pod)}); code(err) != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
		}
	}
	if len(be.pods) != 0 {
		t.Fatalf("backend called for bad pods")
	}
	for _, c := range []struct{ id, pod string }{{"a", "p1"}, {"b", "p1"}, {"c", "p2"}} {
		if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: c.id, Bundle: podBundle(t, c.pod)}); err != nil {
			t.Fatal(err)
		}
	}
	if be.pods[0] != pods.pods["p1"] || be.pods[2] != pods.pods["p2"] {
		t.Errorf("backend got pods %v", be.pods)
	}
	s.Start(ctx, &taskapi.StartRequest{ID: "a"})
	s.Start(ctx, &taskapi.StartRequest{ID: "c"})
	if got := s.List("p1"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("List(p1) = %v", got)
	}
	// b never started: killed too
	if err := s.StopAll(ctx, "p1", time.Second); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if w, err := s.Wait(ctx, &taskapi.WaitRequest{ID: id}); err != nil || w.ExitStatus == 0 {
			t.Errorf("%s after StopAll: %v %v", id, w, err)
		}
	}
	if st, _ := s.State(ctx, &taskapi.StateRequest{ID: "c"}); st.Status != tasktypes.Status_RUNNING {
		t.Errorf("another pod's container was stopped: %v", st.Status)
	}
	if err := s.DeleteAll(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	if got := s.List("p1"); len(got) != 0 {
		t.Errorf("List(p1) after DeleteAll = %v", got)
	}
	if got := s.Containers(); len(got) != 1 || got[0] != "c" {
		t.Errorf("containers %v", got)
	}
	// a restart: a container whose pod is gone is deleted
	delete(pods.pods, "p2")
	be2 := &recBackend{}
	s2, _ := New(ctx, dir, be2, &fakePublisher{}, WithPods(pods, "magnetar-test"))
	if err := s2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s2.Containers(); len(got) != 0 || len(be2.deleted) != 1 {
		t.Errorf("orphan of a gone pod: containers %v, deleted %v", got, be2.deleted)
	}
}
