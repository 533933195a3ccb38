package taskfwd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/hack/vm/guestvm"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/fdstore"
	"github.com/magnetar-runtime/magnetar/shared/keeper"
	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/task"
	"github.com/magnetar-runtime/magnetar/shared/transport"
)

// The tests run the real magnetar-agent in -dev mode (the guest's services
// as a host process, on a unix socket, with the real runc) and drive the
// forwarding backend through shared/task's Service, as containerd would.

const (
	testNS      = "k8s.io"
	handlerName = "magnetar-vmm"
	// waitLong bounds what should happen soon; waitShort what must be
	// prompt (an exit reported once the guest is gone).
	waitLong  = 20 * time.Second
	waitShort = 3 * time.Second
)

var (
	agentOnce sync.Once
	agentBin  string
	agentErr  error
	agentDir  string // where the test built it, removed at the end
)

func TestMain(m *testing.M) {
	code := m.Run()
	if agentDir != "" {
		_ = os.RemoveAll(agentDir)
	}
	os.Exit(code)
}

// requirements skips t unless the agent can run containers here: root,
// runc, a static busybox; and builds the agent once.
func requirements(t *testing.T) (agent, runc string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (runc, mounts)")
	}
	runc = findRunc()
	if runc == "" {
		t.Skip("runc not found: set MAGNETAR_RUNC or run hack/install-tools.sh")
	}
	if _, err := os.Stat(guestvm.Busybox); err != nil {
		t.Skip("no static busybox (apt-get install busybox-static)")
	}
	agentOnce.Do(func() {
		if agentBin = os.Getenv("MAGNETAR_AGENT"); agentBin != "" {
			return
		}
		dir, err := os.MkdirTemp("", "taskfwd-agent")
		if err != nil {
			agentErr = err
			return
		}
		agentDir, agentBin = dir, filepath.Join(dir, "magnetar-agent")
		cmd := exec.Command("go", "build", "-o", agentBin, "../../agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentErr = fmt.Errorf("build the agent: %v\n%s", err, out)
		}
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentBin, runc
}

// findRunc is the real runc: MAGNETAR_RUNC, else the project's
// (_output/prefix/bin, the tools cache), else PATH's; "" if none.
func findRunc() string {
	if p := os.Getenv("MAGNETAR_RUNC"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	for _, p := range []string{"../../_output/prefix/bin/runc", filepath.Join(home, ".cache/magnetar/tools/runc-v1.5.2/bin/runc")} {
		if abs, err := filepath.Abs(p); err == nil {
			if _, err := os.Stat(abs); err == nil {
				return abs
			}
		}
	}
	p, _ := exec.LookPath("runc")
	return p
}

// devAgent is a magnetar-agent in -dev mode: the guest, with its
// directories under dir: share/ (the share, the same path on both sides),
// io/ (its stdio FIFOs), agent/ (its state, runc's root) and a.sock.
type devAgent struct {
	dir, runc string
	pid       int
	exited    exit.Latch
}

func (a *devAgent) share() string  { return filepath.Join(a.dir, "share") }
func (a *devAgent) ioRoot() string { return filepath.Join(a.dir, "io") }
func (a *devAgent) sock() string   { return filepath.Join(a.dir, "a.sock") }
func (a *devAgent) log() string    { return filepath.Join(a.dir, "agent.log") }
func (a *devAgent) runcRoot() string {
	return filepath.Join(a.dir, "agent", "runc")
}

// startAgent starts a dev agent on dir, in a process group of its own (it
// outlives a crashing test daemon, as a VM outlives the sandboxer).
func startAgent(bin, runc, dir string) (*devAgent, error) {
	a := &devAgent{dir: dir, runc: runc}
	for _, d := range []string{a.share(), a.ioRoot(), filepath.Join(dir, "agent")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	logf, err := os.OpenFile(a.log(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	_ = os.Remove(a.sock())
	cmd := exec.Command(bin, "-dev", "-listen", a.sock(), "-share", a.share(), "-io", a.ioRoot(),
		"-state", filepath.Join(dir, "agent"), "-runc", runc, "-log-level", "debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	a.pid = cmd.Process.Pid
	w, err := proc.Open(a.pid)
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, err
	}
	_ = cmd.Process.Release() // reaped by the watch
	a.watch(w)
	return a, nil
}

// findAgent finds the dev agent of dir running again (after a crash of the
// test daemon that started it), or returns one that has exited.
func findAgent(runc, dir string, pid int) *devAgent {
	a := &devAgent{dir: dir, runc: runc, pid: pid}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if pid > 0 && strings.Contains(string(b), a.sock()) {
		if w, err := proc.Open(pid); err == nil {
			a.watch(w)
			return a
		}
	}
	a.exited.Set(sandbox.ExitCodeLost, time.Now())
	return a
}

func (a *devAgent) watch(w *proc.Watch) {
	go func() {
		<-w.Done()
		a.exited.Set(sandbox.ExitCodeLost, time.Now())
	}()
}

// kill kills the agent, waits for its end, and then the containers it
// left (a killed agent's containers run on, where a VM's would be gone).
func (a *devAgent) kill() error {
	_ = syscall.Kill(-a.pid, syscall.SIGKILL)
	select {
	case <-a.exited.Done():
	case <-time.After(waitLong):
		return fmt.Errorf("agent %d did not exit", a.pid)
	}
	if out, err := exec.Command(a.runc, "--root", a.runcRoot(), "list", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command(a.runc, "--root", a.runcRoot(), "delete", "--force", id).Run()
		}
	}
	return nil
}

// devGuest is the fake pod: a sandbox.Instance that is a Guest of a dev
// agent. Share's host and guest sides are the same directory (the agent
// runs on the host).
type devGuest struct {
	id    string
	agent *devAgent
	files map[string]string

	mu   sync.Mutex
	conn *agentclient.Client
}

var (
	_ Guest            = (*devGuest)(nil)
	_ PodFiler         = (*devGuest)(nil)
	_ IORooter         = (*devGuest)(nil)
	_ sandbox.Instance = (*devGuest)(nil)
)

func (g *devGuest) ID() string                      { return g.id }
func (g *devGuest) Share() (string, string)         { return g.agent.share(), g.agent.share() }
func (g *devGuest) Exited() <-chan struct{}         { return g.agent.exited.Done() }
func (g *devGuest) ExitStatus() (uint32, time.Time) { return g.agent.exited.ExitStatus() }
func (g *devGuest) IORoot() string                  { return g.agent.ioRoot() }
func (g *devGuest) PodFiles() map[string]string     { return g.files }

func (g *devGuest) Conn(ctx context.Context) (Conn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn != nil {
		select {
		case <-g.conn.Done():
		default:
			return g.conn, nil
		}
	}
	if gone(g) {
		return nil, errGone(g)
	}
	alive := func() error {
		if gone(g) {
			return errors.New("agent exited")
		}
		return nil
	}
	c, err := agentclient.Dial(ctx, agentclient.Target{Serial: g.agent.sock()}, agentclient.Options{Alive: alive})
	if err != nil {
		return nil, err
	}
	g.conn = c
	return c, nil
}

// client is the guest's current connection, for checks.
func (g *devGuest) client(t *testing.T) *agentclient.Client {
	t.Helper()
	c, err := g.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c.(*agentclient.Client)
}

// breakConn closes the current connection, as a broken transport would.
func (g *devGuest) breakConn() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn != nil {
		g.conn.Close()
	}
}

func (g *devGuest) Start(context.Context) (sandbox.Endpoint, error) { return sandbox.Endpoint{}, nil }
func (g *devGuest) Stop(context.Context, time.Duration) error       { return nil }
func (g *devGuest) Cleanup(context.Context) error                   { return nil }
func (g *devGuest) DriverState() (json.RawMessage, error)           { return nil, nil }

// pods resolves the one fake pod.
type pods struct{ g *devGuest }

func (p pods) Pod(id string) (sandbox.Instance, bool, error) {
	if p.g == nil || id != p.g.id {
		return nil, false, fmt.Errorf("pod %s: %w", id, errdefs.ErrNotFound)
	}
	return p.g, !gone(p.g), nil
}

// recorder is the events publisher: it keeps what the service published.
type recorder struct {
	mu sync.Mutex
	ev []recorded
}

type recorded struct {
	topic string
	ev    proto.Message
}

func (r *recorder) Publish(_ context.Context, _, topic string, ev proto.Message) {
	r.mu.Lock()
	r.ev = append(r.ev, recorded{topic, ev})
	r.mu.Unlock()
}

// topics lists the topics published for a container's init (execID "") or
// one exec, in order.
func (r *recorder) topics(id, execID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.ev {
		type withIDs interface {
			GetContainerID() string
		}
		c, ok := e.ev.(withIDs)
		if !ok || c.GetContainerID() != id {
			continue
		}
		x := ""
		switch v := e.ev.(type) {
		case interface{ GetExecID() string }:
			x = v.GetExecID()
		case interface{ GetID() string }:
			if v.GetID() != id {
				x = v.GetID()
			}
		}
		if x == execID {
			out = append(out, e.topic)
		}
	}
	return out
}

// env is one pod (a dev agent) and the host's task service over the
// forwarding backend.
type env struct {
	t        *testing.T
	dir      string
	runc     string
	image    string // busybox rootfs: the overlay lower dir
	spec     *specs.Spec
	stateDir string // the task service's records
	agent    *devAgent
	guest    *devGuest
	svc      *task.Service
	pub      *recorder
	stopSvc  context.CancelFunc
	logs     syncBuffer
	ids      []string // the containers made
	// fdStore is the keeper's descriptor store, served in the test process
	// on fdSock; fds is the current host side's client of it.
	fdStore *fdstore.Store
	fdSock  string
	fds     *fdstore.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	bin, runc := requirements(t)
	dir, err := os.MkdirTemp("", "tf")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, runc: runc, stateDir: filepath.Join(dir, "tasks")}
	t.Cleanup(e.close)
	for _, d := range []string{"bundles", "fifo", "snap"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := guestvm.BusyboxBundle(dir, "image", []string{"/bin/sh"}, nil); err != nil {
		t.Fatal(err)
	}
	e.serveFDs()
	e.image = filepath.Join(dir, "image", "rootfs")
	e.spec = readSpecFile(t, filepath.Join(dir, "image", "config.json"))
	if e.agent, err = startAgent(bin, runc, filepath.Join(dir, "pod")); err != nil {
		t.Fatal(err)
	}
	e.guest = &devGuest{id: "pod-" + randomID(), agent: e.agent}
	e.openService()
	return e
}

// serveFDs serves the descriptor store the keeper would, outliving the
// host side's restarts.
func (e *env) serveFDs() {
	t := e.t
	e.fdStore = fdstore.NewStore(0)
	e.fdSock = filepath.Join(e.dir, "fds.sock")
	l, err := transport.Listen(e.fdSock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = keeper.ServeFDs(ctx, l, e.fdStore) }()
	t.Cleanup(func() {
		cancel()
		e.fdStore.Close()
	})
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// openService makes the host side: a forwarding backend and a task service
// on the state directory, recovering what it holds.
func (e *env) openService() {
	t := e.t
	life, cancel := context.WithCancel(context.Background())
	l := logrus.New()
	l.SetOutput(&e.logs)
	l.SetLevel(logrus.DebugLevel)
	life = log.WithLogger(life, logrus.NewEntry(l))
	e.fds = fdstore.NewClient(e.fdSock)
	be := New(Config{Life: life, DrainTimeout: 2 * time.Second, FDs: e.fds})
	e.pub = &recorder{}
	svc, err := task.New(life, e.stateDir, be, e.pub, task.WithPods(pods{e.guest}, handlerName))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Recover(life); err != nil {
		t.Fatal(err)
	}
	// as shared/daemon does once the recovery is done
	if err := e.fds.RetainHeld(); err != nil {
		t.Fatal(err)
	}
	e.svc, e.stopSvc = svc, cancel
}

// restart ends the host side as a daemon death would and opens a new one
// on the same state: the guest runs on.
func (e *env) restart() {
	e.down()
	e.up()
}

// down ends the host side as a daemon death would: its pumps and relays,
// its connection, its ends of containerd's FIFOs (what the store holds
// stays).
func (e *env) down() {
	e.stopSvc()
	e.guest.breakConn()
}

// up opens a new host side on the state of the one down ended.
func (e *env) up() {
	old := e.guest
	e.guest = &devGuest{id: old.id, agent: old.agent, files: old.files}
	e.openService()
}

// killAgent kills the guest.
func (e *env) killAgent() {
	if err := e.agent.kill(); err != nil {
		e.t.Fatal(err)
	}
}

// syncBuffer collects the host side's log, shown when a test fails.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// close kills what the test left running in the guest, checks that no
// mount is left below the test's directory, and removes it.
func (e *env) close() {
	t := e.t
	if e.stopSvc != nil {
		e.stopSvc()
	}
	if e.guest != nil {
		e.guest.breakConn()
	}
	if e.agent != nil {
		if err := e.agent.kill(); err != nil {
			t.Error(err)
		}
		if t.Failed() || os.Getenv("TASKFWD_LOGS") != "" {
			if b, err := os.ReadFile(e.agent.log()); err == nil {
				t.Logf("agent log:\n%s", b)
			}
			t.Logf("host log:\n%s", e.logs.String())
		}
	}
	// the guest cgroups runc left of containers of a killed agent
	for _, id := range e.ids {
		cgs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*/magnetar", id))
		for _, cg := range cgs {
			_ = os.Remove(cg)
		}
	}
	if left := mountsBelow(t, e.dir); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
	if err := mount.RemoveAll(e.dir); err != nil {
		t.Error(err)
	}
}

func mountsBelow(t *testing.T, dir string) []string {
	t.Helper()
	table, err := mount.Self()
	if err != nil {
		t.Fatal(err)
	}
	return mount.Below(table, dir)
}

func readSpecFile(t *testing.T, p string) *specs.Spec {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var sp specs.Spec
	if err := json.Unmarshal(b, &sp); err != nil {
		t.Fatal(err)
	}
	return &sp
}

// ctx is a request context as containerd sends it.
func (e *env) ctx() context.Context {
	return ttrpc.WithMetadata(context.Background(), ttrpc.MD{namespaceKey: []string{testNS}})
}

// opts describe a container or exec.
type opts struct {
	args     []string
	tty      bool
	stdin    bool
	noStderr bool
	mounts   []specs.Mount
	readonly bool
	// rootfs replaces the overlay of the image (nil: the overlay; empty
	// non-nil: none, config.json's root.path names the image).
	rootfs []*types.Mount
}

// cproc is containerd's view of one process: its FIFOs.
type cproc struct {
	id, exec       string
	bundle         string
	stdin          *os.File // containerd's write end
	stdinPath      string
	stdout, stderr *outFIFO
}

// outFIFO is containerd's read end of an output FIFO, read to EOF into a
// buffer once a writer has opened it.
type outFIFO struct {
	path string
	f    *os.File
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

func newOutFIFO(t *testing.T, p string) *outFIFO {
	t.Helper()
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	o := &outFIFO{path: p, f: os.NewFile(uintptr(fd), p), done: make(chan struct{})}
	t.Cleanup(func() { o.f.Close() })
	return o
}

// read starts copying once a writer has the FIFO open (after Create):
// before, a FIFO reads as EOF.
func (o *outFIFO) read() {
	go func() {
		defer close(o.done)
		b := make([]byte, 64<<10)
		for {
			n, err := o.f.Read(b)
			o.mu.Lock()
			o.buf.Write(b[:n])
			o.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
}

func (o *outFIFO) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor waits until the output holds s.
func (o *outFIFO) waitFor(t *testing.T, s string) string {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		got := o.String()
		if strings.Contains(got, s) {
			return got
		}
		select {
		case <-o.done:
			if got = o.String(); strings.Contains(got, s) {
				return got
			}
			t.Fatalf("%s: EOF with %q, waiting for %q", filepath.Base(o.path), got, s)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q, waiting for %q", filepath.Base(o.path), got, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eof waits for EOF (every writer closed) and returns the output.
func (o *outFIFO) eof(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case <-o.done:
	case <-time.After(within):
		t.Fatalf("%s: no EOF within %s; read %q", filepath.Base(o.path), within, o.String())
	}
	return o.String()
}

// fifos makes containerd's FIFOs of a process in dir.
func (e *env) fifos(p *cproc, dir string, o opts) {
	t := e.t
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p.stdout = newOutFIFO(t, filepath.Join(dir, "stdout"))
	if !o.tty && !o.noStderr {
		p.stderr = newOutFIFO(t, filepath.Join(dir, "stderr"))
	}
	if o.stdin {
		p.stdinPath = filepath.Join(dir, "stdin")
		if err := unix.Mkfifo(p.stdinPath, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// started begins reading the outputs and opens stdin, once the backend
// holds its ends.
func (e *env) started(p *cproc) {
	t := e.t
	p.stdout.read()
	if p.stderr != nil {
		p.stderr.read()
	}
	if p.stdinPath != "" {
		f, err := os.OpenFile(p.stdinPath, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		p.stdin = f
		t.Cleanup(func() { f.Close() })
	}
}

func (p *cproc) stderrPath() string {
	if p.stderr == nil {
		return ""
	}
	return p.stderr.path
}

// bundle writes containerd's bundle of a container.
func (e *env) bundle(id string, o opts) (string, []*types.Mount) {
	t := e.t
	b := filepath.Join(e.dir, "bundles", id)
	if err := os.MkdirAll(b, 0o700); err != nil {
		t.Fatal(err)
	}
	var sp specs.Spec
	data, _ := json.Marshal(e.spec)
	_ = json.Unmarshal(data, &sp)
	sp.Process.Args = o.args
	sp.Process.Terminal = o.tty
	sp.Root.Readonly = o.readonly
	sp.Mounts = append(sp.Mounts, o.mounts...)
	sp.Annotations = map[string]string{sandbox.PodAnnotation: e.guest.id}
	rootfs := o.rootfs
	switch {
	case rootfs == nil:
		snap := filepath.Join(e.dir, "snap", id)
		for _, d := range []string{"upper", "work"} {
			if err := os.MkdirAll(filepath.Join(snap, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		rootfs = []*types.Mount{{Type: "overlay", Source: "overlay", Options: []string{
			"lowerdir=" + e.image, "upperdir=" + filepath.Join(snap, "upper"), "workdir=" + filepath.Join(snap, "work")}}}
		sp.Root.Path = "rootfs"
	case len(rootfs) == 0:
		sp.Root.Path = e.image
		rootfs = nil
	}
	data, _ = json.Marshal(&sp)
	if err := os.WriteFile(filepath.Join(b, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return b, rootfs
}

// create creates a container as containerd would; started() must follow
// for its FIFOs to be read.
func (e *env) create(id string, o opts) (*cproc, error) {
	p := &cproc{id: id}
	e.ids = append(e.ids, id)
	b, rootfs := e.bundle(id, o)
	p.bundle = b
	e.fifos(p, filepath.Join(e.dir, "fifo", id), o)
	_, err := e.svc.Create(e.ctx(), &taskapi.CreateTaskRequest{ID: id, Bundle: b, Rootfs: rootfs, Terminal: o.tty,
		Stdin: p.stdinPath, Stdout: p.stdout.path, Stderr: p.stderrPath()})
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	e.started(p)
	return p, nil
}

// run creates and starts a container.
func (e *env) run(id string, o opts) *cproc {
	e.t.Helper()
	p, err := e.create(id, o)
	if err != nil {
		e.t.Fatalf("create %s: %v", id, err)
	}
	if _, err := e.svc.Start(e.ctx(), &taskapi.StartRequest{ID: id}); err != nil {
		e.t.Fatalf("start %s: %v", id, err)
	}
	return p
}

// exec adds and starts an exec process.
func (e *env) exec(id, execID string, o opts) *cproc {
	t := e.t
	t.Helper()
	p := &cproc{id: id, exec: execID}
	e.fifos(p, filepath.Join(e.dir, "fifo", id+"-"+execID), o)
	sp := *e.spec.Process
	sp.Args, sp.Terminal = o.args, o.tty
	data, _ := json.Marshal(&sp)
	if _, err := e.svc.Exec(e.ctx(), &taskapi.ExecProcessRequest{ID: id, ExecID: execID, Terminal: o.tty, Stdin: p.stdinPath,
		Stdout: p.stdout.path, Stderr: p.stderrPath(), Spec: &anypb.Any{TypeUrl: processTypeURL, Value: data}}); err != nil {
		t.Fatalf("exec %s/%s: %v", id, execID, err)
	}
	e.started(p)
	if _, err := e.svc.Start(e.ctx(), &taskapi.StartRequest{ID: id, ExecID: execID}); err != nil {
		t.Fatalf("start %s/%s: %v", id, execID, err)
	}
	return p
}

// wait waits for a process's exit through the service.
func (e *env) wait(p *cproc, within time.Duration) uint32 {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx(), within)
	defer cancel()
	r, err := e.svc.Wait(ctx, &taskapi.WaitRequest{ID: p.id, ExecID: p.exec})
	if err != nil {
		t.Fatalf("wait %s/%s: %v", p.id, p.exec, err)
	}
	return r.GetExitStatus()
}

// delete deletes a container and checks that nothing of it is left: not
// its directory in the share, not a mount, not the container in the guest.
func (e *env) delete(p *cproc) {
	t := e.t
	t.Helper()
	if _, err := e.svc.Delete(e.ctx(), &taskapi.DeleteRequest{ID: p.id, ExecID: p.exec}); err != nil {
		t.Fatalf("delete %s/%s: %v", p.id, p.exec, err)
	}
	if p.exec == "" {
		e.checkGone(p.id)
	}
}

// checkGone checks that container id left nothing on the host and, while
// the guest runs, in the guest.
func (e *env) checkGone(id string) {
	t := e.t
	t.Helper()
	dir := filepath.Join(e.agent.share(), id)
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left in the share (%v)", dir, err)
	}
	if left := mountsBelow(t, dir); len(left) > 0 {
		t.Errorf("mounts of %s left in the share: %v", id, left)
	}
	if gone(e.guest) {
		return
	}
	_, err := e.guest.client(t).Task().State(withNamespace(context.Background(), testNS), &taskapi.StateRequest{ID: id})
	if !errdefs.IsNotFound(err) {
		t.Errorf("guest state of %s after delete: %v, want NotFound", id, err)
	}
	if _, err := os.Lstat(filepath.Join(e.agent.ioRoot(), id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("guest stdio of %s left (%v)", id, err)
	}
}

// close closes containerd's ends of the process's FIFOs (as containerd
// does once it deleted the process).
func (p *cproc) close() {
	if p.stdin != nil {
		p.stdin.Close()
	}
	for _, o := range []*outFIFO{p.stdout, p.stderr} {
		if o != nil {
			o.f.Close()
		}
	}
}

// write writes into a process's stdin FIFO.
func (p *cproc) write(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, s); err != nil {
		t.Fatal(err)
	}
}

// closeIO ends a process's stdin as CRI does: its end of the FIFO closed,
// then CloseIO.
func (e *env) closeIO(p *cproc) {
	e.t.Helper()
	if p.stdin != nil {
		p.stdin.Close()
	}
	if _, err := e.svc.CloseIO(e.ctx(), &taskapi.CloseIORequest{ID: p.id, ExecID: p.exec, Stdin: true}); err != nil {
		e.t.Fatalf("close io: %v", err)
	}
}

func (e *env) kill(p *cproc, sig syscall.Signal, all bool) {
	e.t.Helper()
	if _, err := e.svc.Kill(e.ctx(), &taskapi.KillRequest{ID: p.id, ExecID: p.exec, Signal: uint32(sig), All: all}); err != nil {
		e.t.Fatalf("kill %s/%s: %v", p.id, p.exec, err)
	}
}

func (e *env) state(p *cproc) *taskapi.StateResponse {
	e.t.Helper()
	r, err := e.svc.State(e.ctx(), &taskapi.StateRequest{ID: p.id, ExecID: p.exec})
	if err != nil {
		e.t.Fatalf("state %s/%s: %v", p.id, p.exec, err)
	}
	return r
}

// sh is busybox sh -c script.
func sh(script string) []string { return []string{"/bin/sh", "-c", script} }
