package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
)

// fakeDriver is a test double recording what the controller asks of it.
type fakeDriver struct {
	mu        sync.Mutex
	created   map[string]*fakeInstance
	failNext  error
	recovered []string
	// startGate, when set, holds every Start until it is closed or the
	// Start's context ends.
	startGate chan struct{}
	// latch, when set, makes Create's instances latchInstances.
	latch   bool
	latches map[string]*latchInstance
}

// latchInstance exits through an embedded exit.Latch, as the sandboxers'
// pods do: the controller watches it by Notify, not by a goroutine.
type latchInstance struct {
	*fakeInstance
	exit.Latch
}

func (i *latchInstance) Exited() <-chan struct{}         { return i.Latch.Done() }
func (i *latchInstance) ExitStatus() (uint32, time.Time) { return i.Latch.ExitStatus() }

type fakeInstance struct {
	id       string
	exited   chan struct{}
	once     sync.Once
	cleaned  int
	stops    int
	hostname string
	gate     chan struct{}
	log      *callLog
	// stopErr and cleanupErr, when set, fail Stop and Cleanup
	stopErr, cleanupErr error
}

// callLog records, in order, what the controller asked of the instances and
// of the task side.
type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *callLog) add(s string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.calls = append(l.calls, s)
	l.mu.Unlock()
}

func (l *callLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.calls, " ")
}

func (d *fakeDriver) Create(ctx context.Context, s *sandbox.Spec) (sandbox.Instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failNext != nil {
		err := d.failNext
		d.failNext = nil
		return nil, err
	}
	i := &fakeInstance{id: s.ID, exited: make(chan struct{}), hostname: s.Config.GetHostname(), gate: d.startGate}
	d.created[s.ID] = i
	if d.latch {
		li := &latchInstance{fakeInstance: i}
		d.latches[s.ID] = li
		return li, nil
	}
	return i, nil
}

func (d *fakeDriver) Recover(ctx context.Context, st *sandbox.State) (sandbox.Instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.recovered = append(d.recovered, st.ID)
	var h string
	_ = json.Unmarshal(st.Driver, &h)
	i := &fakeInstance{id: st.ID, exited: make(chan struct{}), hostname: h}
	d.created[st.ID] = i
	return i, nil
}

func (i *fakeInstance) Start(ctx context.Context) (sandbox.Endpoint, error) {
	if i.gate != nil {
		select {
		case <-i.gate:
		case <-ctx.Done():
			return sandbox.Endpoint{}, context.Cause(ctx)
		}
	}
	return sandbox.Endpoint{Address: "ttrpc+unix:///x/" + i.id, Version: 3}, nil
}
func (i *fakeInstance) Stop(ctx context.Context, timeout time.Duration) error {
	i.stops++
	i.log.add("stop:" + i.id)
	if i.stopErr != nil {
		return i.stopErr
	}
	i.exit()
	return nil
}
func (i *fakeInstance) exit()                           { i.once.Do(func() { close(i.exited) }) }
func (i *fakeInstance) Exited() <-chan struct{}         { return i.exited }
func (i *fakeInstance) ExitStatus() (uint32, time.Time) { return 137, time.Now() }
func (i *fakeInstance) Cleanup(ctx context.Context) error {
	i.cleaned++
	i.log.add("cleanup:" + i.id)
	return i.cleanupErr
}
func (i *fakeInstance) DriverState() (json.RawMessage, error) { return json.Marshal(i.hostname) }

func newCtrl(t *testing.T, dir string, opts ...Option) (*Controller, *fakeDriver, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &fakeDriver{created: map[string]*fakeInstance{}}
	c, err := New(ctx, dir, d, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	return c, d, cancel
}

func podConfig(t *testing.T, hostname string) *anypb.Any {
	b, err := proto.Marshal(&runtime.PodSandboxConfig{Hostname: hostname})
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: "type.googleapis.com/runtime.v1.PodSandboxConfig", Value: b}
}

func wantCode(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error %v: code %v, want %v", err, status.Code(err), code)
	}
	if field != "" && !strings.Contains(err.Error(), field) {
		t.Fatalf("error %q does not name %q", err, field)
	}
}

func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	c, d, cancel := newCtrl(t, dir)
	defer cancel()
	ctx := context.Background()
	if _, err := c.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "p1", Options: podConfig(t, "h1"), NetnsPath: "/var/run/netns/x"}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "p1"})
	wantCode(t, err, codes.AlreadyExists, "p1")
	if d.created["p1"].hostname != "h1" {
		t.Errorf("driver got hostname %q", d.created["p1"].hostname)
	}
	st, err := c.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "p1"})
	if err != nil || st.State != StateNotReady {
		t.Fatalf("status before start = %v, %v", st, err)
	}
	start, err := c.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "p1"})
	if err != nil || start.Version != 3 || start.Address != "ttrpc+unix:///x/p1" {
		t.Fatalf("start = %v, %v", start, err)
	}
	st, _ = c.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "p1", Verbose: true})
	if st.State != StateReady || st.Address != start.Address || st.Info["phase"] != "running" {
		t.Fatalf("status = %v", st)
	}
	p, err := c.Platform(ctx, &sandboxapi.ControllerPlatformRequest{SandboxID: "p1"})
	if err != nil || p.Platform.OS != "linux" {
		t.Fatalf("platform = %v, %v", p, err)
	}

	// Wait fan-out: three waiters all return after Stop
	var wg sync.WaitGroup
	results := make(chan uint32, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.Wait(ctx, &sandboxapi.ControllerWaitRequest{SandboxID: "p1"})
			if err == nil {
				results <- r.ExitStatus
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := c.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: "p1"}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	n := 0
	for code := range results {
		n++
		if code != 137 {
			t.Errorf("wait exit %d", code)
		}
	}
	if n != 3 {
		t.Fatalf("%d of 3 waiters returned", n)
	}
	if _, err := c.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: "p1"}); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	_, err = c.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "p1"})
	wantCode(t, err, codes.FailedPrecondition, "exited")
	if _, err := c.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: "p1"}); err != nil {
		t.Fatal(err)
	}
	if d.created["p1"].cleaned != 1 {
		t.Errorf("cleanup calls %d", d.created["p1"].cleaned)
	}
	if _, err := c.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: "p1"}); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	_, err = c.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "p1"})
	wantCode(t, err, codes.NotFound, "p1")
	if left, _ := os.ReadDir(filepath.Join(dir, "sandboxes")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "state")); len(left) != 0 {
		t.Errorf("records left behind: %v", left)
	}
}

func TestBadInputLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	c, d, cancel := newCtrl(t, dir)
	defer cancel()
	ctx := context.Background()
	cases := []struct {
		req   *sandboxapi.ControllerCreateRequest
		code  codes.Code
		field string
	}{
		{&sandboxapi.ControllerCreateRequest{SandboxID: ""}, codes.InvalidArgument, "sandbox_id"},
		{&sandboxapi.ControllerCreateRequest{SandboxID: "../etc"}, codes.InvalidArgument, "sandbox_id"},
		{&sandboxapi.ControllerCreateRequest{SandboxID: "a/b"}, codes.InvalidArgument, "sandbox_id"},
		{&sandboxapi.ControllerCreateRequest{SandboxID: strings.Repeat("x", 200)}, codes.InvalidArgument, "sandbox_id"},
		{&sandboxapi.ControllerCreateRequest{SandboxID: "ok", NetnsPath: "relative"}, codes.InvalidArgument, "netns_path"},
		{&sandboxapi.ControllerCreateRequest{SandboxID: "ok", Options: &anypb.Any{TypeUrl: "type.googleapis.com/runtime.v1.PodSandboxConfig", Value: []byte{0xff, 0xff, 0xff}}}, codes.InvalidArgument, "options"},
		{&sandboxapi.ControllerCreateRequest{SandboxID: "ok", Options: &anypb.Any{TypeUrl: "example.com/Garbage", Value: []byte("x")}}, codes.InvalidArgument, "options"},
	}
	for _, tc := range cases {
		_, err := c.Create(ctx, tc.req)
		wantCode(t, err, tc.code, tc.field)
	}
	d.failNext = errors.New("boom: " + errdefs.ErrUnavailable.Error())
	if _, err := c.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "fails"}); err == nil {
		t.Fatal("driver failure not reported")
	}
	for _, sub := range []string{"sandboxes", "state"} {
		if left, _ := os.ReadDir(filepath.Join(dir, sub)); len(left) != 0 {
			t.Errorf("%s left behind: %v", sub, left)
		}
	}
	_, err := c.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "nope"})
	wantCode(t, err, codes.NotFound, "nope")
	_, err = c.Wait(ctx, &sandboxapi.ControllerWaitRequest{SandboxID: "../x"})
	wantCode(t, err, codes.InvalidArgument, "sandbox_id")
	_, err = c.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: "nope"})
	if err != nil {
		t.Errorf("stop of unknown sandbox: %v, want success", err)
	}
	_, err = c.Metrics(ctx, &sandboxapi.ControllerMetricsRequest{SandboxID: "nope"})
	wantCode(t, err, codes.NotFound, "")
	// a sandbox whose driver has no metrics says so
	c.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "m"})
	_, err = c.Metrics(ctx, &sandboxapi.ControllerMetricsRequest{SandboxID: "m"})
	wantCode(t, err, codes.Unimplemented, "metrics")
	_, err = c.Update(ctx, &sandboxapi.ControllerUpdateRequest{SandboxID: "m", Sandbox: &types.Sandbox{Labels: map[string]string{"a": "b"}}, Fields: []string{"labels", "runtime"}})
	wantCode(t, err, codes.Unimplemented, "runtime")
}

func TestRecover(t *testing.T) {
	dir := t.TempDir()
	c, _, cancel := newCtrl(t, dir)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, err := c.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: id, Options: podConfig(t, "host-"+id)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "a"}); err != nil {
		t.Fatal(err)
	}
	cancel() // daemon "killed"

	c2, d2, cancel2 := newCtrl(t, dir)
	defer cancel2()
	if len(d2.recovered) != 2 {
		t.Fatalf("recovered %v", d2.recovered)
	}
	st, err := c2.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "a"})
	if err != nil || st.State != StateReady || st.Address != "ttrpc+unix:///x/a" {
		t.Fatalf("recovered status %v, %v", st, err)
	}
	if d2.created["b"].hostname != "host-b" {
		t.Errorf("driver state not recovered: %q", d2.created["b"].hostname)
	}
	// the recovered sandbox still reports its exit through Wait
	go d2.created["a"].exit()
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if _, err := c2.Wait(wctx, &sandboxapi.ControllerWaitRequest{SandboxID: "a"}); err != nil {
		t.Fatal(err)
	}
	// a corrupt record is dropped, not fatal
	os.WriteFile(filepath.Join(dir, "state", "bad.json"), []byte("{"), 0o600)
	_, _, cancel3 := newCtrl(t, dir)
	cancel3()
}

// TestStepNotFoundIsNotGone: a step of Stop or Shutdown that did not find
// something of the sandbox's (a process, a cgroup) must not answer
// NotFound, which containerd takes for "no such sandbox": it would forget a
// sandbox whose record and directory are still here.
func TestStepNotFoundIsNotGone(t *testing.T) {
	dir := t.TempDir()
	c, d, cancel := newCtrl(t, dir)
	defer cancel()
	ctx := context.Background()
	for _, id := range []string{"s1", "s2"} {
		if _, err := c.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: id}); err != nil {
			t.Fatal(err)
		}
	}
	lost := fmt.Errorf("cgroup /x: %w", errdefs.ErrNotFound)
	d.mu.Lock()
	d.created["s1"].stopErr = lost
	d.created["s2"].cleanupErr = lost
	d.mu.Unlock()

	_, err := c.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: "s1"})
	wantCode(t, err, codes.Internal, "cgroup /x")
	for _, id := range []string{"s1", "s2"} {
		_, err := c.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: id})
		wantCode(t, err, codes.Internal, "cgroup /x")
		if _, err := c.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: id}); err != nil {
			t.Fatalf("status of %s after a failed shutdown: %v", id, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "state", id+".json")); err != nil {
			t.Fatalf("record of %s after a failed shutdown: %v", id, err)
		}
	}
	d.mu.Lock()
	d.created["s1"].stopErr = nil
	d.created["s2"].cleanupErr = nil
	d.mu.Unlock()
	for _, id := range []string{"s1", "s2"} {
		if _, err := c.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: id}); err != nil {
			t.Fatalf("shutdown of %s, retried: %v", id, err)
		}
		_, err := c.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: id})
		wantCode(t, err, codes.NotFound, id)
	}
}

// TestUnstartedGrace: after a restart, a sandbox that never started is shut
// down once the grace has passed (containerd forgot it when the restart cut
// its RunPodSandbox); one that starts within the grace, one that ran and
// one whose Start the restart cut but that containerd still holds a
// container of stay.
func TestUnstartedGrace(t *testing.T) {
	dir := t.TempDir()
	c, _, cancel := newCtrl(t, dir)
	ctx := context.Background()
	for _, id := range []string{"never", "late", "ran"} {
		if _, err := c.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "ran"}); err != nil {
		t.Fatal(err)
	}
	cancel() // the daemon killed

	const grace = 200 * time.Millisecond
	c2, d2, cancel2 := newCtrl(t, dir, WithUnstartedGrace(grace))
	defer cancel2()
	if _, err := c2.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "late"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "never"}); err != nil {
		t.Fatalf("within the grace: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c2.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "never"})
		if status.Code(err) == codes.NotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a sandbox that never started is still there 5 s after a grace of %s: %v", grace, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	d2.mu.Lock()
	cleaned := d2.created["never"].cleaned
	d2.mu.Unlock()
	if cleaned != 1 {
		t.Errorf("the driver cleaned the unstarted sandbox up %d times, want 1", cleaned)
	}
	for _, p := range []string{filepath.Join(dir, "state", "never.json"), filepath.Join(dir, "sandboxes", "never")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left: %v", p, err)
		}
	}
	for _, id := range []string{"late", "ran"} {
		st, err := c2.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: id})
		if err != nil || st.State != StateReady {
			t.Errorf("%s after the grace: %v %v", id, st, err)
		}
	}

	// grace 0: kept
	cancel2()
	if _, err := c2.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "kept"}); err != nil {
		t.Fatal(err)
	}
	c3, _, cancel3 := newCtrl(t, dir, WithUnstartedGrace(0))
	defer cancel3()
	time.Sleep(2 * grace)
	if _, err := c3.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "kept"}); err != nil {
		t.Errorf("unstarted_grace 0 removed a sandbox: %v", err)
	}
}

// Pods whose instances call back on exit (an embedded exit.Latch) are
// watched without a goroutine each; one that exits by itself is recorded
// as stopped with its code, and Wait returns it.
func TestWatchByNotify(t *testing.T) {
	c, d, cancel := newCtrl(t, t.TempDir())
	defer cancel()
	d.latch, d.latches = true, map[string]*latchInstance{}
	ctx := context.Background()
	before := goruntime.NumGoroutine()
	for i := 0; i < 30; i++ {
		id := fmt.Sprintf("p%d", i)
		if _, err := c.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if n := goruntime.NumGoroutine() - before; n > 5 {
		t.Errorf("%d more goroutines for 30 running pods, want none per pod", n)
	}
	d.latches["p7"].Set(3, time.Time{})
	w, err := c.Wait(ctx, &sandboxapi.ControllerWaitRequest{SandboxID: "p7"})
	if err != nil || w.ExitStatus != 3 {
		t.Fatalf("Wait = %v, %v; want exit 3", w, err)
	}
	st, err := c.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "p7"})
	if err != nil || st.State != StateNotReady {
		t.Fatalf("Status after the exit = %v, %v", st, err)
	}
	if st, _ := c.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "p8"}); st.GetState() != StateReady {
		t.Fatalf("another pod's Status = %v", st)
	}
}
