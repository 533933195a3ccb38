package taskfwd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// Unit tests of the Forwarding options (an application kernel's contract).

// kernelGuest is a fakeGuest that is an application kernel rooted at its
// share: the guest sees the share as "/".
type kernelGuest struct {
	fakeGuest
	fw Forwarding
}

func (g *kernelGuest) Share() (string, string) { return g.share, "/" }
func (g *kernelGuest) Forwarding() Forwarding  { return g.fw }

var _ Forwarder = (*kernelGuest)(nil)

// mkfile writes content at p, making its directory.
func mkfile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOpenInRoot: a destination is resolved inside the rootfs, symlinks
// included (absolute ones from the rootfs, dangling ones created where they
// point), and what is missing is created there, never outside.
func TestOpenInRoot(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	outside := filepath.Join(dir, "outside")
	mkfile(t, filepath.Join(root, "etc", "passwd"), "root")
	mkfile(t, filepath.Join(root, "file"), "x")
	for link, target := range map[string]string{
		"etc/resolv.conf": "../run/systemd/resolv.conf", // dangling, relative
		"abs":             "/etc",                       // absolute: the rootfs's /etc
		"escape":          "../../outside",              // ".." stops at the rootfs
		"loop":            "loop",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		dest string
		dir  bool
		want string // created or found, relative to the rootfs
	}{
		{"/etc/hosts", false, "etc/hosts"},
		{"/etc/passwd", false, "etc/passwd"},
		{"/etc/resolv.conf", false, "run/systemd/resolv.conf"},
		{"/abs/x", true, "etc/x"},
		{"/escape/y", true, "outside/y"},
		{"/new/deep/dir", true, "new/deep/dir"},
		{"../../up", false, "up"},
	} {
		f, err := openInRoot(root, c.dest, c.dir)
		if err != nil {
			t.Errorf("%s: %v", c.dest, err)
			continue
		}
		got, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
		f.Close()
		if got != filepath.Join(root, c.want) {
			t.Errorf("%s: opened %s, want %s", c.dest, got, filepath.Join(root, c.want))
		}
		fi, err := os.Stat(filepath.Join(root, c.want))
		if err != nil || fi.IsDir() != c.dir {
			t.Errorf("%s: %v (dir %v)", c.dest, err, c.dir)
		}
	}
	if _, err := os.Stat(outside); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("something was made outside the rootfs: %v", err)
	}
	for _, dest := range []string{"/", "/file/x", "/loop/x"} {
		if f, err := openInRoot(root, dest, true); err == nil {
			f.Close()
			t.Errorf("%s: opened", dest)
		} else if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want InvalidArgument", dest, err)
		}
	}
}

// TestWriteBundleBindsInRootfs: with BindsInRootfs every bind is made at
// its destination in the rootfs and dropped from config.json, read-only
// where asked; one below a mount the spec keeps (/dev) is made as for an
// agent, its source the guest's path; with PodShm, /dev/shm is a bind of
// the pod's; removeBundle leaves nothing.
func TestWriteBundleBindsInRootfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
	t.Run("tmpfs shm", func(t *testing.T) { testWriteBundleBindsInRootfs(t, false) })
	t.Run("pod shm", func(t *testing.T) { testWriteBundleBindsInRootfs(t, true) })
}

func testWriteBundleBindsInRootfs(t *testing.T, podShm bool) {
	dir := t.TempDir()
	share := filepath.Join(dir, "share")
	image := filepath.Join(dir, "image")
	vol := filepath.Join(dir, "vol")
	mkfile(t, filepath.Join(image, "etc", "passwd"), "root")
	mkfile(t, filepath.Join(vol, "data"), "volume")
	mkfile(t, filepath.Join(dir, "file"), "file")
	mkfile(t, filepath.Join(dir, "term"), "")
	mkfile(t, filepath.Join(share, ".pod", "hosts"), "127.0.0.1 pod")
	g := &kernelGuest{fakeGuest: fakeGuest{share: share, files: map[string]string{"/etc/hosts": filepath.Join(share, ".pod", "hosts")}},
		fw: Forwarding{BindsInRootfs: true}}
	want := "/proc=proc /dev=tmpfs /dev/shm=shm /dev/termination-log=/c1/mounts/5"
	if podShm {
		g.fw.PodShm = filepath.Join(dir, "podshm")
		mkfile(t, filepath.Join(g.fw.PodShm, "seg"), "shared")
		want = "/proc=proc /dev=tmpfs /dev/shm=/c1/mounts/2 /dev/termination-log=/c1/mounts/5"
	}
	sp := &specs.Spec{Root: &specs.Root{Path: image}, Process: &specs.Process{Args: []string{"sh"}}, Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm"},
		{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "ro", "nosuid"}},
		{Destination: "/srv/file", Type: "bind", Source: "file", Options: []string{"bind"}}, // relative to the bundle
		{Destination: "/dev/termination-log", Type: "bind", Source: filepath.Join(dir, "term"), Options: []string{"rbind"}},
	}}
	st := newCtrState(g, "c1")
	if st.Bundle != "/c1" {
		t.Fatalf("bundle in the guest %q", st.Bundle)
	}
	if err := os.Mkdir(st.Dir, 0o711); err != nil {
		t.Fatal(err)
	}
	defer removeBundle(st.Dir)
	if err := writeBundle(context.Background(), &task.CreateRequest{ID: "c1", Bundle: dir, Spec: sp}, g, g.Forwarding(), st); err != nil {
		t.Fatal(err)
	}
	got := readSpecFile(t, filepath.Join(st.Dir, configJSON))
	var dsts []string
	for _, m := range got.Mounts {
		dsts = append(dsts, m.Destination+"="+m.Source)
	}
	if strings.Join(dsts, " ") != want {
		t.Errorf("config.json mounts %v, want %s", dsts, want)
	}
	if podShm {
		if b, err := os.ReadFile(filepath.Join(st.Dir, mountsDir, "2", "seg")); err != nil || string(b) != "shared" {
			t.Errorf("the pod's /dev/shm at mounts/2: %q, %v", b, err)
		}
	}
	rootfs := filepath.Join(st.Dir, rootfsDir)
	for p, content := range map[string]string{"vol/data": "volume", "srv/file": "file", "etc/hosts": "127.0.0.1 pod", "etc/passwd": "root"} {
		if b, err := os.ReadFile(filepath.Join(rootfs, p)); err != nil || string(b) != content {
			t.Errorf("%s in the rootfs: %q, %v", p, b, err)
		}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(filepath.Join(rootfs, "vol"), &sfs); err != nil || sfs.Flags&unix.ST_RDONLY == 0 || sfs.Flags&unix.ST_NOSUID == 0 {
		t.Errorf("/vol: %v, flags %#x (want ro, nosuid)", err, sfs.Flags)
	}
	if err := unix.Statfs(filepath.Join(rootfs, "srv", "file"), &sfs); err != nil || sfs.Flags&unix.ST_RDONLY != 0 {
		t.Errorf("/srv/file: %v, flags %#x (want rw)", err, sfs.Flags)
	}
	if err := removeBundle(st.Dir); err != nil {
		t.Fatal(err)
	}
	if left := mountsBelow(t, dir); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
	if b, err := os.ReadFile(filepath.Join(vol, "data")); err != nil || string(b) != "volume" {
		t.Errorf("the volume's source: %q, %v", b, err)
	}
}

// TestStdioByPath: containerd's FIFOs are bound into the container's
// directory (Kuasar's names), the guest gets their paths as it sees them,
// the bindings go with the process; URIs are refused.
func TestStdioByPath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
	dir := t.TempDir()
	share := filepath.Join(dir, "share")
	fifos := map[string]string{}
	for _, n := range []string{"in", "out", "err", "xout"} {
		fifos[n] = filepath.Join(dir, n)
		if err := unix.Mkfifo(fifos[n], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	life, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := New(Config{Life: life}).(*backend)
	g := &kernelGuest{fakeGuest: fakeGuest{share: share}, fw: Forwarding{StdioByPath: true, WaitExits: true}}
	st := newCtrState(g, "c1")
	if err := os.MkdirAll(st.Dir, 0o711); err != nil {
		t.Fatal(err)
	}
	defer removeBundle(st.Dir)
	c := b.newCtr(g, "c1", "ns", st)
	initP := c.newProcess("", stdio.Config{Stdin: fifos["in"], Stdout: fifos["out"], Stderr: fifos["err"]})
	if err := initP.openIO(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if gs, want := initP.guestStdio(), (stdio.Config{Stdin: "/c1/stdin", Stdout: "/c1/stdout", Stderr: "/c1/stderr"}); gs != want {
		t.Errorf("init: %+v, want %+v", gs, want)
	}
	x := c.newProcess("e1", stdio.Config{Stdout: fifos["xout"], Stderr: fifos["err"], Terminal: true})
	if err := x.openIO(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if gs, want := x.guestStdio(), (stdio.Config{Stdout: "/c1/e1-stdout", Terminal: true}); gs != want {
		t.Errorf("tty exec: %+v, want %+v", gs, want)
	}
	same := func(a, b string) bool {
		var sa, sb unix.Stat_t
		return unix.Stat(a, &sa) == nil && unix.Stat(b, &sb) == nil && sa.Ino == sb.Ino && sa.Dev == sb.Dev
	}
	for name, fifo := range map[string]string{"stdin": "in", "stdout": "out", "stderr": "err", "e1-stdout": "xout"} {
		if !same(filepath.Join(st.Dir, name), fifos[fifo]) {
			t.Errorf("%s is not containerd's FIFO %s", name, fifo)
		}
	}
	if _, err := os.Stat(filepath.Join(st.Dir, "e1-stderr")); err == nil {
		t.Error("a terminal's stderr was bound")
	}
	x.release()
	if _, err := os.Stat(filepath.Join(st.Dir, "e1-stdout")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the exec's stdout stays after its release: %v", err)
	}
	if !same(filepath.Join(st.Dir, "stdout"), fifos["out"]) {
		t.Error("the init's stdout went with the exec")
	}
	for _, bad := range []stdio.Config{{Stdout: "file://" + fifos["out"]}, {Stdout: "binary:///bin/logger"}, {Stdout: filepath.Join(dir, "missing")}} {
		p := c.newProcess("e2", bad)
		if err := p.openIO(context.Background(), false); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%+v: %v, want InvalidArgument", bad, err)
		}
		p.release()
	}
	initP.release()
	if err := removeBundle(st.Dir); err != nil {
		t.Fatal(err)
	}
	if left := mountsBelow(t, dir); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
}

// waitConn is a Conn whose Task answers Wait with what wait returns.
type waitConn struct {
	taskapi.TTRPCTaskService
	done chan struct{}
	wait func(*taskapi.WaitRequest) (*taskapi.WaitResponse, error)
}

func (c *waitConn) Task() taskapi.TTRPCTaskService { return c }
func (c *waitConn) Done() <-chan struct{}          { return c.done }
func (c *waitConn) Wait(_ context.Context, r *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	return c.wait(r)
}

// TestWaitExits: a process's exit comes from its Task.Wait, asked again on
// a new connection after a broken one; NotFound from the guest loses the
// process; the guest's end loses those still waiting.
func TestWaitExits(t *testing.T) {
	life, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := New(Config{Life: life}).(*backend)
	var calls atomic.Int32
	at := time.Unix(2000, 0)
	g := &kernelGuest{fw: Forwarding{StdioByPath: true, WaitExits: true}}
	g.conn = func() (Conn, error) {
		done := make(chan struct{})
		return &waitConn{done: done, wait: func(r *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
			switch {
			case r.GetExecID() == "gone":
				return nil, errdefs.ErrNotFound
			case r.GetExecID() == "long":
				<-life.Done()
				return nil, life.Err()
			case calls.Add(1) == 1:
				close(done) // the connection broke under the call
				return nil, errdefs.ErrUnavailable
			}
			return &taskapi.WaitResponse{ExitStatus: 3, ExitedAt: timestamppb.New(at)}, nil
		}}, nil
	}
	c := b.newCtr(g, "c1", "ns", ctrState{})
	c.process = c.newProcess("", stdio.Config{})
	gone := c.newProcess("gone", stdio.Config{})
	long := c.newProcess("long", stdio.Config{})
	for _, p := range []*process{c.process, gone, long} {
		if err := c.pump.add(p); err != nil {
			t.Fatal(err)
		}
		p.started.Store(true)
		p.attach()
	}
	wait := func(p *process, code uint32) {
		t.Helper()
		select {
		case <-p.Exited():
		case <-time.After(5 * time.Second):
			t.Fatalf("%q did not end", p.execID)
		}
		if got, _ := p.ExitStatus(); got != code {
			t.Errorf("%q: exit %d, want %d", p.execID, got, code)
		}
	}
	wait(c.process, 3)
	if _, when := c.ExitStatus(); !when.Equal(at) {
		t.Errorf("exit time %s", when)
	}
	if calls.Load() != 2 {
		t.Errorf("Wait calls %d, want 2 (one broken)", calls.Load())
	}
	wait(gone, 255)
	g.Set(255, time.Now()) // the guest goes
	wait(long, 255)
}
