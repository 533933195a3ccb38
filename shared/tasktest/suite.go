package tasktest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/ttrpc"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/shared/controller"
	"github.com/magnetar-runtime/magnetar/shared/events"
	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/sandboxtest"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// Namespace is the containerd namespace the suite's requests carry.
const Namespace = "k8s.io"

// Timeouts: a process that must end ends within waitTimeout; output is
// complete (EOF) within eofTimeout of its exit being reported.
const (
	waitTimeout = 20 * time.Second
	eofTimeout  = 5 * time.Second
)

// SIGKILLed is the exit code of a process killed by SIGKILL.
const SIGKILLed = 128 + uint32(syscall.SIGKILL)

// Suite is what a backend supplies to the suite.
type Suite struct {
	// Sandboxer builds the driver and the backend under test (its New must
	// return a backend) and makes its pods.
	Sandboxer *sandboxtest.Sandboxer
	// Workload runs the canonical programs.
	Workload Workload
	// Leftovers lists what the backend left of containers that are gone
	// while their pods still run, outside the records and mounts the suite
	// checks itself: processes, runtime state, files of its own (nil:
	// nothing more to check). At the end of a case, the Sandboxer's
	// Leftovers is checked too.
	Leftovers func(t *testing.T, dir string) []string
	// Lost is empty when a container's processes outlive the daemon (host
	// processes, a VM): a restarted daemon finds them running. Otherwise
	// it says why they die with the daemon (modules run in it), and a
	// restarted daemon must report every process that ran exited with
	// sandbox.ExitCodeLost.
	Lost string
	// EndProcess ends the process of container id of pod while no daemon
	// runs (state is the stopped daemon's directory, pid what its record
	// says). nil: SIGKILL to pid, a host process of the container's own.
	EndProcess func(t *testing.T, state, pod, id string, pid uint32)
}

type suite struct {
	sb        *sandboxtest.Sandboxer
	w         Workload
	lost      string
	leftovers func(t *testing.T, dir string) []string
	end       func(t *testing.T, state, pod, id string, pid uint32)
}

// Run runs the conformance suite against a task backend.
func Run(t *testing.T, cfg *Suite) {
	if cfg.Sandboxer == nil || cfg.Workload.Bundle == nil || cfg.Workload.Args == nil {
		t.Fatal("tasktest: Suite.Sandboxer and both Workload functions must be set")
	}
	s := &suite{sb: cfg.Sandboxer, w: cfg.Workload, lost: cfg.Lost, leftovers: cfg.Leftovers, end: cfg.EndProcess}
	t.Run("Lifecycle", s.testLifecycle)
	t.Run("ExitCodes", s.testExitCodes)
	t.Run("RunningQueries", s.testQueries)
	t.Run("Exec", s.testExec)
	t.Run("ExecSyncDrained", s.testExecSync)
	t.Run("StdinCloseIO", s.testStdin)
	t.Run("ExecStdinOpenedAfterStart", s.testExecStdin)
	t.Run("KillBeforeStart", s.testKillBeforeStart)
	t.Run("KillAfterExit", s.testKillAfterExit)
	t.Run("DeleteTwice", s.testDeleteTwice)
	t.Run("PodNotRunning", s.testPodNotRunning)
	t.Run("PodStopStopsContainers", s.testPodStop)
	t.Run("PodShutdownDeletesContainers", s.testPodShutdown)
	t.Run("PauseResume", s.testPause)
	t.Run("BadInput", s.testBadInput)
	t.Run("MissingProgram", s.testMissing)
	t.Run("Restart", s.testRestart)
	t.Run("RestartInsideCreate", s.testRestartInsideCreate)
}

// ctx is a request context as containerd sends it: its namespace in the
// ttrpc metadata.
func ctx() context.Context {
	return ttrpc.WithMetadata(context.Background(), ttrpc.MD{"containerd-namespace-ttrpc": []string{Namespace}})
}

// stdioSet says which stdio FIFOs a process gets.
type stdioSet struct{ In, Out, Err bool }

var (
	noIO  = stdioSet{}
	outIO = stdioSet{Out: true, Err: true}
	catIO = stdioSet{In: true, Out: true}
)

// proc is one process of the suite: a container's init (exec "") or an
// exec, with containerd's ends of its FIFOs.
type proc struct {
	id, exec string
	bundle   string
	rootfs   []*types.Mount
	in       *FIFO
	out, err *FIFO
	pid      uint32
}

func (p *proc) String() string {
	if p.exec == "" {
		return p.id
	}
	return p.id + "/" + p.exec
}

func (s *suite) open(t *testing.T) (*sandboxtest.Daemon, sandboxtest.Dirs) {
	t.Helper()
	dirs := sandboxtest.NewDirs(t)
	d := sandboxtest.Open(t, s.sb, dirs.State)
	if d.Tasks == nil {
		t.Fatal("the sandboxer's factory returned no task backend")
	}
	return d, dirs
}

func (s *suite) pod(t *testing.T, d *sandboxtest.Daemon, id string) {
	t.Helper()
	_, err := d.Controller.Create(ctx(), s.sb.PodRequest(t, id))
	sandboxtest.Must(t, "create pod "+id, err)
	_, err = d.Controller.Start(ctx(), &sandboxapi.ControllerStartRequest{SandboxID: id})
	sandboxtest.Must(t, "start pod "+id, err)
}

// noContainers checks, while pods run, that no container is left: no task
// record, no container in the service, no mount below the work dir, nothing
// the backend's Leftovers reports.
func (s *suite) noContainers(t *testing.T, d *sandboxtest.Daemon, dirs sandboxtest.Dirs, what string) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(3 * time.Second); ; {
		left = nil
		ents, _ := os.ReadDir(filepath.Join(dirs.State, "tasks"))
		for _, e := range ents {
			left = append(left, "tasks/"+e.Name())
		}
		for _, id := range d.Tasks.Containers() {
			left = append(left, "container "+id)
		}
		table, err := mount.Self()
		sandboxtest.Must(t, "mount table", err)
		for _, mp := range mount.Below(table, dirs.Work) {
			left = append(left, "mount "+mp)
		}
		if s.leftovers != nil {
			left = append(left, s.leftovers(t, dirs.State)...)
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("%s left: %s", what, strings.Join(left, "; "))
	}
}

func (s *suite) clean(t *testing.T, d *sandboxtest.Daemon, dirs sandboxtest.Dirs, what string) {
	t.Helper()
	if d.Tasks != nil {
		if ids := d.Tasks.Containers(); len(ids) > 0 {
			t.Errorf("%s: the task service still holds %v", what, ids)
		}
	}
	sandboxtest.CheckClean(t, s.sb, what, dirs.State, dirs.Work)
}

// fifos makes the FIFOs of process name (not in the child of a Crash,
// which uses its parent's).
func fifos(t *testing.T, dirs sandboxtest.Dirs, name string, io stdioSet) (in, out, errf *FIFO) {
	t.Helper()
	if sandboxtest.IsChild(t) {
		p := func(ok bool, ext string) *FIFO {
			if !ok {
				return nil
			}
			return &FIFO{Path: filepath.Join(dirs.Work, name+ext), fd: -1}
		}
		return p(io.In, ".in"), p(io.Out, ".out"), p(io.Err, ".err")
	}
	if io.In {
		in = NewInput(t, dirs.Work, name+".in")
	}
	if io.Out {
		out = NewOutput(t, dirs.Work, name+".out")
	}
	if io.Err {
		errf = NewOutput(t, dirs.Work, name+".err")
	}
	return in, out, errf
}

func path(f *FIFO) string {
	if f == nil {
		return ""
	}
	return f.Path
}

// prepare makes the bundle and FIFOs of container id running p in pod.
func (s *suite) prepare(t *testing.T, dirs sandboxtest.Dirs, id, pod string, p Program, io stdioSet) *proc {
	t.Helper()
	c := &proc{id: id}
	if sandboxtest.IsChild(t) {
		c.bundle, c.rootfs = loadBundle(t, dirs.Work, id)
	} else {
		c.bundle, c.rootfs = s.bundleOf(t, dirs.Work, id, pod, p)
	}
	c.in, c.out, c.err = fifos(t, dirs, id, io)
	return c
}

func (c *proc) createRequest() *taskapi.CreateTaskRequest {
	return &taskapi.CreateTaskRequest{ID: c.id, Bundle: c.bundle, Rootfs: c.rootfs,
		Stdin: path(c.in), Stdout: path(c.out), Stderr: path(c.err)}
}

// create creates container id running p in pod.
func (s *suite) create(t *testing.T, d *sandboxtest.Daemon, dirs sandboxtest.Dirs, id, pod string, p Program, io stdioSet) *proc {
	t.Helper()
	c := s.prepare(t, dirs, id, pod, p, io)
	r, err := d.Tasks.Create(ctx(), c.createRequest())
	sandboxtest.Must(t, "create "+id, err)
	c.pid = r.GetPid()
	return c
}

// exec adds exec execID running p to container c.
func (s *suite) exec(t *testing.T, d *sandboxtest.Daemon, dirs sandboxtest.Dirs, c *proc, execID string, p Program, io stdioSet) *proc {
	t.Helper()
	e := &proc{id: c.id, exec: execID, bundle: c.bundle}
	e.in, e.out, e.err = fifos(t, dirs, c.id+"-"+execID, io)
	_, err := d.Tasks.Exec(ctx(), execRequest(t, e, s.execSpec(t, c.bundle, p)))
	sandboxtest.Must(t, "exec "+e.String(), err)
	return e
}

func execRequest(t *testing.T, e *proc, sp *specs.Process) *taskapi.ExecProcessRequest {
	t.Helper()
	b, err := json.Marshal(sp)
	if err != nil {
		t.Fatal(err)
	}
	return &taskapi.ExecProcessRequest{ID: e.id, ExecID: e.exec, Stdin: path(e.in), Stdout: path(e.out), Stderr: path(e.err),
		Spec: &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: b}}
}

func start(t *testing.T, d *sandboxtest.Daemon, p *proc) {
	t.Helper()
	r, err := d.Tasks.Start(ctx(), &taskapi.StartRequest{ID: p.id, ExecID: p.exec})
	sandboxtest.Must(t, "start "+p.String(), err)
	if p.exec == "" && p.pid != 0 && r.GetPid() != p.pid {
		t.Errorf("start %s: pid %d, create said %d", p, r.GetPid(), p.pid)
	}
	p.pid = r.GetPid()
}

// wait waits (bounded) for p's exit and returns its code.
func wait(t *testing.T, d *sandboxtest.Daemon, p *proc) uint32 {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx(), waitTimeout)
	defer cancel()
	r, err := d.Tasks.Wait(wctx, &taskapi.WaitRequest{ID: p.id, ExecID: p.exec})
	sandboxtest.Must(t, "wait "+p.String(), err)
	if r.GetExitedAt() == nil || r.GetExitedAt().AsTime().IsZero() {
		t.Errorf("wait %s: no exited_at: %v", p, r)
	}
	return r.GetExitStatus()
}

func wantExit(t *testing.T, d *sandboxtest.Daemon, p *proc, want ...uint32) uint32 {
	t.Helper()
	code := wait(t, d, p)
	if !slices.Contains(want, code) {
		t.Errorf("%s exited %d, want one of %v", p, code, want)
	}
	return code
}

func kill(t *testing.T, d *sandboxtest.Daemon, p *proc, sig syscall.Signal, all bool) {
	t.Helper()
	_, err := d.Tasks.Kill(ctx(), &taskapi.KillRequest{ID: p.id, ExecID: p.exec, Signal: uint32(sig), All: all})
	sandboxtest.Must(t, fmt.Sprintf("kill %s %v", p, sig), err)
}

func del(t *testing.T, d *sandboxtest.Daemon, p *proc) *taskapi.DeleteResponse {
	t.Helper()
	r, err := d.Tasks.Delete(ctx(), &taskapi.DeleteRequest{ID: p.id, ExecID: p.exec})
	sandboxtest.Must(t, "delete "+p.String(), err)
	return r
}

func state(t *testing.T, d *sandboxtest.Daemon, p *proc) *taskapi.StateResponse {
	t.Helper()
	r, err := d.Tasks.State(ctx(), &taskapi.StateRequest{ID: p.id, ExecID: p.exec})
	sandboxtest.Must(t, "state "+p.String(), err)
	return r
}

func wantStatus(t *testing.T, d *sandboxtest.Daemon, p *proc, st tasktypes.Status) *taskapi.StateResponse {
	t.Helper()
	r := state(t, d, p)
	if r.GetStatus() != st {
		t.Errorf("state %s: %v, want %v (%v)", p, r.GetStatus(), st, r)
	}
	return r
}

// stopDelete kills a running container and deletes it.
func stopDelete(t *testing.T, d *sandboxtest.Daemon, c *proc) {
	t.Helper()
	kill(t, d, c, syscall.SIGKILL, true)
	wait(t, d, c)
	del(t, d, c)
}

func shutdownPod(t *testing.T, d *sandboxtest.Daemon, id string) {
	t.Helper()
	_, err := d.Controller.Shutdown(ctx(), &sandboxapi.ControllerShutdownRequest{SandboxID: id})
	sandboxtest.Must(t, "shutdown pod "+id, err)
}

// drained checks that the whole output of a process is in its FIFO as soon
// as its exit is reported, and that the FIFO then ends.
func drained(t *testing.T, p *proc, f *FIFO, want string) {
	t.Helper()
	if f == nil {
		return
	}
	if got, _ := f.ReadNow(); got != want {
		t.Errorf("%s: %q in %s as its exit was reported, want %q: output not drained before the exit", p, got, filepath.Base(f.Path), want)
	}
	if got := f.WaitEOF(t, eofTimeout); got != want {
		t.Errorf("%s: %s %q, want %q", p, filepath.Base(f.Path), got, want)
	}
}

// Init and exec event sequences in containerd's order.
var (
	initOrder = []string{events.TopicTaskCreate, events.TopicTaskStart, events.TopicTaskExit, events.TopicTaskDelete}
	execOrder = []string{events.TopicTaskExecAdded, events.TopicTaskExecStarted, events.TopicTaskExit}
)

// wantEvents checks the events of process p: exactly want, in order.
func wantEvents(t *testing.T, d *sandboxtest.Daemon, p *proc, want ...string) {
	t.Helper()
	got := d.Events.Of(p.id, p.exec)
	if !slices.Equal(got, want) {
		t.Errorf("events of %s: %v, want %v", p, got, want)
	}
}

// wantOrdered checks that the events of p are in containerd's order, each
// at most once, and include every topic of must.
func wantOrdered(t *testing.T, d *sandboxtest.Daemon, p *proc, must ...string) {
	t.Helper()
	order := initOrder
	if p.exec != "" {
		order = execOrder
	}
	got := d.Events.Of(p.id, p.exec)
	last := -1
	for _, tp := range got {
		i := slices.Index(order, tp)
		if i <= last {
			t.Errorf("events of %s: %v: not in the order %v", p, got, order)
			break
		}
		last = i
	}
	for _, tp := range must {
		if !slices.Contains(got, tp) {
			t.Errorf("events of %s: %v, missing %s", p, got, tp)
		}
	}
}

// exitEvent is the TaskExit published for p (nil if none).
func exitEvent(d *sandboxtest.Daemon, p *proc) *apievents.TaskExit {
	for _, ev := range d.Events.All() {
		if x, ok := ev.Event.(*apievents.TaskExit); ok && sandboxtest.ProcessOf(x) == [2]string{p.id, p.exec} {
			return x
		}
	}
	return nil
}

func (s *suite) testLifecycle(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	c := s.create(t, d, dirs, "c1", "pod1", Program{Kind: Print, Stdout: "hello-out", Stderr: "hello-err", Code: 3}, outIO)
	st := wantStatus(t, d, c, tasktypes.Status_CREATED)
	if st.GetID() != "c1" || st.GetBundle() != c.bundle || st.GetStdout() != c.out.Path || st.GetStderr() != c.err.Path || st.GetPid() != c.pid {
		t.Errorf("state of a created container: %v", st)
	}
	start(t, d, c)
	if code := wait(t, d, c); code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	drained(t, c, c.out, "hello-out\n")
	drained(t, c, c.err, "hello-err\n")
	st = wantStatus(t, d, c, tasktypes.Status_STOPPED)
	if st.GetExitStatus() != 3 || st.GetExitedAt() == nil {
		t.Errorf("state of an exited container: %v", st)
	}
	if r := del(t, d, c); r.GetExitStatus() != 3 || r.GetExitedAt() == nil {
		t.Errorf("delete: %v, want exit 3", r)
	}
	_, err := d.Tasks.State(ctx(), &taskapi.StateRequest{ID: "c1"})
	sandboxtest.WantCode(t, "state after delete", err, codes.NotFound)
	_, err = d.Tasks.Wait(ctx(), &taskapi.WaitRequest{ID: "c1"})
	sandboxtest.WantCode(t, "wait after delete", err, codes.NotFound)
	wantEvents(t, d, c, initOrder...)
	if x := exitEvent(d, c); x == nil || x.ExitStatus != 3 || x.ID != "c1" {
		t.Errorf("TaskExit %v, want exit 3 of c1", x)
	}
	for _, ev := range d.Events.All() {
		if ev.Namespace != Namespace {
			t.Errorf("event %s in namespace %q, want the request's %q", ev.Topic, ev.Namespace, Namespace)
		}
	}
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "lifecycle")
}

func (s *suite) testExitCodes(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	for _, code := range []int{0, 1, 42} {
		c := s.create(t, d, dirs, fmt.Sprintf("c%d", code), "pod1", Program{Kind: Exit, Code: code}, noIO)
		start(t, d, c)
		wantExit(t, d, c, uint32(code))
		if r := del(t, d, c); r.GetExitStatus() != uint32(code) {
			t.Errorf("delete %s: exit %d, want %d", c, r.GetExitStatus(), code)
		}
	}
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "exit codes")
}

func (s *suite) testQueries(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	c := s.create(t, d, dirs, "c1", "pod1", Program{Kind: Sleep}, noIO)
	start(t, d, c)
	wantStatus(t, d, c, tasktypes.Status_RUNNING)
	if r, err := d.Tasks.Pids(ctx(), &taskapi.PidsRequest{ID: "c1"}); err != nil || len(r.GetProcesses()) == 0 {
		t.Errorf("pids: %v %v", r, err)
	}
	if r, err := d.Tasks.Stats(ctx(), &taskapi.StatsRequest{ID: "c1"}); err != nil || r.GetStats() == nil {
		t.Errorf("stats: %v %v", r, err)
	}
	if r, err := d.Tasks.Connect(ctx(), &taskapi.ConnectRequest{ID: "c1"}); err != nil || r.GetVersion() != "3" || r.GetTaskPid() != c.pid {
		t.Errorf("connect: %v %v (create said pid %d)", r, err, c.pid)
	}
	if _, err := d.Tasks.Update(ctx(), &taskapi.UpdateTaskRequest{ID: "c1", Resources: &anypb.Any{Value: []byte("{}")}}); err != nil && status.Code(err) != codes.Unimplemented {
		t.Errorf("an empty update: %v", err)
	}
	if m, err := d.Controller.Metrics(ctx(), &sandboxapi.ControllerMetricsRequest{SandboxID: "pod1"}); err != nil && status.Code(err) != codes.Unimplemented {
		t.Errorf("pod metrics: %v %v", m, err)
	}
	if r, err := d.Controller.Status(ctx(), &sandboxapi.ControllerStatusRequest{SandboxID: "pod1", Verbose: true}); err != nil || r.GetInfo()["containers"] != "1" {
		t.Errorf("verbose pod status: %v %v, want 1 container", r, err)
	}
	stopDelete(t, d, c)
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "queries")
}

func (s *suite) testExec(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	c := s.create(t, d, dirs, "c1", "pod1", Program{Kind: Sleep}, noIO)
	start(t, d, c)

	e := s.exec(t, d, dirs, c, "e1", Program{Kind: Print, Stdout: "exec-out", Stderr: "exec-err", Code: 5}, outIO)
	_, err := d.Tasks.Exec(ctx(), execRequest(t, e, s.execSpec(t, c.bundle, Program{Kind: Exit})))
	sandboxtest.WantCode(t, "exec with an id in use", err, codes.AlreadyExists)
	wantStatus(t, d, e, tasktypes.Status_CREATED)
	start(t, d, e)
	if code := wait(t, d, e); code != 5 {
		t.Errorf("exec exit %d, want 5", code)
	}
	drained(t, e, e.out, "exec-out\n")
	drained(t, e, e.err, "exec-err\n")
	if st := wantStatus(t, d, e, tasktypes.Status_STOPPED); st.GetExitStatus() != 5 || st.GetExecID() != "e1" {
		t.Errorf("state of an exited exec: %v", st)
	}
	wantStatus(t, d, c, tasktypes.Status_RUNNING) // the container runs on
	if r := del(t, d, e); r.GetExitStatus() != 5 {
		t.Errorf("delete exec: %v, want exit 5", r)
	}
	_, err = d.Tasks.Delete(ctx(), &taskapi.DeleteRequest{ID: "c1", ExecID: "e1"})
	sandboxtest.WantCode(t, "second delete of an exec", err, codes.NotFound)
	_, err = d.Tasks.State(ctx(), &taskapi.StateRequest{ID: "c1", ExecID: "e1"})
	sandboxtest.WantCode(t, "state of a deleted exec", err, codes.NotFound)
	wantEvents(t, d, e, execOrder...)
	if x := exitEvent(d, e); x == nil || x.ExitStatus != 5 {
		t.Errorf("exec TaskExit %v, want exit 5", x)
	}

	// an exec id can be used again once deleted
	e = s.exec(t, d, dirs, c, "e1", Program{Kind: Exit, Code: 7}, noIO)
	start(t, d, e)
	wantExit(t, d, e, 7)
	del(t, d, e)

	// a killed exec
	e2 := s.exec(t, d, dirs, c, "e2", Program{Kind: Sleep}, noIO)
	start(t, d, e2)
	wantStatus(t, d, e2, tasktypes.Status_RUNNING)
	_, err = d.Tasks.Delete(ctx(), &taskapi.DeleteRequest{ID: "c1", ExecID: "e2"})
	sandboxtest.WantCode(t, "delete of a running exec", err, codes.FailedPrecondition)
	kill(t, d, e2, syscall.SIGKILL, false)
	wantExit(t, d, e2, SIGKILLed)
	del(t, d, e2)
	wantEvents(t, d, e2, execOrder...)

	// an exec still running when the container ends ends too, and goes
	// with the container
	e3 := s.exec(t, d, dirs, c, "e3", Program{Kind: Sleep}, noIO)
	start(t, d, e3)
	kill(t, d, c, syscall.SIGKILL, false)
	wantExit(t, d, c, SIGKILLed)
	wait(t, d, e3)
	_, err = d.Tasks.Exec(ctx(), execRequest(t, &proc{id: "c1", exec: "e4"}, s.execSpec(t, c.bundle, Program{Kind: Exit})))
	sandboxtest.WantCode(t, "exec in an exited container", err, codes.FailedPrecondition)
	del(t, d, c)
	_, err = d.Tasks.State(ctx(), &taskapi.StateRequest{ID: "c1", ExecID: "e3"})
	sandboxtest.WantCode(t, "state of an exec of a deleted container", err, codes.NotFound)
	wantEvents(t, d, c, initOrder...)
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "exec")
}

// testExecSync: execs that print and exit at once, as crictl exec and
// probes run them (ExecSync): each one's output is whole in its FIFOs by
// the time its exit is reported.
func (s *suite) testExecSync(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	c := s.create(t, d, dirs, "c1", "pod1", Program{Kind: Sleep}, noIO)
	start(t, d, c)
	for i := range 8 {
		id := fmt.Sprintf("sync%d", i)
		e := s.exec(t, d, dirs, c, id, Program{Kind: Print, Stdout: id + "-out", Stderr: id + "-err", Code: i % 3}, outIO)
		start(t, d, e)
		wantExit(t, d, e, uint32(i%3))
		drained(t, e, e.out, id+"-out\n")
		drained(t, e, e.err, id+"-err\n")
		del(t, d, e)
	}
	// and concurrently
	var wg sync.WaitGroup
	for i := range 4 {
		id := fmt.Sprintf("par%d", i)
		e := s.exec(t, d, dirs, c, id, Program{Kind: Print, Stdout: id + "-out", Stderr: id + "-err", Code: i}, outIO)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := d.Tasks.Start(ctx(), &taskapi.StartRequest{ID: "c1", ExecID: id}); err != nil {
				t.Errorf("start %s: %v", e, err)
				return
			}
			wctx, cancel := context.WithTimeout(ctx(), waitTimeout)
			defer cancel()
			r, err := d.Tasks.Wait(wctx, &taskapi.WaitRequest{ID: "c1", ExecID: id})
			if err != nil || r.GetExitStatus() != uint32(i) {
				t.Errorf("wait %s: %v %v, want exit %d", e, r, err, i)
				return
			}
			for _, f := range []*FIFO{e.out, e.err} {
				want := id + "-" + strings.TrimPrefix(filepath.Ext(f.Path), ".") + "\n"
				if got, _ := f.ReadNow(); got != want {
					t.Errorf("%s: %q as its exit was reported, want %q", e, got, want)
				}
			}
		}()
	}
	wg.Wait()
	stopDelete(t, d, c)
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "exec sync")
}

// testStdin: stdin as CRI drives it (attach, exec -i with StdinOnce): it
// writes, closes its end of the FIFO when its input ends, then sends
// CloseIO; the process reads everything, then EOF. And a process that
// exits without reading its stdin is reported exited though containerd
// still holds its end.
func (s *suite) testStdin(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	c := s.create(t, d, dirs, "c1", "pod1", Program{Kind: Cat}, catIO)
	c.in.OpenWrite(t)
	start(t, d, c)
	c.in.Write(t, "ping-1\n")
	c.out.WaitFor(t, "ping-1\n", waitTimeout)
	c.in.Write(t, "ping-2\n")
	c.in.Close()
	_, err := d.Tasks.CloseIO(ctx(), &taskapi.CloseIORequest{ID: "c1", Stdin: true})
	sandboxtest.Must(t, "close-io", err)
	wantExit(t, d, c, 0)
	drained(t, c, c.out, "ping-1\nping-2\n")
	del(t, d, c)

	// CloseIO right after containerd's last write and close: what it wrote
	// is read all the same
	c2 := s.create(t, d, dirs, "c2", "pod1", Program{Kind: Cat}, catIO)
	c2.in.OpenWrite(t)
	start(t, d, c2)
	c2.in.Write(t, "ping-3\nping-4\n")
	c2.in.Close()
	_, err = d.Tasks.CloseIO(ctx(), &taskapi.CloseIORequest{ID: "c2", Stdin: true})
	sandboxtest.Must(t, "close-io", err)
	wantExit(t, d, c2, 0)
	drained(t, c2, c2.out, "ping-3\nping-4\n")
	del(t, d, c2)

	// a process that ignores its stdin and exits: its exit is reported
	// while containerd still holds its end of the stdin FIFO
	c3 := s.create(t, d, dirs, "c3", "pod1", Program{Kind: Print, Stdout: "no-read", Stderr: "no-read-err", Code: 2}, stdioSet{In: true, Out: true, Err: true})
	c3.in.OpenWrite(t)
	start(t, d, c3)
	wantExit(t, d, c3, 2)
	drained(t, c3, c3.out, "no-read\n")
	c3.in.Close()
	del(t, d, c3)
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "stdin")
}

// testExecStdin: `crictl exec -i`: containerd opens its end of the exec's
// stdin FIFO after Task.Start has returned.
func (s *suite) testExecStdin(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	c := s.create(t, d, dirs, "c1", "pod1", Program{Kind: Sleep}, noIO)
	start(t, d, c)
	e := s.exec(t, d, dirs, c, "e1", Program{Kind: Cat}, catIO)
	start(t, d, e)
	time.Sleep(100 * time.Millisecond) // containerd is slow to open its end
	e.in.OpenWrite(t)
	e.in.Write(t, "exec-ping\n")
	e.out.WaitFor(t, "exec-ping\n", waitTimeout)
	e.in.Close()
	_, err := d.Tasks.CloseIO(ctx(), &taskapi.CloseIORequest{ID: "c1", ExecID: "e1", Stdin: true})
	sandboxtest.Must(t, "close-io", err)
	wantExit(t, d, e, 0)
	drained(t, e, e.out, "exec-ping\n")
	del(t, d, e)
	stopDelete(t, d, c)
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "exec stdin")
}

func (s *suite) testKillBeforeStart(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	c := s.create(t, d, dirs, "c1", "pod1", Program{Kind: Sleep}, outIO)
	kill(t, d, c, syscall.SIGKILL, false)
	wantExit(t, d, c, SIGKILLed)
	wantStatus(t, d, c, tasktypes.Status_STOPPED)
	_, err := d.Tasks.Start(ctx(), &taskapi.StartRequest{ID: "c1"})
	sandboxtest.WantCode(t, "start of a killed container", err, codes.FailedPrecondition)
	// containerd's Delete (client Task.Delete, WithProcessKill) waits for
	// the end of the output of a process that has exited before it sends
	// the Delete: nothing may hold it open (a containerd restarted after a
	// cut StartContainer waited there forever, its CRI never up)
	if got := c.out.WaitEOF(t, eofTimeout); got != "" {
		t.Errorf("output of a container killed before start: %q", got)
	}
	del(t, d, c)
	wantOrdered(t, d, c, events.TopicTaskCreate, events.TopicTaskExit, events.TopicTaskDelete)
	if slices.Contains(d.Events.Of("c1", ""), events.TopicTaskStart) {
		t.Errorf("a container killed before start published TaskStart: %v", d.Events.Of("c1", ""))
	}
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "kill before start")
}

func (s *suite) testKillAfterExit(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	c := s.create(t, d, dirs, "c1", "pod1", Program{Kind: Exit}, noIO)
	start(t, d, c)
	wantExit(t, d, c, 0)
	kill(t, d, c, syscall.SIGKILL, false)
	kill(t, d, c, syscall.SIGTERM, true)
	e := s.create(t, d, dirs, "c2", "pod1", Program{Kind: Sleep}, noIO)
	start(t, d, e)
	x := s.exec(t, d, dirs, e, "e1", Program{Kind: Exit}, noIO)
	start(t, d, x)
	wantExit(t, d, x, 0)
	kill(t, d, x, syscall.SIGKILL, false) // an exec that exited
	if r := del(t, d, c); r.GetExitStatus() != 0 {
		t.Errorf("delete: %v", r)
	}
	wantEvents(t, d, c, initOrder...)
	del(t, d, x)
	stopDelete(t, d, e)
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "kill after exit")
}

func (s *suite) testDeleteTwice(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	c := s.create(t, d, dirs, "c1", "pod1", Program{Kind: Sleep}, noIO)
	start(t, d, c)
	_, err := d.Tasks.Delete(ctx(), &taskapi.DeleteRequest{ID: "c1"})
	sandboxtest.WantCode(t, "delete of a running container", err, codes.FailedPrecondition)
	wantStatus(t, d, c, tasktypes.Status_RUNNING)
	stopDelete(t, d, c)
	_, err = d.Tasks.Delete(ctx(), &taskapi.DeleteRequest{ID: "c1"})
	sandboxtest.WantCode(t, "second delete", err, codes.NotFound)
	wantEvents(t, d, c, initOrder...)

	// a container never started is deleted as it is
	c2 := s.create(t, d, dirs, "c2", "pod1", Program{Kind: Sleep}, outIO)
	del(t, d, c2)
	_, err = d.Tasks.Delete(ctx(), &taskapi.DeleteRequest{ID: "c2"})
	sandboxtest.WantCode(t, "second delete of a container never started", err, codes.NotFound)
	wantOrdered(t, d, c2, events.TopicTaskCreate, events.TopicTaskDelete)
	if got := c2.out.WaitEOF(t, eofTimeout); got != "" {
		t.Errorf("output of a container never started: %q", got)
	}
	// the id is free again
	c2 = s.create(t, d, dirs, "c3", "pod1", Program{Kind: Exit, Code: 2}, noIO)
	start(t, d, c2)
	wantExit(t, d, c2, 2)
	del(t, d, c2)
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "delete twice")
}

func (s *suite) testPodNotRunning(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	_, err := d.Controller.Stop(ctx(), &sandboxapi.ControllerStopRequest{SandboxID: "pod1"})
	sandboxtest.Must(t, "stop pod", err)
	_, err = d.Controller.Create(ctx(), s.sb.PodRequest(t, "pod2")) // created, never started
	sandboxtest.Must(t, "create pod2", err)
	before := sandboxtest.Tree(t, dirs.State)
	for _, tc := range []struct {
		what, pod string
		code      codes.Code
	}{
		{"a container of a stopped pod", "pod1", codes.FailedPrecondition},
		{"a container of a pod never started", "pod2", codes.FailedPrecondition},
		{"a container of an unknown pod", "nosuch", codes.NotFound},
		{"a container without a pod", "", codes.InvalidArgument},
	} {
		id := "c-" + tc.pod
		c := s.prepare(t, dirs, id, tc.pod, Program{Kind: Exit}, outIO)
		_, err := d.Tasks.Create(ctx(), c.createRequest())
		sandboxtest.WantCode(t, tc.what, err, tc.code)
		if ch := s.sb.Changes(before, sandboxtest.Tree(t, dirs.State)); len(ch) > 0 {
			t.Errorf("%s changed the state dir: %v", tc.what, ch)
		}
		if len(d.Events.Of(id, "")) > 0 {
			t.Errorf("%s published %v", tc.what, d.Events.Of(id, ""))
		}
	}
	shutdownPod(t, d, "pod1")
	shutdownPod(t, d, "pod2")
	s.clean(t, d, dirs, "containers of pods not running")
}

func (s *suite) testPodStop(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	c1 := s.create(t, d, dirs, "c1", "pod1", Program{Kind: Sleep}, outIO)
	start(t, d, c1)
	c2 := s.create(t, d, dirs, "c2", "pod1", Program{Kind: Sleep}, noIO) // never started
	c3 := s.create(t, d, dirs, "c3", "pod1", Program{Kind: Exit, Code: 4}, noIO)
	start(t, d, c3)
	wantExit(t, d, c3, 4)
	e := s.exec(t, d, dirs, c1, "e1", Program{Kind: Sleep}, noIO)
	start(t, d, e)
	_, err := d.Controller.Stop(ctx(), &sandboxapi.ControllerStopRequest{SandboxID: "pod1", TimeoutSecs: 1})
	sandboxtest.Must(t, "stop pod", err)
	// SIGTERM, then SIGKILL at the deadline (a PID 1 ignores SIGTERM)
	wantExit(t, d, c1, SIGKILLed, 128+uint32(syscall.SIGTERM))
	wait(t, d, c2)
	wait(t, d, e)
	wantExit(t, d, c3, 4)
	for _, c := range []*proc{c1, c2, c3} {
		wantStatus(t, d, c, tasktypes.Status_STOPPED)
	}
	drained(t, c1, c1.out, "")
	sandboxtest.WaitPod(t, d, "pod1")
	for _, c := range []*proc{c1, c2, c3} {
		del(t, d, c)
		wantOrdered(t, d, c, events.TopicTaskCreate, events.TopicTaskExit, events.TopicTaskDelete)
	}
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "pod stop")
}

func (s *suite) testPodShutdown(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	c1 := s.create(t, d, dirs, "c1", "pod1", Program{Kind: Sleep}, outIO)
	start(t, d, c1)
	e := s.exec(t, d, dirs, c1, "e1", Program{Kind: Sleep}, noIO)
	start(t, d, e)
	c2 := s.create(t, d, dirs, "c2", "pod1", Program{Kind: Exit, Code: 4}, noIO)
	start(t, d, c2)
	wantExit(t, d, c2, 4)
	c3 := s.create(t, d, dirs, "c3", "pod1", Program{Kind: Sleep}, noIO) // never started
	// a container of another pod stays
	s.pod(t, d, "pod2")
	other := s.create(t, d, dirs, "other", "pod2", Program{Kind: Sleep}, noIO)
	start(t, d, other)
	shutdownPod(t, d, "pod1")
	for _, c := range []*proc{c1, c2, c3} {
		_, err := d.Tasks.State(ctx(), &taskapi.StateRequest{ID: c.id})
		sandboxtest.WantCode(t, "state of a container of a pod shut down", err, codes.NotFound)
		wantOrdered(t, d, c, events.TopicTaskCreate, events.TopicTaskExit, events.TopicTaskDelete)
	}
	drained(t, c1, c1.out, "")
	wantStatus(t, d, other, tasktypes.Status_RUNNING)
	if ids := d.Tasks.List("pod2"); !slices.Equal(ids, []string{"other"}) {
		t.Errorf("containers of pod2: %v", ids)
	}
	shutdownPod(t, d, "pod2")
	s.clean(t, d, dirs, "pod shutdown")
}

func (s *suite) testPause(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	c := s.create(t, d, dirs, "c1", "pod1", Program{Kind: Sleep}, noIO)
	start(t, d, c)
	_, err := d.Tasks.Pause(ctx(), &taskapi.PauseRequest{ID: "c1"})
	if status.Code(err) == codes.Unimplemented {
		stopDelete(t, d, c)
		shutdownPod(t, d, "pod1")
		s.clean(t, d, dirs, "pause")
		t.Skipf("the backend cannot pause: %v", err)
	}
	sandboxtest.Must(t, "pause", err)
	wantStatus(t, d, c, tasktypes.Status_PAUSED)
	_, err = d.Tasks.Pause(ctx(), &taskapi.PauseRequest{ID: "c1"})
	sandboxtest.WantCode(t, "pause of a paused container", err, codes.FailedPrecondition)
	_, err = d.Tasks.Resume(ctx(), &taskapi.ResumeRequest{ID: "c1"})
	sandboxtest.Must(t, "resume", err)
	wantStatus(t, d, c, tasktypes.Status_RUNNING)
	wantEvents(t, d, c, events.TopicTaskCreate, events.TopicTaskStart, events.TopicTaskPaused, events.TopicTaskResumed)
	// a paused container is stopped with its pod
	_, err = d.Tasks.Pause(ctx(), &taskapi.PauseRequest{ID: "c1"})
	sandboxtest.Must(t, "pause", err)
	_, err = d.Controller.Stop(ctx(), &sandboxapi.ControllerStopRequest{SandboxID: "pod1", TimeoutSecs: 1})
	sandboxtest.Must(t, "stop pod", err)
	wantExit(t, d, c, SIGKILLed, 128+uint32(syscall.SIGTERM))
	del(t, d, c)
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "pause")
}

func (s *suite) testBadInput(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	good := s.prepare(t, dirs, "good", "pod1", Program{Kind: Exit}, outIO)
	noConfig := filepath.Join(dirs.Work, "no-config")
	badConfig := filepath.Join(dirs.Work, "bad-config")
	noProcess := filepath.Join(dirs.Work, "no-process")
	for _, b := range []string{noConfig, badConfig, noProcess} {
		sandboxtest.Must(t, "mkdir", os.Mkdir(b, 0o700))
	}
	sandboxtest.Must(t, "write", os.WriteFile(filepath.Join(badConfig, "config.json"), []byte("{not json"), 0o600))
	sandboxtest.Must(t, "write", os.WriteFile(filepath.Join(noProcess, "config.json"), []byte(`{"ociVersion":"1.2.0"}`), 0o600))
	before := sandboxtest.Tree(t, dirs.State)
	type bad struct {
		what string
		mod  func(r *taskapi.CreateTaskRequest)
		code codes.Code
	}
	cases := []bad{
		{"bundle empty", func(r *taskapi.CreateTaskRequest) { r.Bundle = "" }, codes.InvalidArgument},
		{"bundle relative", func(r *taskapi.CreateTaskRequest) { r.Bundle = "work/bundle" }, codes.InvalidArgument},
		{"bundle not clean", func(r *taskapi.CreateTaskRequest) { r.Bundle = good.bundle + "/../" + filepath.Base(good.bundle) }, codes.InvalidArgument},
		{"bundle missing", func(r *taskapi.CreateTaskRequest) { r.Bundle = filepath.Join(dirs.Work, "nosuch") }, codes.InvalidArgument},
		{"bundle without config.json", func(r *taskapi.CreateTaskRequest) { r.Bundle = noConfig }, codes.InvalidArgument},
		{"config.json not JSON", func(r *taskapi.CreateTaskRequest) { r.Bundle = badConfig }, codes.InvalidArgument},
		{"config.json without process", func(r *taskapi.CreateTaskRequest) { r.Bundle = noProcess }, codes.InvalidArgument},
		{"stdout missing", func(r *taskapi.CreateTaskRequest) { r.Stdout = filepath.Join(dirs.Work, "nosuch", "out") }, codes.InvalidArgument},
		{"stdout relative", func(r *taskapi.CreateTaskRequest) { r.Stdout = "out" }, codes.InvalidArgument},
		{"stdout of an unknown scheme", func(r *taskapi.CreateTaskRequest) { r.Stdout = "tcp://localhost:1" }, codes.InvalidArgument},
		{"stdin missing", func(r *taskapi.CreateTaskRequest) { r.Stdin = filepath.Join(dirs.Work, "nosuch.in") }, codes.InvalidArgument},
		// never Unimplemented from Create: containerd would downgrade its
		// task API client and ask again (shared/task Service.Create)
		{"checkpoint restore", func(r *taskapi.CreateTaskRequest) { r.Checkpoint = filepath.Join(dirs.Work, "cp") }, codes.FailedPrecondition},
	}
	for _, id := range sandboxtest.BadIDs {
		cases = append(cases, bad{fmt.Sprintf("id %q", id), func(r *taskapi.CreateTaskRequest) { r.ID = id }, codes.InvalidArgument})
	}
	for _, tc := range cases {
		r := good.createRequest()
		tc.mod(r)
		_, err := d.Tasks.Create(ctx(), r)
		sandboxtest.WantCode(t, "create: "+tc.what, err, tc.code)
	}
	if len(good.rootfs) > 0 {
		r := good.createRequest()
		r.Rootfs = []*types.Mount{{Type: "nosuchfs", Source: "/nonexistent", Target: ""}}
		if _, err := d.Tasks.Create(ctx(), r); err == nil {
			t.Error("create with a rootfs mount of an unknown type succeeded")
		}
	}
	if ch := s.sb.Changes(before, sandboxtest.Tree(t, dirs.State)); len(ch) > 0 {
		t.Errorf("refused creates changed the state dir: %v", ch)
	}
	s.noContainers(t, d, dirs, "refused creates")
	if evs := d.Events.All(); len(evs) > 0 {
		t.Errorf("refused creates published %v", evs)
	}

	// requests on containers that do not exist
	unknown := []struct {
		what string
		call func(id, exec string) error
	}{
		{"start", func(id, x string) error {
			_, err := d.Tasks.Start(ctx(), &taskapi.StartRequest{ID: id, ExecID: x})
			return err
		}},
		{"state", func(id, x string) error {
			_, err := d.Tasks.State(ctx(), &taskapi.StateRequest{ID: id, ExecID: x})
			return err
		}},
		{"kill", func(id, x string) error {
			_, err := d.Tasks.Kill(ctx(), &taskapi.KillRequest{ID: id, ExecID: x, Signal: 9})
			return err
		}},
		{"wait", func(id, x string) error {
			_, err := d.Tasks.Wait(ctx(), &taskapi.WaitRequest{ID: id, ExecID: x})
			return err
		}},
		{"delete", func(id, x string) error {
			_, err := d.Tasks.Delete(ctx(), &taskapi.DeleteRequest{ID: id, ExecID: x})
			return err
		}},
		{"close-io", func(id, x string) error {
			_, err := d.Tasks.CloseIO(ctx(), &taskapi.CloseIORequest{ID: id, ExecID: x, Stdin: true})
			return err
		}},
	}
	c := s.create(t, d, dirs, "c1", "pod1", Program{Kind: Sleep}, noIO)
	start(t, d, c)
	for _, u := range unknown {
		sandboxtest.WantCode(t, u.what+" of an unknown container", u.call("nosuch", ""), codes.NotFound)
		sandboxtest.WantCode(t, u.what+" of an unknown exec", u.call("c1", "nosuch"), codes.NotFound)
		sandboxtest.WantCode(t, u.what+" with a bad id", u.call("../c1", ""), codes.InvalidArgument)
		sandboxtest.WantCode(t, u.what+" with a bad exec id", u.call("c1", "../e"), codes.InvalidArgument)
	}
	for _, q := range []func() error{
		func() error { _, err := d.Tasks.Pids(ctx(), &taskapi.PidsRequest{ID: "nosuch"}); return err },
		func() error { _, err := d.Tasks.Stats(ctx(), &taskapi.StatsRequest{ID: "nosuch"}); return err },
		func() error { _, err := d.Tasks.Connect(ctx(), &taskapi.ConnectRequest{ID: "nosuch"}); return err },
	} {
		sandboxtest.WantCode(t, "a query on an unknown container", q(), codes.NotFound)
	}
	for _, sig := range []uint32{0, 65} {
		_, err := d.Tasks.Kill(ctx(), &taskapi.KillRequest{ID: "c1", Signal: sig})
		sandboxtest.WantCode(t, fmt.Sprintf("kill with signal %d", sig), err, codes.InvalidArgument)
	}
	spec := s.execSpec(t, c.bundle, Program{Kind: Exit})
	noArgs := *spec
	noArgs.Args = nil
	for _, x := range []struct {
		what string
		req  *taskapi.ExecProcessRequest
	}{
		{"a bad exec id", execRequest(t, &proc{id: "c1", exec: "a/b"}, spec)},
		{"an empty exec id", execRequest(t, &proc{id: "c1"}, spec)},
		{"no spec", &taskapi.ExecProcessRequest{ID: "c1", ExecID: "e1"}},
		{"a spec that is no Process", &taskapi.ExecProcessRequest{ID: "c1", ExecID: "e1", Spec: &anypb.Any{Value: []byte("[1]")}}},
		{"no args", execRequest(t, &proc{id: "c1", exec: "e1"}, &noArgs)},
		{"a missing stdout", execRequest(t, &proc{id: "c1", exec: "e1", out: &FIFO{Path: filepath.Join(dirs.Work, "nosuch", "o")}}, spec)},
	} {
		_, err := d.Tasks.Exec(ctx(), x.req)
		if status.Code(err) != codes.InvalidArgument {
			// a stdio path may be checked when the exec starts instead
			if x.what == "a missing stdout" && err == nil {
				_, err = d.Tasks.Start(ctx(), &taskapi.StartRequest{ID: "c1", ExecID: "e1"})
				if err == nil {
					t.Errorf("exec with %s started", x.what)
				}
				_, _ = d.Tasks.Delete(ctx(), &taskapi.DeleteRequest{ID: "c1", ExecID: "e1"})
				continue
			}
			t.Errorf("exec with %s: %v, want InvalidArgument", x.what, err)
		}
	}
	wantStatus(t, d, c, tasktypes.Status_RUNNING)
	stopDelete(t, d, c)
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "bad input")
}

// testMissing: a program that is not in the rootfs fails Create or Start,
// with an error, and leaves nothing once deleted; the pod runs on.
func (s *suite) testMissing(t *testing.T) {
	d, dirs := s.open(t)
	s.pod(t, d, "pod1")
	c := s.prepare(t, dirs, "c1", "pod1", Program{Kind: Missing}, outIO)
	if _, err := d.Tasks.Create(ctx(), c.createRequest()); err == nil {
		_, err = d.Tasks.Start(ctx(), &taskapi.StartRequest{ID: "c1"})
		if err == nil {
			code := wait(t, d, c)
			t.Errorf("a missing program ran, and exited %d", code)
		} else {
			t.Logf("a missing program: start: %v", err)
		}
		kill(t, d, c, syscall.SIGKILL, true)
		wait(t, d, c)
		// its output ends before the Delete, which containerd sends only
		// then (see testKillBeforeStart)
		c.out.WaitEOF(t, eofTimeout)
		del(t, d, c)
	} else {
		t.Logf("a missing program: create: %v", err)
	}
	s.noContainers(t, d, dirs, "a missing program")
	c2 := s.create(t, d, dirs, "c2", "pod1", Program{Kind: Exit}, noIO)
	start(t, d, c2)
	wantExit(t, d, c2, 0)
	del(t, d, c2)
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "missing program")
}

// testRestart: the daemon crashes (see sandboxtest.Crash) with a container
// running (with an exec), one exited, one created, and one whose process
// ends while no daemon runs; the restarted daemon knows them all.
func (s *suite) testRestart(t *testing.T) {
	dirs := sandboxtest.NewDirs(t)
	var a, b, c, x *proc
	a = s.prepare(t, dirs, "a", "pod1", Program{Kind: Sleep}, stdioSet{Out: true})
	b = s.prepare(t, dirs, "b", "pod1", Program{Kind: Exit, Code: 3}, noIO)
	c = s.prepare(t, dirs, "c", "pod1", Program{Kind: Print, Stdout: "late-out", Stderr: "late-err", Code: 4}, outIO)
	x = s.prepare(t, dirs, "x", "pod1", Program{Kind: Sleep}, noIO)
	sandboxtest.Crash(t, s.sb, dirs, func(t *testing.T, d *sandboxtest.Daemon) {
		s.pod(t, d, "pod1")
		for _, p := range []*proc{a, b, c, x} {
			_, err := d.Tasks.Create(ctx(), p.createRequest())
			sandboxtest.Must(t, "create "+p.id, err)
		}
		start(t, d, a)
		start(t, d, x)
		e := s.exec(t, d, dirs, a, "e1", Program{Kind: Sleep}, noIO)
		start(t, d, e)
		start(t, d, b)
		wantExit(t, d, b, 3)
	})
	a.pid = recordPid(t, dirs, "a")
	// x's process ends while no daemon runs
	if pid := recordPid(t, dirs, "x"); pid > 0 && s.lost == "" {
		if s.end != nil {
			s.end(t, dirs.State, "pod1", "x", pid)
		} else {
			sandboxtest.Must(t, "kill x", syscall.Kill(int(pid), syscall.SIGKILL))
		}
	}
	d := sandboxtest.Open(t, s.sb, dirs.State)
	st, err := d.Controller.Status(ctx(), &sandboxapi.ControllerStatusRequest{SandboxID: "pod1"})
	if err != nil || st.GetState() != controller.StateReady {
		t.Errorf("pod after restart: %v %v", st, err)
	}
	// b exited before the crash: its exit is kept
	if r := wantStatus(t, d, b, tasktypes.Status_STOPPED); r.GetExitStatus() != 3 {
		t.Errorf("state of b, exited before the crash: %v", r)
	}
	wantExit(t, d, b, 3)
	if r := del(t, d, b); r.GetExitStatus() != 3 {
		t.Errorf("delete b: %v, want exit 3", r)
	}
	wantEvents(t, d, b, events.TopicTaskDelete)

	e1 := &proc{id: "a", exec: "e1"}
	if s.lost != "" {
		t.Logf("running processes die with the daemon: %s", s.lost)
		for _, p := range []*proc{a, e1, x, c} {
			wantExit(t, d, p, sandbox.ExitCodeLost)
			wantStatus(t, d, p, tasktypes.Status_STOPPED)
		}
		_, err := d.Tasks.Start(ctx(), &taskapi.StartRequest{ID: "c"})
		sandboxtest.WantCode(t, "start of a created container lost in the restart", err, codes.FailedPrecondition)
		_, err = d.Tasks.Exec(ctx(), execRequest(t, &proc{id: "a", exec: "e2"}, s.execSpec(t, a.bundle, Program{Kind: Exit})))
		sandboxtest.WantCode(t, "exec in a container lost in the restart", err, codes.FailedPrecondition)
		a.out.WaitEOF(t, eofTimeout)
		for _, p := range []*proc{a, x, c} {
			del(t, d, p)
			wantEvents(t, d, p, events.TopicTaskExit, events.TopicTaskDelete)
		}
	} else {
		r := wantStatus(t, d, a, tasktypes.Status_RUNNING)
		if r.GetPid() != a.pid || a.pid == 0 {
			t.Errorf("state of a: pid %d, the record said %d", r.GetPid(), a.pid)
		}
		wantStatus(t, d, e1, tasktypes.Status_RUNNING)
		if r, err := d.Tasks.Pids(ctx(), &taskapi.PidsRequest{ID: "a"}); err != nil || len(r.GetProcesses()) < 2 {
			t.Errorf("pids of a recovered container with an exec: %v %v", r, err)
		}
		// a new exec in a recovered container
		e2 := s.exec(t, d, dirs, a, "e2", Program{Kind: Print, Stdout: "new-out", Stderr: "new-err", Code: 6}, outIO)
		start(t, d, e2)
		wantExit(t, d, e2, 6)
		drained(t, e2, e2.out, "new-out\n")
		del(t, d, e2)
		// whether the restarted daemon learns an exit code depends on it
		// being the process's parent (a subreaper)
		kill(t, d, e1, syscall.SIGKILL, false)
		wantExit(t, d, e1, SIGKILLed, sandbox.ExitCodeLost)
		del(t, d, e1)
		wantEvents(t, d, e1, events.TopicTaskExit)
		kill(t, d, a, syscall.SIGKILL, false)
		wantExit(t, d, a, SIGKILLed, sandbox.ExitCodeLost)
		a.out.WaitEOF(t, eofTimeout)
		del(t, d, a)
		wantEvents(t, d, a, events.TopicTaskExit, events.TopicTaskDelete)
		// x ended while no daemon ran
		wantExit(t, d, x, SIGKILLed, sandbox.ExitCodeLost)
		del(t, d, x)
		wantEvents(t, d, x, events.TopicTaskExit, events.TopicTaskDelete)
		// c, created before the crash, starts now
		wantStatus(t, d, c, tasktypes.Status_CREATED)
		start(t, d, c)
		wantExit(t, d, c, 4, sandbox.ExitCodeLost)
		if got := c.out.WaitEOF(t, eofTimeout); got != "late-out\n" {
			t.Errorf("output of c: %q", got)
		}
		del(t, d, c)
		wantEvents(t, d, c, events.TopicTaskStart, events.TopicTaskExit, events.TopicTaskDelete)
	}
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "containers recovered after a crash")
}

// recordPid is the pid the task record of container id holds.
func recordPid(t *testing.T, dirs sandboxtest.Dirs, id string) uint32 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dirs.State, "tasks", id+".json"))
	sandboxtest.Must(t, "task record", err)
	var rec task.Record
	sandboxtest.Must(t, "task record", json.Unmarshal(b, &rec))
	return rec.Pid
}

// testRestartInsideCreate: the daemon crashed inside Create, after the
// service wrote its intent record and the backend mounted the rootfs: the
// restarted daemon rolls that Create back, and the id is free.
func (s *suite) testRestartInsideCreate(t *testing.T) {
	dirs := sandboxtest.NewDirs(t)
	c := s.prepare(t, dirs, "c1", "pod1", Program{Kind: Exit, Code: 2}, outIO)
	sandboxtest.Crash(t, s.sb, dirs, func(t *testing.T, d *sandboxtest.Daemon) {
		s.pod(t, d, "pod1")
		rec := &task.Record{ID: "c1", Namespace: Namespace, Bundle: c.bundle, Pod: "pod1", Status: task.StatusCreating, CreatedAt: time.Now().UTC()}
		rec.Stdio.Stdout, rec.Stdio.Stderr = c.out.Path, c.err.Path
		b, err := json.Marshal(rec)
		sandboxtest.Must(t, "record", err)
		sandboxtest.Must(t, "record", os.WriteFile(filepath.Join(dirs.State, "tasks", "c1.json"), b, 0o600))
		if len(c.rootfs) > 0 {
			target := filepath.Join(c.bundle, "rootfs")
			sandboxtest.Must(t, "rootfs", os.MkdirAll(target, 0o711))
			sandboxtest.Must(t, "mount rootfs", mount.All(c.rootfs, target))
		}
	})
	d := sandboxtest.Open(t, s.sb, dirs.State)
	_, err := d.Tasks.State(ctx(), &taskapi.StateRequest{ID: "c1"})
	sandboxtest.WantCode(t, "state of a create cut by a crash", err, codes.NotFound)
	s.noContainers(t, d, dirs, "a create cut by a crash, once restarted")
	if _, err := os.Stat(filepath.Join(dirs.State, "tasks", "c1.json")); !os.IsNotExist(err) {
		t.Errorf("the record of a create cut by a crash is still there: %v", err)
	}
	c2 := s.create(t, d, dirs, "c1", "pod1", Program{Kind: Exit, Code: 2}, noIO)
	start(t, d, c2)
	wantExit(t, d, c2, 2)
	del(t, d, c2)
	shutdownPod(t, d, "pod1")
	s.clean(t, d, dirs, "create cut by a crash")
}
