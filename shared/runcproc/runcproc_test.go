package runcproc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
)

// The fake runc's orphans (the "container" processes) are re-parented to
// the test binary, so Pidfd learns their exit statuses.
func TestMain(m *testing.M) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// fakeRunc is a shell script with runc's command line: create and exec
// start a `sleep` (pid in --pid-file), kill signals the init, ps lists it.
// A file fail-<command> in its state dir makes <command> fail with that
// file's content as runc's logged error. The `sleep` gets /dev/null for
// its stdio, unless a file "inherit" is there: then it inherits runc's
// stdout and stderr, as a real container does.
const fakeRunc = `#!/bin/sh
state=@STATE@
echo "$*" >> "$state/calls"
log=/dev/null
while [ $# -gt 0 ]; do
	case "$1" in
	--root|--log-format) shift ;;
	--log) log="$2"; shift ;;
	--*) ;;
	*) break ;;
	esac
	shift
done
cmd="$1"; shift
if [ -f "$state/fail-$cmd" ]; then
	echo '{"level":"info","msg":"starting"}' >> "$log"
	echo "{\"level\":\"error\",\"msg\":\"$(cat "$state/fail-$cmd")\"}" >> "$log"
	echo '{"level":"warning","msg":"afterwards"}' >> "$log"
	exit 1
fi
prev=""; pidfile=""
for a; do [ "$prev" = --pid-file ] && pidfile="$a"; prev="$a"; done
container() {
	if [ -f "$state/inherit" ]; then
		sleep 30 &
	else
		sleep 30 </dev/null >/dev/null 2>&1 &
	fi
	printf %s $! > "$pidfile"; echo $! > "$state/$1"
}
case "$cmd" in
create) container init ;;
exec) container exec ;;
kill)
	for sig; do :; done
	kill -"$sig" "$(cat "$state/init")" ;;
ps) echo "[$(cat "$state/init")]" ;;
update) cat >/dev/null ;;
delete) sleep 0.2; touch "$state/deleted" ;;
esac
exit 0
`

type fixture struct {
	state string
	dir   string
	r     *runc.Runc
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{state: t.TempDir(), dir: t.TempDir()}
	bin := filepath.Join(f.state, "runc")
	if err := os.WriteFile(bin, []byte(strings.ReplaceAll(fakeRunc, "@STATE@", f.state)), 0o755); err != nil {
		t.Fatal(err)
	}
	f.r = &runc.Runc{Command: bin, Root: filepath.Join(f.state, "root"), Log: filepath.Join(f.dir, "runc.log"), LogFormat: runc.JSON}
	return f
}

func (f *fixture) fail(t *testing.T, cmd, msg string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.state, "fail-"+cmd), []byte(msg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// calls are the fake runc's command lines, one a call.
func (f *fixture) calls(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.state, "calls"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func (f *fixture) lastCall(t *testing.T) string {
	c := f.calls(t)
	return c[len(c)-1]
}

func killOnCleanup(t *testing.T, pid uint32) {
	t.Cleanup(func() { _ = syscall.Kill(int(pid), syscall.SIGKILL) })
}

func waitExited(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("process did not exit")
	}
}

func TestError(t *testing.T) {
	dir := t.TempDir()
	cause := errors.New("exit status 1")
	err := Error("runc", "start", filepath.Join(dir, "missing.log"), cause)
	if !errors.Is(err, cause) || errdefs.IsFailedPrecondition(err) || err.Error() != "runc start: exit status 1" {
		t.Fatalf("without a log: %v", err)
	}
	logFile := filepath.Join(dir, "runc.log")
	lines := `{"level":"error","msg":"first"}
not json
{"level":"fatal","msg":"container not running"}
{"level":"info","msg":"later"}
`
	if err := os.WriteFile(logFile, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	if msg := LastError(logFile); msg != "container not running" {
		t.Fatalf("LastError = %q", msg)
	}
	err = Error("runc", "kill", logFile, cause)
	if !errdefs.IsFailedPrecondition(err) || err.Error() != "runc kill: container not running: failed precondition" {
		t.Fatalf("with a log: %v", err)
	}
}

func TestInitAndExec(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	p := New("c1", f.dir, f.r, Pidfd{})
	exits := make(chan Exit, 1)
	p.OnExit = func(x Exit) {
		select {
		case <-p.Exited():
			t.Error("OnExit called after Exited was closed")
		default:
		}
		exits <- x
	}
	if err := p.Create(ctx, stdio.Config{}, true); err != nil {
		t.Fatal(err)
	}
	killOnCleanup(t, p.Pid())
	if p.Pid() == 0 || p.ID() != "c1" || p.IO() == nil {
		t.Fatalf("after Create: pid %d, id %q, io %v", p.Pid(), p.ID(), p.IO())
	}
	if c := f.lastCall(t); !strings.Contains(c, "create --bundle "+f.dir) || !strings.Contains(c, "--no-pivot") || !strings.HasSuffix(c, " c1") {
		t.Fatalf("create call: %s", c)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pids, err := p.Pids(ctx)
	if err != nil || len(pids) != 1 || pids[0].Pid != p.Pid() {
		t.Fatalf("Pids = %v, %v", pids, err)
	}
	for name, call := range map[string]func(context.Context) error{
		"pause":  p.Pause,
		"resume": p.Resume,
		"update": func(ctx context.Context) error { return p.Update(ctx, &specs.LinuxResources{}, nil) },
	} {
		if err := call(ctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}

	proc, err := p.Exec(ctx, "e1", &specs.Process{Args: []string{"sh"}}, stdio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	killOnCleanup(t, proc.Pid())
	if c := f.lastCall(t); !strings.Contains(c, "--log "+filepath.Join(f.dir, "exec-e1.log")) || !strings.Contains(c, "exec --process") || !strings.Contains(c, "--detach") {
		t.Fatalf("exec call: %s", c)
	}
	for _, name := range []string{"exec-e1.pid", "exec-e1.log"} {
		if _, err := os.Stat(filepath.Join(f.dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", name, err)
		}
	}
	if proc.Pid() == 0 || proc.Pid() == p.Pid() {
		t.Fatalf("exec pid %d (init %d)", proc.Pid(), p.Pid())
	}
	if err := proc.Kill(ctx, syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	waitExited(t, proc.Exited())
	if code, at := proc.ExitStatus(); code != 128+uint32(syscall.SIGTERM) || at.IsZero() {
		t.Fatalf("exec exit %d at %v", code, at)
	}
	if err := proc.Kill(ctx, syscall.SIGTERM, false); err != nil {
		t.Fatalf("Kill of an exited exec: %v", err)
	}
	if err := proc.CloseStdin(ctx); err != nil {
		t.Fatal(err)
	}
	if err := proc.Delete(ctx); err != nil {
		t.Fatal(err)
	}

	if err := p.Kill(ctx, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	waitExited(t, p.Exited())
	if x := <-exits; !x.Known || x.Status != 128+int(syscall.SIGKILL) {
		t.Fatalf("OnExit got %+v", x)
	}
	if code, _ := p.ExitStatus(); code != 137 {
		t.Fatalf("init exit %d", code)
	}
	n := len(f.calls(t))
	if err := p.Kill(ctx, syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	if err := p.Terminate(ctx); err != nil {
		t.Fatal(err)
	}
	if m := len(f.calls(t)); m != n {
		t.Fatalf("runc called %d times after the init exited", m-n)
	}
	p.Release(ctx)
	p.Release(ctx)
	if c := f.lastCall(t); !strings.Contains(c, "delete --force c1") {
		t.Fatalf("delete call: %s", c)
	}
}

func TestTerminateKillsCreatedInit(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	p := New("c2", f.dir, f.r, Pidfd{})
	if err := p.Create(ctx, stdio.Config{}, false); err != nil {
		t.Fatal(err)
	}
	killOnCleanup(t, p.Pid())
	if c := f.lastCall(t); strings.Contains(c, "--no-pivot") {
		t.Fatalf("create call: %s", c)
	}
	if err := p.Terminate(ctx); err != nil {
		t.Fatal(err)
	}
	if c := f.lastCall(t); !strings.HasSuffix(c, "kill --all c2 9") {
		t.Fatalf("kill call: %s", c)
	}
	if code, _ := p.ExitStatus(); code != 137 {
		t.Fatalf("exit %d", code)
	}
}

func TestRuncErrors(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.fail(t, "create", "no such bundle")
	p := New("c3", f.dir, f.r, Pidfd{})
	err := p.Create(ctx, stdio.Config{}, false)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "runc create: no such bundle") {
		t.Fatalf("Create: %v", err)
	}
	p.Release(ctx) // what a backend does after a failed Create

	f = newFixture(t)
	p = New("c4", f.dir, f.r, Pidfd{})
	if err := p.Create(ctx, stdio.Config{}, false); err != nil {
		t.Fatal(err)
	}
	killOnCleanup(t, p.Pid())
	f.fail(t, "kill", "container not running")
	if err := p.Kill(ctx, syscall.SIGTERM, false); err != nil {
		t.Fatalf("Kill of a container runc finds not running: %v", err)
	}
	f.fail(t, "kill", "permission denied")
	if err := p.Kill(ctx, syscall.SIGTERM, true); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("Kill: %v", err)
	}
	f.fail(t, "ps", "cgroup gone")
	if _, err := p.Pids(ctx); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "runc ps: cgroup gone") {
		t.Fatalf("Pids: %v", err)
	}
	f.fail(t, "exec", "exec failed: no such file")
	proc, _ := p.Exec(ctx, "e2", &specs.Process{Args: []string{"nope"}}, stdio.Config{})
	if err := proc.Start(ctx); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "runc exec: exec failed: no such file") {
		t.Fatalf("exec Start: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "exec-e2.log")); !os.IsNotExist(err) {
		t.Errorf("exec log left behind: %v", err)
	}
}

func TestExecNotStarted(t *testing.T) {
	ctx := context.Background()
	p := New("c5", t.TempDir(), &runc.Runc{Command: "/nonexistent"}, Pidfd{})
	proc, err := p.Exec(ctx, "e", &specs.Process{}, stdio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if proc.Pid() != 0 {
		t.Fatal("pid before Start")
	}
	if err := proc.Kill(ctx, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if err := proc.ResizePty(ctx, 80, 24); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("ResizePty: %v", err)
	}
	if err := proc.CloseStdin(ctx); err != nil {
		t.Fatal(err)
	}
	if err := proc.Delete(ctx); err != nil {
		t.Fatal(err)
	}
}

// waiterFunc is a Waiter for tests.
type waiterFunc func(pid int, since time.Time) (Waited, error)

func (f waiterFunc) Watch(pid int, since time.Time) (Waited, error) { return f(pid, since) }

func TestWaiterGetsPidAndSince(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	before := time.Now()
	release := make(chan struct{})
	var got struct {
		pid   int
		since time.Time
	}
	w := waiterFunc(func(pid int, since time.Time) (Waited, error) {
		got.pid, got.since = pid, since
		return WaitFunc(func() Exit { <-release; return Exit{Status: 3, At: time.Unix(5, 0), Known: true} }), nil
	})
	p := New("c6", f.dir, f.r, w)
	if err := p.Create(ctx, stdio.Config{}, false); err != nil {
		t.Fatal(err)
	}
	killOnCleanup(t, p.Pid())
	data, err := os.ReadFile(filepath.Join(f.state, "init"))
	if err != nil {
		t.Fatal(err)
	}
	if strconv.Itoa(got.pid) != strings.TrimSpace(string(data)) || uint32(got.pid) != p.Pid() {
		t.Fatalf("Watch got pid %d, runc started %s", got.pid, data)
	}
	if got.since.Before(before) || got.since.After(time.Now()) {
		t.Fatalf("since %v not within the call", got.since)
	}
	select {
	case <-p.Exited():
		t.Fatal("exited before the waiter said so")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	waitExited(t, p.Exited())
	if code, at := p.ExitStatus(); code != 3 || !at.Equal(time.Unix(5, 0)) {
		t.Fatalf("exit %d at %v", code, at)
	}

	fail := errors.New("no pidfd")
	p = New("c7", t.TempDir(), f.r, waiterFunc(func(int, time.Time) (Waited, error) { return nil, fail }))
	if err := p.Create(ctx, stdio.Config{}, false); !errors.Is(err, fail) {
		t.Fatalf("Create with a failing waiter: %v", err)
	}
	p.Release(ctx)
}

func TestWatchRecovered(t *testing.T) {
	p := New("c8", t.TempDir(), &runc.Runc{Command: "/nonexistent"}, Pidfd{})
	var x Exit
	p.OnExit = func(e Exit) { x = e }
	p.Watch(4242, WaitFunc(func() Exit { return Exit{Status: 255, At: time.Now()} }))
	waitExited(t, p.Exited())
	if p.Pid() != 4242 || x.Known || x.Status != 255 {
		t.Fatalf("pid %d, exit %+v", p.Pid(), x)
	}
	if err := p.ResizePty(context.Background(), 80, 24); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("ResizePty without stdio: %v", err)
	}
	if err := p.CloseStdin(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// inherit makes the fake runc's containers inherit its stdout and stderr.
func (f *fixture) inherit(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.state, "inherit"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// killStarted SIGKILLs, on cleanup, the process the fake runc started as
// what ("init" or "exec"), whether or not the call returned.
func (f *fixture) killStarted(t *testing.T, what string) {
	t.Cleanup(func() {
		if data, err := os.ReadFile(filepath.Join(f.state, what)); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

// returnsWithin fails t unless call returns within d.
func returnsWithin(t *testing.T, what string, d time.Duration, call func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- call() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Fatalf("%s did not return within %s (waits for the container's exit?)", what, d)
	}
}

// Create with no stdio at all (`ctr run --null-io`, containerd's
// cio.NullIO) returns at once, though the container inherits what runc
// was given: go-runc, given neither stdout nor stderr, read runc's output
// through a pipe to EOF, which came only when the container exited.
func TestCreateWithoutStdio(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.inherit(t)
	f.killStarted(t, "init")
	p := New("c9", f.dir, f.r, Pidfd{})
	returnsWithin(t, "Create", 5*time.Second, func() error { return p.Create(ctx, stdio.Config{}, false) })
	if err := syscall.Kill(int(p.Pid()), 0); err != nil {
		t.Fatalf("init %d: %v", p.Pid(), err)
	}
	p.Release(ctx)
}

// An exec with no stdio returns from Start while it runs (`runc exec
// --detach` went through the same pipe).
func TestExecWithoutStdioDetaches(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	p := New("c10", f.dir, f.r, Pidfd{})
	if err := p.Create(ctx, stdio.Config{}, false); err != nil {
		t.Fatal(err)
	}
	killOnCleanup(t, p.Pid())
	f.inherit(t)
	f.killStarted(t, "exec")
	proc, err := p.Exec(ctx, "e1", &specs.Process{Args: []string{"sleep", "30"}}, stdio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	returnsWithin(t, "exec Start", 5*time.Second, func() error { return proc.Start(ctx) })
	select {
	case <-proc.Exited():
		t.Fatal("exec reported exited while it runs")
	default:
	}
	if err := syscall.Kill(int(proc.Pid()), 0); err != nil {
		t.Fatalf("exec %d: %v", proc.Pid(), err)
	}
	if err := proc.Kill(ctx, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	waitExited(t, proc.Exited())
	_ = proc.Delete(ctx)
}

// A binary:// logger learns the container's id (the exec's id for an exec,
// as from containerd's shim) and its namespace (Init.Namespace).
func TestBinaryLoggerNames(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	logs := t.TempDir()
	logger := filepath.Join(f.state, "logger")
	script := "#!/bin/sh\necho \"$CONTAINER_ID $CONTAINER_NAMESPACE\" >> " + filepath.Join(logs, "names") + "\nexec 5>&-\nexec /bin/cat <&3 >/dev/null\n"
	if err := os.WriteFile(logger, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	uri := "binary://" + logger
	p := New("c11", f.dir, f.r, Pidfd{})
	p.Namespace = "k8s.io"
	if err := p.Create(ctx, stdio.Config{Stdout: uri, Stderr: uri}, false); err != nil {
		t.Fatal(err)
	}
	killOnCleanup(t, p.Pid())
	proc, err := p.Exec(ctx, "e1", &specs.Process{Args: []string{"sh"}}, stdio.Config{Stdout: uri})
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	killOnCleanup(t, proc.Pid())
	got, err := os.ReadFile(filepath.Join(logs, "names"))
	if want := "c11 k8s.io\ne1 k8s.io\n"; err != nil || string(got) != want {
		t.Fatalf("logger names %q, %v; want %q", got, err, want)
	}
	_ = proc.Kill(ctx, syscall.SIGKILL, false)
	waitExited(t, proc.Exited())
	_ = proc.Delete(ctx)
	_ = p.Kill(ctx, syscall.SIGKILL, false)
	waitExited(t, p.Exited())
	p.Release(ctx)
}

// runsc writes its JSON log entries without newlines between them.
func TestLastErrorOfRunscLog(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "runsc.log")
	data := `{"msg":"starting","level":"info"}{"msg":"signaling container \"c1\": no such process","level":"error","time":"x"}{"msg":"later","level":"warning"}` + "\n"
	if err := os.WriteFile(logFile, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if msg := LastError(logFile); msg != `signaling container "c1": no such process` {
		t.Fatalf("LastError = %q", msg)
	}
	if !gone(LastError(logFile)) {
		t.Fatal("runsc's no such process does not read as gone")
	}
	if err := os.WriteFile(logFile, []byte("{broken\n"+`{"level":"error","msg":"after a broken one"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if msg := LastError(logFile); msg != "after a broken one" {
		t.Fatalf("LastError after a broken entry = %q", msg)
	}
}

// With Hooks (runsc), the init's exit comes from WaitInit, not from the
// Waiter (the pid the runtime reports is the pod's sandbox), `create` gets
// no stdio and Start gets it, and exec gets the extra flags; the execs are
// still the Waiter's.
func TestHooks(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	var watched []int
	w := waiterFunc(func(pid int, since time.Time) (Waited, error) {
		watched = append(watched, pid)
		return Pidfd{}.Watch(pid, since)
	})
	p := New("c12", f.dir, f.r, w)
	initEnd := make(chan Exit, 1)
	var waitInitPid int
	var startIO *stdio.IO
	p.Hooks = Hooks{
		WaitInit: func(pid int) (Waited, error) {
			waitInitPid = pid
			return WaitFunc(func() Exit { return <-initEnd }), nil
		},
		Start: func(ctx context.Context, io *stdio.IO) error {
			startIO = io
			return errors.New("start hook says no")
		},
		ExecArgs: func(id string) []string { return []string{"--internal-pid-file", "/x/" + id} },
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := p.Create(ctx, stdio.Config{Stdout: "file://" + out}, false); err != nil {
		t.Fatal(err)
	}
	killOnCleanup(t, p.Pid())
	if waitInitPid == 0 || uint32(waitInitPid) != p.Pid() || len(watched) != 0 {
		t.Fatalf("WaitInit got pid %d (init %d), the Waiter %v", waitInitPid, p.Pid(), watched)
	}
	if stdin, stdout, _ := p.IO().Files(); stdin != nil || stdout == nil {
		t.Fatalf("the init's stdout was closed by create: %v %v", stdin, stdout)
	}
	if err := p.Start(ctx); err == nil || err.Error() != "start hook says no" || startIO != p.IO() {
		t.Fatalf("Start: %v (io %p, init's %p)", err, startIO, p.IO())
	}
	for _, c := range f.calls(t) {
		if strings.Contains(c, " start ") {
			t.Fatalf("runc start called despite the hook: %s", c)
		}
	}
	proc, err := p.Exec(ctx, "e3", &specs.Process{Args: []string{"sh"}}, stdio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	killOnCleanup(t, proc.Pid())
	if c := f.lastCall(t); !strings.Contains(c, "--internal-pid-file /x/e3") {
		t.Fatalf("exec call: %s", c)
	}
	if len(watched) != 1 || uint32(watched[0]) != proc.Pid() {
		t.Fatalf("the Waiter watched %v, exec pid %d", watched, proc.Pid())
	}
	_ = proc.Kill(ctx, syscall.SIGKILL, false)
	waitExited(t, proc.Exited())
	_ = proc.Delete(ctx)
	select {
	case <-p.Exited():
		t.Fatal("the init exited before WaitInit said so")
	default:
	}
	initEnd <- Exit{Status: 3, At: time.Now(), Known: true}
	waitExited(t, p.Exited())
	if code, _ := p.ExitStatus(); code != 3 {
		t.Fatalf("init exit %d", code)
	}
	p.Release(ctx)
}

func TestMakeDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c1")
	if err := MakeDir("c1", dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir: %v, %v; want mode 0700", fi.Mode(), err)
	}
	if err := MakeDir("c1", dir); !errdefs.IsAlreadyExists(err) {
		t.Errorf("again: %v, want already exists", err)
	}
}

// TestReleaseOutlivesItsRequest: the delete of a container whose request
// went away (containerd killed mid-RemoveContainer) still runs to its end:
// the task's record goes with the request, runc's state must too.
func TestReleaseOutlivesItsRequest(t *testing.T) {
	f := newFixture(t)
	p := New("c1", f.dir, f.r, Pidfd{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.Release(ctx)
	if _, err := os.Stat(filepath.Join(f.state, "deleted")); err != nil {
		t.Fatalf("runc delete did not run to its end under a cancelled request: %v (calls: %v)", err, f.calls(t))
	}
}

// Processes watched through pidfds (WaitFor, Pidfd) cost no goroutine
// until they exit; the exit is then recorded with its status.
func TestWatchByNotify(t *testing.T) {
	var pids []int
	var inits []*Init
	before := goruntime.NumGoroutine()
	for i := 0; i < 20; i++ {
		cmd := exec.Command("/bin/sleep", "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid // Release makes it -1: never signal that
		w, err := proc.Open(pid)
		if err != nil {
			_ = cmd.Process.Kill()
			t.Fatal(err)
		}
		_ = cmd.Process.Release() // the watch reaps it
		p := New("n"+strconv.Itoa(i), t.TempDir(), &runc.Runc{Command: "/nonexistent"}, Pidfd{})
		p.Watch(pid, WaitFor(w))
		pids, inits = append(pids, pid), append(inits, p)
	}
	if n := goruntime.NumGoroutine() - before; n > 5 {
		t.Errorf("%d more goroutines for 20 watched inits, want none per init", n)
	}
	for _, pid := range pids {
		if pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	for _, p := range inits {
		waitExited(t, p.Exited())
		if code, _ := p.ExitStatus(); code != 128+15 {
			t.Errorf("exit %d, want %d", code, 128+15)
		}
	}
}
