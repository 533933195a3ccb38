package sandboxtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/shared/controller"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
)

// waitTimeout bounds a Wait that must return.
const waitTimeout = 20 * time.Second

type suite struct {
	sb *Sandboxer
}

// Run runs the conformance suite against a sandboxer's driver.
func Run(t *testing.T, sb *Sandboxer) {
	if sb.New == nil || sb.Name == "" {
		t.Fatal("sandboxtest: Sandboxer.Name and Sandboxer.New must be set")
	}
	s := &suite{sb: sb}
	t.Run("Lifecycle", s.testLifecycle)
	t.Run("StopShutdownTwice", s.testTwice)
	t.Run("UnknownID", s.testUnknown)
	t.Run("BadIDs", s.testBadIDs)
	t.Run("BadOptions", s.testBadOptions)
	t.Run("CreateTwice", s.testCreateTwice)
	t.Run("ShutdownNeverStarted", s.testShutdownCreated)
	t.Run("ShutdownWithoutStop", s.testShutdownRunning)
	t.Run("StartAfterStop", s.testStartAfterStop)
	t.Run("WaitHonoursContext", s.testWaitContext)
	t.Run("Concurrent", s.testConcurrent)
	t.Run("PodProcessDies", s.testPodDies)
	t.Run("RestartRunning", s.testRestartRunning)
	t.Run("RestartStopped", s.testRestartStopped)
	t.Run("RestartInsideStart", s.testRestartInsideStart)
	t.Run("RestartInsideCreate", s.testRestartInsideCreate)
}

// WantCode fails t unless err is a gRPC status with code c.
func WantCode(t *testing.T, what string, err error, c codes.Code) {
	t.Helper()
	if status.Code(err) != c {
		t.Errorf("%s: %v (code %v), want %v", what, err, status.Code(err), c)
	}
}

// Must fails t at once on err.
func Must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (s *suite) create(t *testing.T, d *Daemon, id string) {
	t.Helper()
	_, err := d.Controller.Create(context.Background(), s.sb.PodRequest(t, id))
	Must(t, "create "+id, err)
}

// start starts pod id and checks the endpoint it returns.
func (s *suite) start(t *testing.T, d *Daemon, id string) *sandboxapi.ControllerStartResponse {
	t.Helper()
	r, err := d.Controller.Start(context.Background(), &sandboxapi.ControllerStartRequest{SandboxID: id})
	Must(t, "start "+id, err)
	if r.GetSandboxID() != id || !strings.Contains(r.GetAddress(), "://") || r.GetVersion() != 3 || r.GetCreatedAt() == nil {
		t.Errorf("start %s: %v: want its id, a task address, version 3 and created_at", id, r)
	}
	return r
}

// Up creates and starts a pod.
func (s *suite) up(t *testing.T, d *Daemon, id string) *sandboxapi.ControllerStartResponse {
	t.Helper()
	s.create(t, d, id)
	return s.start(t, d, id)
}

func statusOf(t *testing.T, d *Daemon, id string) *sandboxapi.ControllerStatusResponse {
	t.Helper()
	r, err := d.Controller.Status(context.Background(), &sandboxapi.ControllerStatusRequest{SandboxID: id, Verbose: true})
	Must(t, "status "+id, err)
	return r
}

func wantState(t *testing.T, d *Daemon, id, state string) *sandboxapi.ControllerStatusResponse {
	t.Helper()
	r := statusOf(t, d, id)
	if r.GetState() != state {
		t.Errorf("status %s: %s, want %s (%v)", id, r.GetState(), state, r)
	}
	return r
}

// WaitPod waits (bounded) for pod id to exit and returns the response.
func WaitPod(t *testing.T, d *Daemon, id string) *sandboxapi.ControllerWaitResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	r, err := d.Controller.Wait(ctx, &sandboxapi.ControllerWaitRequest{SandboxID: id})
	Must(t, "wait "+id, err)
	if r.GetExitedAt() == nil {
		t.Errorf("wait %s: no exited_at: %v", id, r)
	}
	return r
}

func stop(t *testing.T, d *Daemon, id string) {
	t.Helper()
	_, err := d.Controller.Stop(context.Background(), &sandboxapi.ControllerStopRequest{SandboxID: id, TimeoutSecs: 1})
	Must(t, "stop "+id, err)
}

func shutdown(t *testing.T, d *Daemon, id string) {
	t.Helper()
	_, err := d.Controller.Shutdown(context.Background(), &sandboxapi.ControllerShutdownRequest{SandboxID: id})
	Must(t, "shutdown "+id, err)
}

func (s *suite) testLifecycle(t *testing.T) {
	ctx := context.Background()
	dirs := NewDirs(t)
	d := Open(t, s.sb, dirs.State)
	s.create(t, d, "pod1")
	st := wantState(t, d, "pod1", controller.StateNotReady)
	if st.GetCreatedAt() == nil || st.GetExitedAt() != nil {
		t.Errorf("status of a created pod: %v", st)
	}
	p, err := d.Controller.Platform(ctx, &sandboxapi.ControllerPlatformRequest{SandboxID: "pod1"})
	Must(t, "platform", err)
	if p.GetPlatform().GetOS() != goruntime.GOOS || p.GetPlatform().GetArchitecture() == "" {
		t.Errorf("platform %v", p)
	}
	r := s.start(t, d, "pod1")
	// containerd may retry Start: the same answer
	r2 := s.start(t, d, "pod1")
	if r2.GetAddress() != r.GetAddress() || r2.GetPid() != r.GetPid() {
		t.Errorf("second start: %v, first %v", r2, r)
	}
	st = wantState(t, d, "pod1", controller.StateReady)
	if st.GetAddress() != r.GetAddress() || st.GetVersion() != r.GetVersion() || st.GetPid() != r.GetPid() || st.GetExitedAt() != nil {
		t.Errorf("status %v does not match start %v", st, r)
	}
	waited := make(chan *sandboxapi.ControllerWaitResponse, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		w, err := d.Controller.Wait(wctx, &sandboxapi.ControllerWaitRequest{SandboxID: "pod1"})
		if err != nil {
			t.Errorf("wait: %v", err)
		}
		waited <- w
	}()
	select {
	case w := <-waited:
		t.Fatalf("wait returned before stop: %v", w)
	case <-time.After(100 * time.Millisecond):
	}
	stop(t, d, "pod1")
	if w := <-waited; w.GetExitedAt() == nil {
		t.Errorf("wait after stop: %v", w)
	}
	st = wantState(t, d, "pod1", controller.StateNotReady)
	if st.GetExitedAt() == nil {
		t.Errorf("status of a stopped pod has no exited_at: %v", st)
	}
	WaitPod(t, d, "pod1") // a Wait after the exit returns at once
	shutdown(t, d, "pod1")
	_, err = d.Controller.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "pod1"})
	WantCode(t, "status after shutdown", err, codes.NotFound)
	_, err = d.Controller.Wait(ctx, &sandboxapi.ControllerWaitRequest{SandboxID: "pod1"})
	WantCode(t, "wait after shutdown", err, codes.NotFound)
	CheckClean(t, s.sb, "shutdown", dirs.State)
}

func (s *suite) testTwice(t *testing.T) {
	dirs := NewDirs(t)
	d := Open(t, s.sb, dirs.State)
	s.up(t, d, "pod1")
	stop(t, d, "pod1")
	stop(t, d, "pod1")
	WaitPod(t, d, "pod1")
	shutdown(t, d, "pod1")
	shutdown(t, d, "pod1")
	stop(t, d, "pod1") // gone: stopped already
	CheckClean(t, s.sb, "shutdown twice", dirs.State)
}

func (s *suite) testUnknown(t *testing.T) {
	ctx := context.Background()
	dirs := NewDirs(t)
	d := Open(t, s.sb, dirs.State)
	before := Tree(t, dirs.State)
	_, err := d.Controller.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: "nosuch"})
	Must(t, "stop of an unknown pod (stopped already)", err)
	_, err = d.Controller.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: "nosuch"})
	Must(t, "shutdown of an unknown pod (gone already)", err)
	_, err = d.Controller.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "nosuch"})
	WantCode(t, "status", err, codes.NotFound)
	_, err = d.Controller.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "nosuch"})
	WantCode(t, "start", err, codes.NotFound)
	_, err = d.Controller.Wait(ctx, &sandboxapi.ControllerWaitRequest{SandboxID: "nosuch"})
	WantCode(t, "wait", err, codes.NotFound)
	_, err = d.Controller.Platform(ctx, &sandboxapi.ControllerPlatformRequest{SandboxID: "nosuch"})
	WantCode(t, "platform", err, codes.NotFound)
	_, err = d.Controller.Metrics(ctx, &sandboxapi.ControllerMetricsRequest{SandboxID: "nosuch"})
	WantCode(t, "metrics", err, codes.NotFound)
	if ch := s.sb.Changes(before, Tree(t, dirs.State)); len(ch) > 0 {
		t.Errorf("requests on an unknown pod changed the state dir: %v", ch)
	}
}

// BadIDs are ids that every request must refuse with InvalidArgument.
var BadIDs = []string{"", ".", "..", "a/b", "../x", "a/../../b", "-lead", "a b", "a\x00b", strings.Repeat("a", sandbox.MaxIDLength+1)}

func (s *suite) testBadIDs(t *testing.T) {
	ctx := context.Background()
	dirs := NewDirs(t)
	d := Open(t, s.sb, dirs.State)
	root := filepath.Dir(dirs.State)
	before := Tree(t, root)
	inRoot := *s.sb // Changes below root, not below the state dir
	inRoot.Caches = nil
	for _, c := range s.sb.Caches {
		inRoot.Caches = append(inRoot.Caches, filepath.Join(filepath.Base(dirs.State), c))
	}
	for _, id := range BadIDs {
		req := s.sb.PodRequest(t, "x")
		req.SandboxID = id
		_, err := d.Controller.Create(ctx, req)
		WantCode(t, fmt.Sprintf("create %q", id), err, codes.InvalidArgument)
		_, err = d.Controller.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: id})
		WantCode(t, fmt.Sprintf("start %q", id), err, codes.InvalidArgument)
		_, err = d.Controller.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: id})
		WantCode(t, fmt.Sprintf("status %q", id), err, codes.InvalidArgument)
		_, err = d.Controller.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: id})
		WantCode(t, fmt.Sprintf("stop %q", id), err, codes.InvalidArgument)
		_, err = d.Controller.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: id})
		WantCode(t, fmt.Sprintf("shutdown %q", id), err, codes.InvalidArgument)
		after := Tree(t, root)
		if ch := inRoot.Changes(before, after); len(ch) > 0 {
			t.Errorf("requests with id %q changed %s: %v", id, root, ch)
			before = after
		}
	}
	CheckClean(t, s.sb, "bad ids", dirs.State)
}

func (s *suite) testBadOptions(t *testing.T) {
	ctx := context.Background()
	dirs := NewDirs(t)
	d := Open(t, s.sb, dirs.State)
	for name, mod := range map[string]func(*sandboxapi.ControllerCreateRequest){
		"options of an unknown type": func(r *sandboxapi.ControllerCreateRequest) {
			r.Options = &anypb.Any{TypeUrl: "example.com/Bogus", Value: []byte{1}}
		},
		"PodSandboxConfig not protobuf": func(r *sandboxapi.ControllerCreateRequest) { r.Options.Value = []byte{0xff, 0xff, 0xff} },
		"relative netns_path":           func(r *sandboxapi.ControllerCreateRequest) { r.NetnsPath = "var/run/netns/x" },
	} {
		req := s.sb.PodRequest(t, "bad")
		if req.Options == nil {
			req.Options = PodOptions(t, nil)
		}
		mod(req)
		_, err := d.Controller.Create(ctx, req)
		WantCode(t, name, err, codes.InvalidArgument)
		CheckClean(t, s.sb, name, dirs.State)
	}
}

func (s *suite) testCreateTwice(t *testing.T) {
	ctx := context.Background()
	dirs := NewDirs(t)
	d := Open(t, s.sb, dirs.State)
	s.create(t, d, "pod1")
	_, err := d.Controller.Create(ctx, s.sb.PodRequest(t, "pod1"))
	WantCode(t, "second create", err, codes.AlreadyExists)
	s.start(t, d, "pod1") // the first is intact
	wantState(t, d, "pod1", controller.StateReady)
	shutdown(t, d, "pod1")
	CheckClean(t, s.sb, "create twice", dirs.State)
}

func (s *suite) testShutdownCreated(t *testing.T) {
	dirs := NewDirs(t)
	d := Open(t, s.sb, dirs.State)
	s.create(t, d, "pod1")
	stop(t, d, "pod1") // stop of a pod never started
	WaitPod(t, d, "pod1")
	shutdown(t, d, "pod1")
	s.create(t, d, "pod2")
	shutdown(t, d, "pod2") // no stop at all
	CheckClean(t, s.sb, "shutdown of pods never started", dirs.State)
}

func (s *suite) testShutdownRunning(t *testing.T) {
	ctx := context.Background()
	dirs := NewDirs(t)
	d := Open(t, s.sb, dirs.State)
	s.up(t, d, "pod1")
	waited := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		_, err := d.Controller.Wait(wctx, &sandboxapi.ControllerWaitRequest{SandboxID: "pod1"})
		waited <- err
	}()
	time.Sleep(50 * time.Millisecond)
	shutdown(t, d, "pod1")
	// the waiter learns of the end (an exit, or that the pod is gone)
	if err := <-waited; err != nil && status.Code(err) != codes.NotFound {
		t.Errorf("wait across shutdown: %v", err)
	}
	CheckClean(t, s.sb, "shutdown of a running pod", dirs.State)
}

func (s *suite) testStartAfterStop(t *testing.T) {
	ctx := context.Background()
	dirs := NewDirs(t)
	d := Open(t, s.sb, dirs.State)
	s.up(t, d, "pod1")
	stop(t, d, "pod1")
	_, err := d.Controller.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "pod1"})
	WantCode(t, "start after stop", err, codes.FailedPrecondition)
	shutdown(t, d, "pod1")
	CheckClean(t, s.sb, "start after stop", dirs.State)
}

func (s *suite) testWaitContext(t *testing.T) {
	dirs := NewDirs(t)
	d := Open(t, s.sb, dirs.State)
	s.up(t, d, "pod1")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := d.Controller.Wait(ctx, &sandboxapi.ControllerWaitRequest{SandboxID: "pod1"})
	if c := status.Code(err); c != codes.DeadlineExceeded && c != codes.Canceled {
		t.Errorf("wait past its deadline: %v", err)
	}
	wantState(t, d, "pod1", controller.StateReady)
	shutdown(t, d, "pod1")
	CheckClean(t, s.sb, "wait", dirs.State)
}

func (s *suite) testConcurrent(t *testing.T) {
	dirs := NewDirs(t)
	d := Open(t, s.sb, dirs.State)
	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			id := fmt.Sprintf("pod%d", i)
			if _, err := d.Controller.Create(ctx, s.sb.PodRequest(t, id)); err != nil {
				t.Errorf("create %s: %v", id, err)
				return
			}
			if _, err := d.Controller.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: id}); err != nil {
				t.Errorf("start %s: %v", id, err)
			}
			if st, err := d.Controller.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: id}); err != nil || st.GetState() != controller.StateReady {
				t.Errorf("status %s: %v %v", id, st, err)
			}
			if i%2 == 0 {
				if _, err := d.Controller.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: id}); err != nil {
					t.Errorf("stop %s: %v", id, err)
				}
			}
			if _, err := d.Controller.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: id}); err != nil {
				t.Errorf("shutdown %s: %v", id, err)
			}
		}()
	}
	wg.Wait()
	CheckClean(t, s.sb, "concurrent pods", dirs.State)
}

func (s *suite) testPodDies(t *testing.T) {
	s.sb.skipLacking(t, PodProcess)
	if s.sb.KillPod == nil {
		t.Fatal("Sandboxer.KillPod is nil and Lacks has no reason for PodProcess")
	}
	dirs := NewDirs(t)
	d := Open(t, s.sb, dirs.State)
	s.up(t, d, "pod1")
	s.sb.KillPod(t, d, "pod1")
	WaitPod(t, d, "pod1")
	wantState(t, d, "pod1", controller.StateNotReady)
	_, err := d.Controller.Start(context.Background(), &sandboxapi.ControllerStartRequest{SandboxID: "pod1"})
	WantCode(t, "start of a pod that died", err, codes.FailedPrecondition)
	stop(t, d, "pod1")
	shutdown(t, d, "pod1")
	CheckClean(t, s.sb, "a pod whose process died", dirs.State)
}

func (s *suite) testRestartRunning(t *testing.T) {
	dirs := NewDirs(t)
	_, hasProcess := s.sb.Lacks[PodProcess]
	hasProcess = !hasProcess && s.sb.KillPod != nil
	Crash(t, s.sb, dirs, func(t *testing.T, d *Daemon) {
		s.up(t, d, "pod1")
		s.create(t, d, "pod2") // created, never started
		if hasProcess {
			s.up(t, d, "pod3")
		}
	})
	d := Open(t, s.sb, dirs.State)
	st := wantState(t, d, "pod1", controller.StateReady)
	addr := st.GetAddress()
	if !strings.Contains(addr, "://") || st.GetVersion() != 3 || st.GetExitedAt() != nil {
		t.Errorf("recovered pod: %v", st)
	}
	// Start of a recovered running pod answers as for a retry
	if r := s.start(t, d, "pod1"); r.GetAddress() != addr || r.GetPid() != st.GetPid() {
		t.Errorf("start after restart: %v, status said %v", r, st)
	}
	wantState(t, d, "pod2", controller.StateNotReady)
	s.start(t, d, "pod2")
	wantState(t, d, "pod2", controller.StateReady)
	if hasProcess {
		// the restarted daemon watches the process of a recovered pod
		s.sb.KillPod(t, d, "pod3")
		WaitPod(t, d, "pod3")
		wantState(t, d, "pod3", controller.StateNotReady)
		shutdown(t, d, "pod3")
	}
	stop(t, d, "pod1")
	WaitPod(t, d, "pod1")
	shutdown(t, d, "pod1")
	shutdown(t, d, "pod2")
	CheckClean(t, s.sb, "pods recovered after a crash", dirs.State)
}

func (s *suite) testRestartStopped(t *testing.T) {
	dirs := NewDirs(t)
	Crash(t, s.sb, dirs, func(t *testing.T, d *Daemon) {
		s.up(t, d, "pod1")
		stop(t, d, "pod1")
		WaitPod(t, d, "pod1")
	})
	d := Open(t, s.sb, dirs.State)
	st := wantState(t, d, "pod1", controller.StateNotReady)
	if st.GetExitedAt() == nil {
		t.Errorf("recovered stopped pod has no exited_at: %v", st)
	}
	WaitPod(t, d, "pod1")
	stop(t, d, "pod1")
	shutdown(t, d, "pod1")
	CheckClean(t, s.sb, "a stopped pod recovered after a crash", dirs.State)
}

// testRestartInsideStart: the daemon died inside Start, after the instance
// had started whatever it starts but before its record said so: the record
// is in phase starting, with the driver state of before Start. The
// restarted daemon must stop what that Start began, report the pod exited
// (ExitCodeLost), and shut it down clean.
func (s *suite) testRestartInsideStart(t *testing.T) {
	dirs := NewDirs(t)
	Crash(t, s.sb, dirs, func(t *testing.T, d *Daemon) {
		s.create(t, d, "pod1")
		created := readRecord(t, d.Dir, "pod1")
		s.start(t, d, "pod1")
		st := readRecord(t, d.Dir, "pod1")
		st.Phase = sandbox.PhaseStarting
		st.Driver = created.Driver
		st.Endpoint = sandbox.Endpoint{}
		st.StartedAt = time.Time{}
		writeRecord(t, d.Dir, st)
	})
	d := Open(t, s.sb, dirs.State)
	wantState(t, d, "pod1", controller.StateNotReady)
	if w := WaitPod(t, d, "pod1"); w.GetExitStatus() != sandbox.ExitCodeLost {
		t.Errorf("wait of a pod whose start was cut: exit %d, want %d", w.GetExitStatus(), sandbox.ExitCodeLost)
	}
	shutdown(t, d, "pod1")
	CheckClean(t, s.sb, "a pod whose start was cut by a crash", dirs.State)
}

// testRestartInsideCreate: the daemon died inside Create, before the
// record was written: the sandbox directory has no record. The restarted
// daemon removes it (with every mount below it), and the id can be
// created again.
func (s *suite) testRestartInsideCreate(t *testing.T) {
	dirs := NewDirs(t)
	d := Open(t, s.sb, dirs.State)
	s.create(t, d, "pod1")
	d.Close()
	if err := os.Remove(filepath.Join(dirs.State, "state", "pod1.json")); err != nil {
		t.Fatal(err)
	}
	d = Open(t, s.sb, dirs.State)
	CheckClean(t, s.sb, "a create cut by a restart, once restarted", dirs.State)
	_, err := d.Controller.Status(context.Background(), &sandboxapi.ControllerStatusRequest{SandboxID: "pod1"})
	WantCode(t, "status of a create cut by a restart", err, codes.NotFound)
	s.up(t, d, "pod1")
	shutdown(t, d, "pod1")
	CheckClean(t, s.sb, "a pod created again", dirs.State)
}

// recordPath is where the controller keeps the record of sandbox id.
func recordPath(dir, id string) string { return filepath.Join(dir, "state", id+".json") }

func readRecord(t *testing.T, dir, id string) *sandbox.State {
	t.Helper()
	b, err := os.ReadFile(recordPath(dir, id))
	Must(t, "read record", err)
	var st sandbox.State
	Must(t, "decode record", json.Unmarshal(b, &st))
	return &st
}

func writeRecord(t *testing.T, dir string, st *sandbox.State) {
	t.Helper()
	b, err := json.Marshal(st)
	Must(t, "encode record", err)
	Must(t, "write record", os.WriteFile(recordPath(dir, st.ID), b, 0o600))
}
