package sandboxtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/shared/controller"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// Factory builds a sandboxer's driver and task backend (nil when the
// sandboxer serves no Task API itself) for env, as its
// daemon.Sandboxer.Build does. Everything it needs must derive from env.Dir
// (the configuration's dir): the suite calls it again on the same directory
// for the restarted daemon, possibly in another process (Crash). A
// failure fails t.
type Factory func(t *testing.T, env *daemon.Env) (sandbox.Driver, task.Backend)

// Capability names a behaviour that some sandboxers lack; a case that
// needs one a sandboxer lacks is skipped with the reason given in
// Sandboxer.Lacks.
type Capability string

const (
	// PodProcess: a pod has a process of its own (a pod init, a VMM) whose
	// death ends the pod; KillPod kills it.
	PodProcess Capability = "pod-process"
)

// Sandboxer is what an implementation supplies to the suites.
type Sandboxer struct {
	// Name is the sandboxer's short name (daemon.Sandboxer.Name): the
	// runtime handler of its containers is "magnetar-" + Name.
	Name string
	// New builds the driver and backend.
	New Factory
	// Pod returns the Controller.Create request containerd's CRI would send
	// for a minimal pod: the sandboxer name, netns and options that this
	// sandboxer needs. Nil: {SandboxID: id, Sandboxer: "magnetar-" + Name}
	// with an empty PodSandboxConfig.
	Pod func(t *testing.T, id string) *sandboxapi.ControllerCreateRequest
	// KillPod kills the process of pod id from outside the daemon, as the
	// OOM killer or an operator would (nil: the sandboxer lacks
	// PodProcess, and Lacks says why).
	KillPod func(t *testing.T, d *Daemon, id string)
	// Leftovers lists what the sandboxer left of its pods and containers
	// outside the state directory's records and mounts, which the suite
	// checks itself: processes, runtime state, files of its own (nil:
	// nothing to check).
	Leftovers func(t *testing.T, dir string) []string
	// Lacks maps the capabilities the sandboxer lacks to the reason.
	Lacks map[Capability]string
	// Caches are the paths, relative to the state directory, where the
	// sandboxer keeps caches that any request may fill (compiled modules,
	// images): what appears there is no leftover.
	Caches []string
}

// Handler is the sandboxer's runtime handler ("magnetar-" + Name): the
// sandboxer name containerd sends and the task service's name in messages.
func (sb *Sandboxer) Handler() string { return "magnetar-" + sb.Name }

// PodRequest is the Create request of a minimal pod with that id.
func (sb *Sandboxer) PodRequest(t *testing.T, id string) *sandboxapi.ControllerCreateRequest {
	t.Helper()
	if sb.Pod != nil {
		return sb.Pod(t, id)
	}
	return &sandboxapi.ControllerCreateRequest{SandboxID: id, Sandboxer: sb.Handler(), Options: PodOptions(t, &runtime.PodSandboxConfig{})}
}

// PodOptions wraps a CRI pod configuration as containerd sends it in
// ControllerCreateRequest.Options.
func PodOptions(t *testing.T, c *runtime.PodSandboxConfig) *anypb.Any {
	t.Helper()
	b, err := proto.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: "type.googleapis.com/runtime.v1.PodSandboxConfig", Value: b}
}

// skipLacking skips t when the sandboxer lacks c.
func (sb *Sandboxer) skipLacking(t *testing.T, c Capability) {
	t.Helper()
	if why, ok := sb.Lacks[c]; ok {
		t.Skipf("%s: lacks %s: %s", sb.Name, c, why)
	}
}

// Daemon is one run of a sandboxer's daemon: its parts joined as the daemon
// joins them, over one state directory.
type Daemon struct {
	// Dir is the state directory (the configuration's dir).
	Dir        string
	Env        *daemon.Env
	Controller *controller.Controller
	// Tasks is nil for a sandboxer without a task backend.
	Tasks *task.Service
	// Events records what the parts published.
	Events *Events
	stop   context.CancelFunc
	closed atomic.Bool
}

// Open starts a daemon on dir: it builds the sandboxer's parts with
// daemon.NewParts and recovers what dir holds, as the daemon does before
// it serves. Like the daemon, the test process becomes a child subreaper,
// so that the container processes a crashed daemon leaves are re-parented
// to it. The daemon's lifetime ends with the test (Close ends it earlier).
func Open(t *testing.T, sb *Sandboxer, dir string) *Daemon {
	t.Helper()
	subreaper(t)
	life, stop := context.WithCancel(context.Background())
	life = log.WithLogger(life, log.G(life).WithField("sandboxer", sb.Name))
	t.Cleanup(stop)
	ev := &Events{}
	env := &daemon.Env{Life: life, Name: sb.Name, Dir: dir, TaskSocket: filepath.Join(dir, "task.sock"),
		TaskAddress: "ttrpc+unix://" + filepath.Join(dir, "task.sock"), Events: ev}
	d, b := sb.New(t, env)
	parts, err := daemon.NewParts(life, dir, sb.Name, d, b, ev)
	if err != nil {
		t.Fatalf("daemon.NewParts: %v", err)
	}
	if err := parts.Recover(life); err != nil {
		t.Fatalf("recover: %v", err)
	}
	dm := &Daemon{Dir: dir, Env: env, Controller: parts.Controller, Tasks: parts.Tasks, Events: ev, stop: stop}
	t.Cleanup(dm.shutdownAll)
	return dm
}

// shutdownAll shuts down every pod the daemon's records name, with their
// containers: a test that failed half-way leaves no process or mount.
func (d *Daemon) shutdownAll() {
	if d.closed.Load() {
		return
	}
	ents, _ := os.ReadDir(filepath.Join(d.Dir, "state"))
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := d.Controller.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: id}); err != nil {
			log.G(ctx).WithError(err).WithField("sandbox_id", id).Warn("sandboxtest: shutting down a pod left by the test")
		}
		cancel()
	}
}

// subreaper makes the test process a child subreaper, as the daemon is.
func subreaper(t *testing.T) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("set child subreaper: %v", err)
	}
}

// Close ends the daemon's lifetime, as a daemon that stops does (pods and
// containers keep running). Use Crash for a daemon that dies.
func (d *Daemon) Close() {
	d.closed.Store(true)
	d.stop()
}

// Event is one published event.
type Event struct {
	Namespace string
	Topic     string
	Event     proto.Message
}

// Events is an events.Publisher that records what is published, in order.
type Events struct {
	mu     sync.Mutex
	events []Event
}

// Publish records an event.
func (e *Events) Publish(_ context.Context, ns, topic string, ev proto.Message) {
	e.mu.Lock()
	e.events = append(e.events, Event{Namespace: ns, Topic: topic, Event: ev})
	e.mu.Unlock()
}

// All returns the events recorded so far.
func (e *Events) All() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.events...)
}

// Of returns the topics of the events of one process, in order: the
// container's init for execID "" (TaskCreate, TaskStart, its TaskExit,
// TaskDelete, TaskOOM, TaskPaused, TaskResumed) or one exec (TaskExecAdded,
// TaskExecStarted, its TaskExit).
func (e *Events) Of(containerID, execID string) []string {
	var out []string
	for _, ev := range e.All() {
		if ProcessOf(ev.Event) == [2]string{containerID, execID} {
			out = append(out, ev.Topic)
		}
	}
	return out
}

// ProcessOf names the process an event is about: the container id and the
// exec id ("" for the init, or for an event about the whole container).
func ProcessOf(ev proto.Message) [2]string {
	switch e := ev.(type) {
	case *apievents.TaskCreate:
		return [2]string{e.ContainerID, ""}
	case *apievents.TaskStart:
		return [2]string{e.ContainerID, ""}
	case *apievents.TaskDelete:
		return [2]string{e.ContainerID, e.ID}
	case *apievents.TaskExit:
		if e.ID == e.ContainerID || e.ID == "" {
			return [2]string{e.ContainerID, ""}
		}
		return [2]string{e.ContainerID, e.ID}
	case *apievents.TaskExecAdded:
		return [2]string{e.ContainerID, e.ExecID}
	case *apievents.TaskExecStarted:
		return [2]string{e.ContainerID, e.ExecID}
	case *apievents.TaskOOM:
		return [2]string{e.ContainerID, ""}
	case *apievents.TaskPaused:
		return [2]string{e.ContainerID, ""}
	case *apievents.TaskResumed:
		return [2]string{e.ContainerID, ""}
	}
	return [2]string{}
}

// Leftovers lists what is left under the state directory dir of pods and
// containers: sandbox directories, sandbox and task records, mounts at or
// below dir and below each of extra, then what sb.Leftovers reports.
func Leftovers(t *testing.T, sb *Sandboxer, dir string, extra ...string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"sandboxes", "state", "tasks"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range ents {
			out = append(out, filepath.Join(sub, e.Name()))
		}
	}
	table, err := mount.Self()
	if err != nil {
		t.Fatalf("mount table: %v", err)
	}
	for _, d := range append([]string{dir}, extra...) {
		for _, mp := range mount.Below(table, d) {
			out = append(out, "mount "+mp)
		}
	}
	if sb.Leftovers != nil {
		out = append(out, sb.Leftovers(t, dir)...)
	}
	return out
}

// CheckClean fails t with what is left under dir (see Leftovers), after
// giving asynchronous ends (a killed process being reaped) a moment.
func CheckClean(t *testing.T, sb *Sandboxer, what, dir string, extra ...string) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(3 * time.Second); ; {
		if left = Leftovers(t, sb, dir, extra...); len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("%s left: %s", what, strings.Join(left, "; "))
	}
}

// Tree lists every path below dir (relative, sorted): a snapshot to check
// that a refused request changed nothing.
func Tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if rel, _ := filepath.Rel(dir, p); rel != "." {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// Changes lists what differs between two Trees of the state directory
// (added "+path", removed "-path"), but below sb.Caches.
func (sb *Sandboxer) Changes(before, after []string) []string {
	cached := func(p string) bool {
		for _, c := range sb.Caches {
			if p == c || strings.HasPrefix(p, c+"/") {
				return true
			}
		}
		return false
	}
	var out []string
	for _, p := range after {
		if !slices.Contains(before, p) && !cached(p) {
			out = append(out, "+"+p)
		}
	}
	for _, p := range before {
		if !slices.Contains(after, p) && !cached(p) {
			out = append(out, "-"+p)
		}
	}
	return out
}

// Dirs are the directories of a test: State is the daemon's (its
// configuration's dir), Work is containerd's side (bundles, FIFOs).
type Dirs struct {
	State string
	Work  string
}

// Environment of the child process of Crash.
const (
	childTestEnv = "MAGNETAR_SANDBOXTEST_CHILD"
	childDirsEnv = "MAGNETAR_SANDBOXTEST_DIRS"
	// readyLine is what the child prints once first has returned.
	readyLine = "MAGNETAR-SANDBOXTEST-CHILD-READY"
)

// IsChild reports whether this process is the crashing daemon of test t
// (see Crash).
func IsChild(t *testing.T) bool { return os.Getenv(childTestEnv) == t.Name() }

// NewDirs makes the directories of test t; in the child of a Crash it
// returns its parent's.
func NewDirs(t *testing.T) Dirs {
	t.Helper()
	if IsChild(t) {
		parts := strings.Split(os.Getenv(childDirsEnv), "\n")
		if len(parts) != 2 {
			t.Fatalf("%s: %q", childDirsEnv, os.Getenv(childDirsEnv))
		}
		return Dirs{State: parts[0], Work: parts[1]}
	}
	root := t.TempDir()
	ds := Dirs{State: filepath.Join(root, "state"), Work: filepath.Join(root, "work")}
	for _, d := range []string{ds.State, ds.Work} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return ds
}

// crashTimeout bounds how long the child of a Crash may take to run first.
const crashTimeout = 2 * time.Minute

// Crash runs first in a daemon that dies: this test binary, re-run in a
// child process for test t alone, opens a daemon on dirs.State, runs first,
// reports back, and is killed with SIGKILL, as a daemon crash or `kill -9`
// would end it; what the child's daemon started (container processes,
// VMMs) outlives it and is re-parented to this process, a subreaper as the
// daemon is. Crash returns in the parent once the child is dead; the caller
// then opens the restarted daemon on dirs.State.
//
// In the child, Crash never returns: the test runs up to it in both
// processes (so guard what only the parent must do with IsChild; NewDirs
// already returns the parent's directories), and on after it in the parent
// only. A failure of first fails the parent with the child's output.
func Crash(t *testing.T, sb *Sandboxer, dirs Dirs, first func(t *testing.T, d *Daemon)) {
	t.Helper()
	if IsChild(t) {
		first(t, Open(t, sb, dirs.State))
		if t.Failed() {
			t.FailNow()
		}
		fmt.Println(readyLine)
		for {
			time.Sleep(time.Hour) // until killed
		}
	}
	subreaper(t)
	cmd := exec.Command(os.Args[0], "-test.run="+runPattern(t.Name()), "-test.count=1", "-test.v=true", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), childTestEnv+"="+t.Name(), childDirsEnv+"="+dirs.State+"\n"+dirs.Work)
	var out syncBuffer
	cmd.Stderr = &out
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("crash child: %v", err)
	}
	dead := false
	kill := func() {
		if !dead {
			dead = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(kill)
	ready := make(chan bool, 2)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			_, _ = out.Write([]byte(line + "\n"))
			if line == readyLine {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			kill()
			t.Fatalf("the crashing daemon (child process) failed before it was killed:\n%s", out.String())
		}
	case <-time.After(crashTimeout):
		kill()
		t.Fatalf("the crashing daemon (child process) did not finish within %s:\n%s", crashTimeout, out.String())
	}
	kill()
}

// runPattern is the -test.run pattern that selects test name alone.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// syncBuffer is a goroutine-safe buffer for a child's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
