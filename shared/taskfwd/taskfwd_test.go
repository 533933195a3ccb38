package taskfwd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/shared/events"
	"github.com/magnetar-runtime/magnetar/shared/fdstore"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// TestLifecycle: create, start, stdout and stderr read from containerd's
// FIFOs, all of it there (and EOF) once the exit is reported, the exit
// code, the events in order, delete leaving nothing.
func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	id := "life-" + randomID()
	p := e.run(id, opts{args: sh("echo out-line; echo err-line >&2; exit 3")})
	if code := e.wait(p, waitLong); code != 3 {
		t.Fatalf("exit %d, want 3", code)
	}
	// the output is drained before the exit is reported: the FIFOs hold it
	// all and reach EOF at once
	if got := p.stdout.eof(t, waitShort); got != "out-line\n" {
		t.Errorf("stdout %q", got)
	}
	if got := p.stderr.eof(t, waitShort); got != "err-line\n" {
		t.Errorf("stderr %q", got)
	}
	st := e.state(p)
	if st.GetStatus() != tasktypes.Status_STOPPED || st.GetExitStatus() != 3 || st.GetPid() == 0 {
		t.Errorf("state %v", st)
	}
	e.delete(p)
	want := []string{events.TopicTaskCreate, events.TopicTaskStart, events.TopicTaskExit, events.TopicTaskDelete}
	if got := e.pub.topics(id, ""); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("events %v, want %v", got, want)
	}
}

// TestRootfsFromRootPath: without rootfs mounts, config.json's root.path
// (on the host) is bound into the share.
func TestRootfsFromRootPath(t *testing.T) {
	e := newEnv(t)
	id := "rootpath-" + randomID()
	p := e.run(id, opts{args: sh("echo hi; ls /bin/busybox"), rootfs: []*types.Mount{}})
	if code := e.wait(p, waitLong); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := p.stdout.eof(t, waitShort); got != "hi\n/bin/busybox\n" {
		t.Errorf("stdout %q", got)
	}
	e.delete(p)
}

// TestExec: an exec's output and exit code; a second exec with stdin; a
// killed exec; execs deleted.
func TestExec(t *testing.T) {
	e := newEnv(t)
	id := "exec-" + randomID()
	c := e.run(id, opts{args: []string{"/bin/sleep", "1000"}, noStderr: true})
	x := e.exec(id, "x1", opts{args: sh("echo exec-out; echo exec-err >&2; exit 7")})
	if code := e.wait(x, waitLong); code != 7 {
		t.Fatalf("exec exit %d, want 7", code)
	}
	if got := x.stdout.eof(t, waitShort); got != "exec-out\n" {
		t.Errorf("exec stdout %q", got)
	}
	if got := x.stderr.eof(t, waitShort); got != "exec-err\n" {
		t.Errorf("exec stderr %q", got)
	}
	if st := e.state(x); st.GetPid() == 0 || st.GetPid() == e.state(c).GetPid() {
		t.Errorf("exec pid %d (init %d)", st.GetPid(), e.state(c).GetPid())
	}
	e.delete(x)

	cat := e.exec(id, "cat", opts{args: []string{"/bin/cat"}, stdin: true})
	cat.write(t, "through exec\n")
	cat.stdout.waitFor(t, "through exec\n")
	e.closeIO(cat)
	if code := e.wait(cat, waitLong); code != 0 {
		t.Fatalf("cat exec exit %d", code)
	}
	e.delete(cat)

	sl := e.exec(id, "sleeper", opts{args: []string{"/bin/sleep", "1000"}})
	e.kill(sl, syscall.SIGKILL, false)
	if code := e.wait(sl, waitLong); code != 128+9 {
		t.Fatalf("killed exec exit %d", code)
	}
	e.delete(sl)
	want := []string{events.TopicTaskExecAdded, events.TopicTaskExecStarted, events.TopicTaskExit}
	if got := e.pub.topics(id, "x1"); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("exec events %v, want %v", got, want)
	}

	e.kill(c, syscall.SIGKILL, true)
	if code := e.wait(c, waitLong); code != 128+9 {
		t.Fatalf("init exit %d", code)
	}
	e.delete(c)
}

// TestStdinCloseIO: stdin copied to the guest, ended by CloseIO after what
// was written.
func TestStdinCloseIO(t *testing.T) {
	e := newEnv(t)
	id := "stdin-" + randomID()
	p := e.run(id, opts{args: []string{"/bin/cat"}, stdin: true})
	p.write(t, "hello\n")
	p.stdout.waitFor(t, "hello\n")
	p.write(t, "last")
	e.closeIO(p)
	if code := e.wait(p, waitLong); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := p.stdout.eof(t, waitShort); got != "hello\nlast" {
		t.Errorf("stdout %q", got)
	}
	e.delete(p)
}

// TestStdinEOF: containerd closing its end of stdin ends the process's
// stdin too.
func TestStdinEOF(t *testing.T) {
	e := newEnv(t)
	id := "stdin-eof-" + randomID()
	p := e.run(id, opts{args: sh("cat; echo done"), stdin: true})
	p.write(t, "abc\n")
	p.stdin.Close()
	if code := e.wait(p, waitLong); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := p.stdout.eof(t, waitShort); got != "abc\ndone\n" {
		t.Errorf("stdout %q", got)
	}
	e.delete(p)
}

// TestTerminal: a terminal's output on stdout, its input, a resize, ^D on
// CloseIO, for an init and an exec.
func TestTerminal(t *testing.T) {
	e := newEnv(t)
	id := "tty-" + randomID()
	p := e.run(id, opts{args: sh("tty; read x; echo got $x; stty size; cat; echo after-eof"), tty: true, stdin: true})
	p.stdout.waitFor(t, "/dev/pts/")
	if _, err := e.svc.ResizePty(e.ctx(), &taskapi.ResizePtyRequest{ID: id, Width: 91, Height: 37}); err != nil {
		t.Fatalf("resize: %v", err)
	}
	p.write(t, "tty-in\n")
	p.stdout.waitFor(t, "37 91")
	p.write(t, "more\n")
	p.stdout.waitFor(t, "more\r\nmore\r\n") // the echo, then cat
	e.closeIO(p)
	if code := e.wait(p, waitLong); code != 0 {
		t.Fatalf("exit %d", code)
	}
	got := p.stdout.eof(t, waitShort)
	if !strings.Contains(got, "got tty-in") || !strings.Contains(got, "after-eof") {
		t.Errorf("terminal output %q", got)
	}

	c := e.run("tty-ctr-"+randomID(), opts{args: []string{"/bin/sleep", "1000"}, noStderr: true})
	x := e.exec(c.id, "tty", opts{args: sh("tty; exit 2"), tty: true})
	if code := e.wait(x, waitLong); code != 2 {
		t.Fatalf("tty exec exit %d", code)
	}
	if got := x.stdout.eof(t, waitShort); !strings.Contains(got, "/dev/pts/") {
		t.Errorf("tty exec output %q", got)
	}
	e.delete(x)
	e.kill(c, syscall.SIGKILL, true)
	e.wait(c, waitLong)
	e.delete(c)
	e.delete(p)
}

// TestKill: SIGTERM and SIGKILL reach the process; a kill after the exit is
// fine; a container killed before it started exits too.
func TestKill(t *testing.T) {
	e := newEnv(t)
	p := e.run("kill-"+randomID(), opts{args: sh("trap 'exit 42' TERM; echo ready; while true; do sleep 0.05; done")})
	p.stdout.waitFor(t, "ready")
	e.kill(p, syscall.SIGTERM, false)
	if code := e.wait(p, waitLong); code != 42 {
		t.Fatalf("exit %d, want 42 (the TERM trap)", code)
	}
	e.kill(p, syscall.SIGKILL, false) // after the exit: fine
	e.delete(p)

	c, err := e.create("kill-created-"+randomID(), opts{args: []string{"/bin/sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.kill(c, syscall.SIGKILL, false)
	if code := e.wait(c, waitLong); code != 128+9 {
		t.Fatalf("created container killed: exit %d", code)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a container killed before it started took %s to exit (no output to drain)", d)
	}
	e.delete(c)
}

// TestLargeOutput: megabytes through the relays, flow-controlled, all of it
// in the FIFO when the exit is reported.
func TestLargeOutput(t *testing.T) {
	e := newEnv(t)
	const n = 4 << 20
	p := e.run("large-"+randomID(), opts{args: sh("/bin/busybox head -c 4194304 /dev/zero; /bin/busybox head -c 1048576 /dev/zero >&2"), noStderr: false})
	if code := e.wait(p, waitLong); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := p.stdout.eof(t, waitShort); len(got) != n {
		t.Errorf("stdout: %d bytes, want %d", len(got), n)
	}
	if got := p.stderr.eof(t, waitShort); len(got) != 1<<20 {
		t.Errorf("stderr: %d bytes, want %d", len(got), 1<<20)
	}
	e.delete(p)
}

// TestPidsStatsUpdatePause: guest pids, the guest's metrics, a resources
// update and pause/resume, forwarded.
func TestPidsStatsUpdatePause(t *testing.T) {
	e := newEnv(t)
	p := e.run("pids-"+randomID(), opts{args: sh("echo ready; while true; do sleep 0.05; done")})
	p.stdout.waitFor(t, "ready")
	pid := e.state(p).GetPid()
	r, err := e.svc.Pids(e.ctx(), &taskapi.PidsRequest{ID: p.id})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, pi := range r.GetProcesses() {
		found = found || pi.GetPid() == pid
	}
	if !found {
		t.Errorf("pids %v lack the init's guest pid %d", r.GetProcesses(), pid)
	}
	if s, err := e.svc.Stats(e.ctx(), &taskapi.StatsRequest{ID: p.id}); err != nil {
		t.Logf("stats (the guest's answer on this host's cgroups): %v", err)
	} else if s.GetStats() == nil {
		t.Error("stats: no metrics")
	}
	shares := uint64(512)
	res, _ := jsonAny(&specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &shares}})
	if _, err := e.svc.Update(e.ctx(), &taskapi.UpdateTaskRequest{ID: p.id, Resources: res}); err != nil {
		t.Logf("update (the guest's answer): %v", err)
	}
	if _, err := e.svc.Pause(e.ctx(), &taskapi.PauseRequest{ID: p.id}); err != nil {
		err = errgrpc.ToNative(err)
		if !errdefs.IsNotImplemented(err) && !errdefs.IsFailedPrecondition(err) {
			t.Errorf("pause: %v", err)
		}
	} else {
		if st := e.state(p); st.GetStatus() != tasktypes.Status_PAUSED {
			t.Errorf("paused: status %v", st.GetStatus())
		}
		if _, err := e.svc.Resume(e.ctx(), &taskapi.ResumeRequest{ID: p.id}); err != nil {
			t.Errorf("resume: %v", err)
		}
	}
	e.kill(p, syscall.SIGKILL, true)
	e.wait(p, waitLong)
	e.delete(p)
}

// TestVolumes: bind mounts from the host, read-write and read-only, a file,
// a source inside the share, the pod's files, /dev/shm, and mounts that are
// not binds, as the container sees them.
func TestVolumes(t *testing.T) {
	e := newEnv(t)
	rw := filepath.Join(e.dir, "vol-rw")
	ro := filepath.Join(e.dir, "vol-ro")
	for _, d := range []string{rw, ro} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ro, "data"), []byte("ro-data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(e.dir, "vol-file")
	if err := os.WriteFile(file, []byte("file-data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	podDir := filepath.Join(e.agent.share(), "pod")
	if err := os.Mkdir(podDir, 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(podDir, "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 pod-hosts\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.guest.files = map[string]string{"/etc/hosts": hosts}
	mounts := []specs.Mount{
		{Destination: "/rw", Type: "bind", Source: rw, Options: []string{"rbind", "rw"}},
		{Destination: "/ro", Type: "bind", Source: ro, Options: []string{"rbind", "ro"}},
		{Destination: "/file", Type: "bind", Source: file, Options: []string{"bind", "ro"}},
		{Destination: "/shared", Source: podDir, Options: []string{"rbind"}}, // type-less bind
		{Destination: "/dev/shm", Type: "bind", Source: filepath.Join(e.dir, "no-such-shm"), Options: []string{"rbind"}},
		{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}},
	}
	script := `echo hi > /rw/new && cat /ro/data && cat /file && cat /etc/hosts && ls /shared/hosts &&
		if echo x > /ro/x 2>/dev/null; then echo ro-writable; fi &&
		grep -q " /scratch tmpfs" /proc/mounts && echo scratch-tmpfs && echo ok`
	p := e.run("vol-"+randomID(), opts{args: sh(script), mounts: mounts})
	// the host's copy of a read-only volume in the share is read-only too
	sp := readSpecFile(t, filepath.Join(e.agent.share(), p.id, configJSON))
	for _, m := range sp.Mounts {
		if m.Destination != "/ro" {
			continue
		}
		var sfs unix.Statfs_t
		if err := unix.Statfs(m.Source, &sfs); err != nil {
			t.Fatal(err)
		}
		if sfs.Flags&unix.ST_RDONLY == 0 {
			t.Error("the read-only volume is writable in the share")
		}
	}
	if code := e.wait(p, waitLong); code != 0 {
		t.Fatalf("exit %d; stdout %q stderr %q", code, p.stdout.String(), p.stderr.String())
	}
	want := "ro-data\nfile-data\n127.0.0.1 pod-hosts\n/shared/hosts\nscratch-tmpfs\nok\n"
	if got := p.stdout.eof(t, waitShort); got != want {
		t.Errorf("stdout %q, want %q (stderr %q)", got, want, p.stderr.String())
	}
	if b, err := os.ReadFile(filepath.Join(rw, "new")); err != nil || string(b) != "hi\n" {
		t.Errorf("rw volume on the host: %q %v", b, err)
	}
	if sp.Root.Path != rootfsDir {
		t.Errorf("root.path %q", sp.Root.Path)
	}
	for _, m := range sp.Mounts {
		if m.Destination == "/dev/shm" && m.Source != "/dev/shm" {
			t.Errorf("/dev/shm source %q, want the guest's", m.Source)
		}
		if m.Destination == "/etc/hosts" && m.Source != hosts {
			t.Errorf("/etc/hosts source %q, want the pod file's guest path", m.Source)
		}
	}
	e.delete(p)
	if _, err := os.Stat(hosts); err != nil {
		t.Errorf("the pod's file went with the container: %v", err)
	}
}

// TestBadInputs: a rootfs that does not mount, a bind source that does not
// exist, a binary that is not there (runc's error, with its code), a pod
// that is not a guest: each fails clearly and leaves nothing.
func TestBadInputs(t *testing.T) {
	e := newEnv(t)
	check := func(name string, err error, is func(error) bool, text string) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: created", name)
		}
		if !is(err) || !strings.Contains(err.Error(), text) {
			t.Errorf("%s: %v (want the category and %q)", name, err, text)
		}
	}
	id := "bad-rootfs-" + randomID()
	_, err := e.create(id, opts{args: []string{"/bin/true"}, rootfs: []*types.Mount{{Type: "overlay", Source: "overlay",
		Options: []string{"lowerdir=" + filepath.Join(e.dir, "nope"), "upperdir=/x", "workdir=/y"}}}})
	check("rootfs", err, func(err error) bool { return err != nil }, "rootfs")
	e.checkGone(id)

	id = "bad-bind-" + randomID()
	_, err = e.create(id, opts{args: []string{"/bin/true"}, mounts: []specs.Mount{
		{Destination: "/ok", Type: "bind", Source: e.dir, Options: []string{"rbind"}},
		{Destination: "/data", Type: "bind", Source: filepath.Join(e.dir, "no-such-volume"), Options: []string{"rbind"}}}})
	check("bind", err, errdefs.IsInvalidArgument, "no-such-volume")
	e.checkGone(id)

	id = "bad-binary-" + randomID()
	_, err = e.create(id, opts{args: []string{"/no/such/binary"}})
	check("binary", err, errdefs.IsFailedPrecondition, "/no/such/binary")
	e.checkGone(id)

	id = "bad-pod-" + randomID()
	b, rootfs := e.bundle(id, opts{args: []string{"/bin/true"}})
	sp := readSpecFile(t, filepath.Join(b, "config.json"))
	be := New(Config{Life: e.ctx()})
	_, err = be.Create(e.ctx(), &task.CreateRequest{ID: id, Namespace: testNS, Bundle: b, Spec: sp, Rootfs: rootfs})
	check("pod", err, errdefs.IsInvalidArgument, "no guest pod")
	e.checkGone(id)

	// an exec of a missing binary fails at Start with runc's error; the
	// container runs on, the exec is deleted
	p := e.run("after-bad-"+randomID(), opts{args: sh("echo fine; exec sleep 1000")})
	p.stdout.waitFor(t, "fine\n")
	x := &cproc{id: p.id, exec: "missing"}
	e.fifos(x, filepath.Join(e.dir, "fifo", p.id+"-missing"), opts{})
	spec, _ := json.Marshal(&specs.Process{Args: []string{"/no/such/exec"}, Cwd: "/"})
	if _, err := e.svc.Exec(e.ctx(), &taskapi.ExecProcessRequest{ID: p.id, ExecID: "missing", Stdout: x.stdout.path, Stderr: x.stderrPath(),
		Spec: &anypb.Any{TypeUrl: processTypeURL, Value: spec}}); err != nil {
		t.Fatalf("exec: %v", err)
	}
	_, err = e.svc.Start(e.ctx(), &taskapi.StartRequest{ID: p.id, ExecID: "missing"})
	check("exec binary", errgrpc.ToNative(err), errdefs.IsFailedPrecondition, "/no/such/exec")
	e.delete(x)
	if st := e.state(p); st.GetStatus() != tasktypes.Status_RUNNING {
		t.Errorf("container after a failed exec: %v", st.GetStatus())
	}
	e.kill(p, syscall.SIGKILL, false)
	e.wait(p, waitLong)
	e.delete(p)
}

// TestGuestDies: when the guest goes (the agent killed), every process of
// it ends at once with sandbox.ExitCodeLost, and Delete still cleans the
// host side.
func TestGuestDies(t *testing.T) {
	e := newEnv(t)
	p := e.run("dies-"+randomID(), opts{args: sh("echo ready; exec sleep 1000"), stdin: true})
	p.stdout.waitFor(t, "ready")
	x := e.exec(p.id, "x", opts{args: []string{"/bin/sleep", "1000"}})
	e.killAgent()
	start := time.Now()
	if code := e.wait(x, waitShort); code != sandbox.ExitCodeLost {
		t.Errorf("exec exit %d, want %d", code, sandbox.ExitCodeLost)
	}
	if code := e.wait(p, waitShort); code != sandbox.ExitCodeLost {
		t.Errorf("init exit %d, want %d", code, sandbox.ExitCodeLost)
	}
	t.Logf("exits reported %s after the guest died", time.Since(start).Round(time.Millisecond))
	p.stdout.eof(t, waitShort)
	e.delete(x)
	e.delete(p)
	// a new container in a gone pod is refused
	if _, err := e.create("dies-new-"+randomID(), opts{args: []string{"/bin/true"}}); err == nil {
		t.Error("created a container in a gone pod")
	}
}

// TestReconnect: the guest's connection breaks while a container runs: the
// output goes on, stdin still reaches it, its exit is seen.
func TestReconnect(t *testing.T) {
	e := newEnv(t)
	p := e.run("reconnect-"+randomID(), opts{args: sh("echo one; read x; echo got $x; read y; echo got $y; exit 6"), stdin: true})
	p.stdout.waitFor(t, "one\n")
	e.guest.breakConn()
	p.write(t, "two\n")
	p.stdout.waitFor(t, "got two\n")
	e.guest.breakConn()
	time.Sleep(50 * time.Millisecond)
	p.write(t, "three\n")
	if code := e.wait(p, waitLong); code != 6 {
		t.Fatalf("exit %d", code)
	}
	if got := p.stdout.eof(t, waitShort); got != "one\ngot two\ngot three\n" {
		t.Errorf("stdout %q", got)
	}
	e.delete(p)
}

func jsonAny(v any) (*anypb.Any, error) {
	data, err := json.Marshal(v)
	return &anypb.Any{TypeUrl: resourcesTypeURL, Value: data}, err
}

// fdsOn counts the descriptors of this process open on the file at path:
// containerd's end (the test's), the host side's, the fd store's.
func fdsOn(t *testing.T, path string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ent := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", ent.Name())); err == nil && l == path {
			n++
		}
	}
	return n
}

// waitFDsOn waits until want descriptors are open on path.
func waitFDsOn(t *testing.T, path string, want int) {
	t.Helper()
	deadline := time.Now().Add(waitShort)
	for n := fdsOn(t, path); n != want; n = fdsOn(t, path) {
		if time.Now().After(deadline) {
			t.Fatalf("%d descriptors open on %s, want %d", n, filepath.Base(path), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noEOF checks that containerd's reader of an output FIFO saw no EOF.
func (o *outFIFO) noEOF(t *testing.T, when string) {
	t.Helper()
	select {
	case <-o.done:
		t.Errorf("%s: %s saw EOF, read %q", when, filepath.Base(o.path), o.String())
	default:
	}
}

// TestRestart: the host side restarts (a new backend and service on the
// same state, a new connection) while the guest runs on: the running
// container keeps running with its stdio relayed again, a running exec is
// found again, an exec that exited meanwhile ends with the guest's status
// and output, an exited container stays exited, a new exec works, and Wait
// finds the init's exit.
//
// containerd's side never notices: the fd store (the keeper's, served in
// the test process) holds the FIFOs while no host side runs, so the
// readers of the outputs see no EOF and a write into stdin no EPIPE (it
// waits in the FIFO for the next host side); each output does end, with
// the process, and the store holds nothing once everything is deleted.
// What an earlier daemon held for a process nobody recovers is closed.
func TestRestart(t *testing.T) {
	e := newEnv(t)
	id := "restart-" + randomID()
	p := e.run(id, opts{args: sh("echo started; read x; echo got $x; read y; echo got $y; exit 4"), stdin: true})
	p.stdout.waitFor(t, "started\n")
	sleeper := e.exec(id, "sleeper", opts{args: []string{"/bin/sleep", "1000"}})
	quick := e.exec(id, "quick", opts{args: sh("sleep 0.5; echo quick-out; exit 9")})
	doneID := "restart-done-" + randomID()
	done := e.run(doneID, opts{args: sh("exit 2")})
	if code := e.wait(done, waitLong); code != 2 {
		t.Fatalf("exit %d", code)
	}
	pid := e.state(p).GetPid()
	held := []string{id + "/-/stderr", id + "/-/stdin", id + "/-/stdout", id + "/quick/stderr", id + "/quick/stdout",
		id + "/sleeper/stderr", id + "/sleeper/stdout"}
	deadline := time.Now().Add(waitShort)
	for keys := e.fdStore.Keys(); !slices.Equal(keys, held); keys = e.fdStore.Keys() {
		// the exited container's are released once its output is drained
		if time.Now().After(deadline) {
			t.Fatalf("held %v, want %v", keys, held)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// an earlier daemon held this for a process whose record is gone
	ghostR, ghostW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer ghostR.Close()
	if err := fdstore.NewClient(e.fdSock).Hold("ghost/-/stdout", ghostW); err != nil {
		t.Fatal(err)
	}
	ghostW.Close()

	e.down()
	// containerd's end and the store's are all that is left open
	waitFDsOn(t, p.stdout.path, 2)
	waitFDsOn(t, p.stdinPath, 2)
	if _, err := io.WriteString(p.stdin, "x\n"); err != nil {
		t.Fatalf("stdin written while no host side runs: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	for _, q := range []*cproc{p, sleeper, quick} {
		q.stdout.noEOF(t, "no host side")
		q.stderr.noEOF(t, "no host side")
	}
	e.up()

	if st := e.state(p); st.GetStatus() != tasktypes.Status_RUNNING || st.GetPid() != pid {
		t.Fatalf("after the restart: %v (pid was %d)", st, pid)
	}
	p.stdout.waitFor(t, "got x\n") // what was written while no host side ran
	_ = ghostR.SetReadDeadline(time.Now().Add(waitShort))
	if _, err := ghostR.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("a descriptor held for no recovered process: read %v, want EOF", err)
	}
	if code := e.wait(done, waitShort); code != 2 {
		t.Errorf("exited container: exit %d after the restart", code)
	}
	if code := e.wait(quick, waitLong); code != 9 {
		t.Errorf("exec that exited across the restart: exit %d, want 9", code)
	}
	if got := quick.stdout.eof(t, waitShort); got != "quick-out\n" {
		t.Errorf("its output %q", got)
	}
	x := e.exec(id, "after", opts{args: sh("echo after-restart")})
	if code := e.wait(x, waitLong); code != 0 {
		t.Errorf("new exec: exit %d", code)
	}
	if got := x.stdout.eof(t, waitShort); got != "after-restart\n" {
		t.Errorf("new exec output %q", got)
	}
	e.kill(sleeper, syscall.SIGKILL, false)
	if code := e.wait(sleeper, waitLong); code != 128+9 {
		t.Errorf("recovered exec killed: exit %d", code)
	}
	sleeper.stdout.eof(t, waitShort)
	p.stdout.noEOF(t, "running")
	p.write(t, "y\n")
	if code := e.wait(p, waitLong); code != 4 {
		t.Fatalf("init exit %d, want 4", code)
	}
	if got := p.stdout.eof(t, waitShort); got != "started\ngot x\ngot y\n" {
		t.Errorf("init stdout %q", got)
	}
	// the exited process's stdin is closed: containerd's writes fail
	// rather than fill a FIFO the store would hold for nobody
	for deadline := time.Now().Add(waitShort); ; time.Sleep(10 * time.Millisecond) {
		_, err := io.WriteString(p.stdin, "z")
		if errors.Is(err, syscall.EPIPE) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("stdin of an exited process: %v, want EPIPE", err)
		}
	}
	for _, x := range []*cproc{x, sleeper, quick} {
		e.delete(x)
	}
	e.delete(p)
	e.delete(done)
	if keys := e.fdStore.Keys(); len(keys) != 0 {
		t.Errorf("held after every process was deleted: %v", keys)
	}
}

// TestRestartInsideCreate: a daemon killed inside Create left a record in
// StatusCreating and a container in the guest; the restarted daemon rolls
// it back: nothing left in the guest, the share or the records.
func TestRestartInsideCreate(t *testing.T) {
	e := newEnv(t)
	id := "cut-" + randomID()
	if _, err := e.create(id, opts{args: []string{"/bin/sleep", "1000"}}); err != nil {
		t.Fatal(err)
	}
	// the record as it was before the backend's Create ran
	rp := filepath.Join(e.stateDir, id+".json")
	var rec task.Record
	b, err := os.ReadFile(rp)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	rec.Status, rec.Backend, rec.Pid = task.StatusCreating, nil, 0
	b, _ = json.Marshal(&rec)
	e.stopSvc() // first: the dying daemon writes no more
	if err := os.WriteFile(rp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	e.restart()
	e.checkGone(id)
	if _, err := os.Stat(rp); !os.IsNotExist(err) {
		t.Errorf("record left: %v", err)
	}
	if _, err := e.svc.State(e.ctx(), &taskapi.StateRequest{ID: id}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("state after the rollback: %v", err)
	}
}

// TestRestartGuestGone: the guest died while the daemon was away: its
// containers are reported lost and can be deleted.
func TestRestartGuestGone(t *testing.T) {
	e := newEnv(t)
	p := e.run("gone-"+randomID(), opts{args: []string{"/bin/sleep", "1000"}})
	e.stopSvc()
	e.killAgent()
	e.restart()
	if code := e.wait(p, waitShort); code != sandbox.ExitCodeLost {
		t.Errorf("exit %d, want %d", code, sandbox.ExitCodeLost)
	}
	e.delete(p)
}

// TestNoLeaks: containers and execs with every kind of stdio, run and
// deleted, leave no descriptor and no goroutine behind in the host process,
// and nothing held in the fd store.
func TestNoLeaks(t *testing.T) {
	e := newEnv(t)
	round := func(i int) {
		id := fmt.Sprintf("leak-%d-%s", i, randomID())
		p := e.run(id, opts{args: []string{"/bin/cat"}, stdin: true})
		p.write(t, "x\n")
		p.stdout.waitFor(t, "x\n")
		x := e.exec(id, "tty", opts{args: sh("tty; cat"), tty: true, stdin: true})
		x.stdout.waitFor(t, "/dev/pts")
		e.closeIO(x)
		e.wait(x, waitLong)
		e.delete(x)
		y := e.exec(id, "plain", opts{args: sh("echo y; echo z >&2")})
		e.wait(y, waitLong)
		e.delete(y)
		e.closeIO(p)
		e.wait(p, waitLong)
		e.delete(p)
		for _, q := range []*cproc{p, x, y} {
			q.close()
		}
	}
	round(0) // the connection, the pump, the runtime's own
	time.Sleep(200 * time.Millisecond)
	fds, gs := openFDs(t), runtime.NumGoroutine()
	for i := 1; i <= 3; i++ {
		round(i)
	}
	var nfds, ngs int
	for deadline := time.Now().Add(waitShort); ; time.Sleep(50 * time.Millisecond) {
		nfds, ngs = openFDs(t), runtime.NumGoroutine()
		if (nfds <= fds && ngs <= gs) || time.Now().After(deadline) {
			break
		}
	}
	if nfds > fds {
		t.Errorf("descriptors: %d before, %d after 3 rounds", fds, nfds)
	}
	if keys := e.fdStore.Keys(); len(keys) != 0 {
		t.Errorf("the fd store holds %v after every process was deleted", keys)
	}
	if ngs > gs {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before, %d after 3 rounds\n%s", gs, ngs, buf[:runtime.Stack(buf, true)])
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
