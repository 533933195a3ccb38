package controller

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
)

// fakeContainers is the task side: it records what the controller asks.
type fakeContainers struct {
	log *callLog
	n   int
}

func (f *fakeContainers) StopAll(ctx context.Context, pod string, timeout time.Duration) error {
	f.log.add("stop-containers:" + pod + ":" + timeout.String())
	return nil
}
func (f *fakeContainers) DeleteAll(ctx context.Context, pod string) error {
	f.log.add("delete-containers:" + pod)
	return nil
}
func (f *fakeContainers) PodStats(ctx context.Context, pod string) (*anypb.Any, error) {
	f.log.add("stats:" + pod)
	return &anypb.Any{TypeUrl: "x"}, nil
}
func (f *fakeContainers) List(pod string) []string {
	out := make([]string, f.n)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}

// TestStartRunsUnlocked: while Instance.Start runs (a VM boots), Status,
// Platform and Metrics answer; Status says the sandbox is starting; a Stop
// cancels the Start, which then fails, and the sandbox ends stopped.
func TestStartRunsUnlocked(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &fakeDriver{created: map[string]*fakeInstance{}, startGate: make(chan struct{})}
	c, err := New(ctx, dir, d)
	if err != nil {
		t.Fatal(err)
	}
	c.SetContainers(&fakeContainers{log: &callLog{}})
	if _, err := c.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "p1"}); err != nil {
		t.Fatal(err)
	}
	startErr := make(chan error, 1)
	go func() {
		_, err := c.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "p1"})
		startErr <- err
	}()
	var st *sandboxapi.ControllerStatusResponse
	for deadline := time.Now().Add(5 * time.Second); ; {
		sctx, scancel := context.WithTimeout(ctx, time.Second)
		st, err = c.Status(sctx, &sandboxapi.ControllerStatusRequest{SandboxID: "p1", Verbose: true})
		scancel()
		if err != nil {
			t.Fatalf("status while starting: %v", err)
		}
		if st.Info["phase"] == string(sandbox.PhaseStarting) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never saw phase starting: %v", st.Info)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st.State != StateNotReady {
		t.Errorf("a starting sandbox is %s", st.State)
	}
	if _, err := c.Platform(ctx, &sandboxapi.ControllerPlatformRequest{SandboxID: "p1"}); err != nil {
		t.Errorf("platform while starting: %v", err)
	}
	if _, err := c.Metrics(ctx, &sandboxapi.ControllerMetricsRequest{SandboxID: "p1"}); err != nil {
		t.Errorf("metrics while starting: %v", err)
	}
	if _, err := c.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: "p1"}); err != nil {
		t.Fatalf("stop while starting: %v", err)
	}
	select {
	case err := <-startErr:
		wantCode(t, err, codes.Aborted, "stopped while it started")
	case <-time.After(5 * time.Second):
		t.Fatal("start did not end after stop")
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if _, err := c.Wait(wctx, &sandboxapi.ControllerWaitRequest{SandboxID: "p1"}); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if _, err := c.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "p1"}); err == nil {
		t.Error("start after stop succeeded")
	}
	if _, err := c.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: "p1"}); err != nil {
		t.Fatal(err)
	}
}

// TestRecoverStartCut: a record left in phase starting (the daemon died
// inside Start) is stopped through the driver at recovery and reported
// exited.
func TestRecoverStartCut(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	c, _, cancel := newCtrl(t, dir)
	if _, err := c.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "p1"}); err != nil {
		t.Fatal(err)
	}
	// what a daemon killed inside Instance.Start leaves
	var st sandbox.State
	if err := c.store.Get("p1", &st); err != nil {
		t.Fatal(err)
	}
	st.Phase = sandbox.PhaseStarting
	if err := c.store.Put("p1", &st); err != nil {
		t.Fatal(err)
	}
	cancel()
	c2, d2, cancel2 := newCtrl(t, dir)
	defer cancel2()
	if d2.created["p1"] == nil || d2.created["p1"].stops != 1 {
		t.Fatalf("the cut start was not stopped: %+v", d2.created["p1"])
	}
	s, err := c2.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "p1", Verbose: true})
	if err != nil || s.State != StateNotReady || s.Info["phase"] != string(sandbox.PhaseStopped) {
		t.Fatalf("status %v %v", s, err)
	}
	w, err := c2.Wait(ctx, &sandboxapi.ControllerWaitRequest{SandboxID: "p1"})
	if err != nil || w.ExitStatus != sandbox.ExitCodeLost {
		t.Fatalf("wait %v %v", w, err)
	}
	if _, err := c2.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: "p1"}); err != nil {
		t.Fatal(err)
	}
}

// TestRecoverSweepsCreateCut: the directory of a Create the daemon died in
// (no record yet), mounts included, is removed at the next start, and the
// id can be created again.
func TestRecoverSweepsCreateCut(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	c, _, cancel := newCtrl(t, dir)
	cancel()
	half := filepath.Join(dir, "sandboxes", "p1")
	if err := os.MkdirAll(filepath.Join(half, "ns"), 0o700); err != nil {
		t.Fatal(err)
	}
	mounted := false
	if os.Geteuid() == 0 {
		if err := unix.Mount("tmpfs", filepath.Join(half, "ns"), "tmpfs", 0, ""); err == nil {
			mounted = true
			t.Cleanup(func() { _ = mount.UnmountAll(filepath.Join(half, "ns")) })
		}
	}
	_ = c
	c2, _, cancel2 := newCtrl(t, dir)
	defer cancel2()
	if _, err := os.Stat(half); !os.IsNotExist(err) {
		t.Fatalf("half-created sandbox dir still there (mounted: %v): %v", mounted, err)
	}
	if tab, _ := mount.Self(); len(mount.Below(tab, half)) > 0 {
		t.Fatalf("mounts left below %s", half)
	}
	if _, err := c2.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "p1"}); err != nil {
		t.Fatalf("create again: %v", err)
	}
}

// TestContainersMeetPods: Stop stops the pod's containers before the
// instance (with the configured grace when the request gives none),
// Shutdown deletes them before Cleanup, Metrics sums them for an instance
// that reports none, verbose Status counts them, and Pod resolves them.
func TestContainersMeetPods(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := &callLog{}
	d := &fakeDriver{created: map[string]*fakeInstance{}}
	c, err := New(ctx, dir, d, WithContainers(&fakeContainers{log: log, n: 2}), WithStopTimeout(7*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "p1"}); err != nil {
		t.Fatal(err)
	}
	d.created["p1"].log = log
	if _, ok, err := c.Pod("p1"); err != nil || ok {
		t.Errorf("Pod before start: running %v, %v", ok, err)
	}
	if _, err := c.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "p1"}); err != nil {
		t.Fatal(err)
	}
	if inst, ok, err := c.Pod("p1"); err != nil || !ok || inst != d.created["p1"] {
		t.Errorf("Pod after start: %v %v %v", inst, ok, err)
	}
	if _, _, err := c.Pod("nope"); err == nil {
		t.Error("Pod of an unknown sandbox")
	}
	m, err := c.Metrics(ctx, &sandboxapi.ControllerMetricsRequest{SandboxID: "p1"})
	if err != nil || m.Metrics.Data.TypeUrl != "x" || m.Metrics.ID != "p1" {
		t.Fatalf("metrics %v %v", m, err)
	}
	st, _ := c.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "p1", Verbose: true})
	if st.Info["containers"] != "2" {
		t.Errorf("status info %v", st.Info)
	}
	if _, err := c.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: "p1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: "p1"}); err != nil {
		t.Fatal(err)
	}
	want := "stats:p1 stop-containers:p1:7s stop:p1 stop-containers:p1:0s delete-containers:p1 cleanup:p1"
	if got := log.String(); got != want {
		t.Errorf("calls\n got %s\nwant %s", got, want)
	}
}
