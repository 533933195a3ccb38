package taskfwd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/events"
	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// Unit tests without an agent.

// fakeGuest is a Guest without a real connection: Conn answers what conn
// returns.
type fakeGuest struct {
	exit.Latch
	share string
	io    string
	files map[string]string
	conn  func() (Conn, error)
}

func (g *fakeGuest) ID() string              { return "pod" }
func (g *fakeGuest) Share() (string, string) { return g.share, "/run/magnetar/share" }
func (g *fakeGuest) Conn(context.Context) (Conn, error) {
	if g.conn == nil {
		return nil, errdefs.ErrUnavailable
	}
	return g.conn()
}
func (g *fakeGuest) PodFiles() map[string]string { return g.files }
func (g *fakeGuest) IORoot() string              { return g.io }

// fakeConn is a Conn whose every method but Done is unimplemented.
type fakeConn struct {
	Conn
	done chan struct{}
}

func (c *fakeConn) Done() <-chan struct{} { return c.done }

func TestGuestStdio(t *testing.T) {
	g := &fakeGuest{}
	got := agentStdio(g, "c1", "", stdio.Config{Stdin: "/x/in", Stdout: "/x/out", Stderr: "/x/err"})
	want := stdio.Config{Stdin: "/run/magnetar/io/c1/init/stdin", Stdout: "/run/magnetar/io/c1/init/stdout", Stderr: "/run/magnetar/io/c1/init/stderr"}
	if got != want {
		t.Errorf("init: %+v, want %+v", got, want)
	}
	// a terminal has no stderr; streams containerd did not give stay empty
	got = agentStdio(g, "c1", "e1", stdio.Config{Stdout: "/x/out", Stderr: "/x/err", Terminal: true})
	want = stdio.Config{Stdout: "/run/magnetar/io/c1/exec-e1/stdout", Terminal: true}
	if got != want {
		t.Errorf("tty exec: %+v, want %+v", got, want)
	}
	// each path is the contract's
	for _, p := range []string{want.Stdout} {
		if id, x, s, err := agentapi.ParseStdioPath(p); err != nil || id != "c1" || x != "e1" || s != agentapi.Stdout {
			t.Errorf("%s: %s %s %s %v", p, id, x, s, err)
		}
	}
	// a dev agent's own root
	g.io = "/tmp/dev/io"
	if got := agentStdio(g, "c1", "", stdio.Config{Stdin: "/x/in"}); got.Stdin != "/tmp/dev/io/c1/init/stdin" {
		t.Errorf("IORooter: %q", got.Stdin)
	}
}

func TestAddPodFiles(t *testing.T) {
	sp := &specs.Spec{Root: &specs.Root{Readonly: true}, Mounts: []specs.Mount{{Destination: "/etc/hosts", Type: "bind", Source: "/cri/hosts"}}}
	addPodFiles(sp, map[string]string{"/etc/hosts": "/share/pod/hosts", "/etc/resolv.conf": "/share/pod/resolv.conf", "/etc/hostname": "/share/pod/hostname"})
	if len(sp.Mounts) != 3 || sp.Mounts[0].Source != "/cri/hosts" {
		t.Fatalf("mounts %+v: the spec's own /etc/hosts must stay", sp.Mounts)
	}
	if sp.Mounts[1].Destination != "/etc/hostname" || sp.Mounts[2].Destination != "/etc/resolv.conf" {
		t.Errorf("pod files not added in order: %+v", sp.Mounts)
	}
	for _, m := range sp.Mounts[1:] {
		if !mount.IsBind(&m) || !hasOption(&m, "ro") {
			t.Errorf("%+v: want a read-only bind with a read-only root", m)
		}
	}
}

func TestIsBind(t *testing.T) {
	for _, c := range []struct {
		m    specs.Mount
		bind bool
	}{
		{specs.Mount{Type: "bind"}, true},
		{specs.Mount{Options: []string{"rbind", "ro"}}, true},
		{specs.Mount{Type: "none", Options: []string{"bind"}}, true},
		{specs.Mount{Type: "tmpfs", Options: []string{"nosuid"}}, false},
		{specs.Mount{Type: "proc"}, false},
	} {
		if got := mount.IsBind(&c.m); got != c.bind {
			t.Errorf("%+v: bind %v", c.m, got)
		}
	}
}

func TestWithNamespace(t *testing.T) {
	ctx := ttrpc.WithMetadata(context.Background(), ttrpc.MD{namespaceKey: {"other"}, "traceparent": {"x"}})
	out := withNamespace(ctx, "k8s.io")
	md, _ := ttrpc.GetMetadata(out)
	if v, _ := md.Get(namespaceKey); len(v) != 1 || v[0] != "k8s.io" {
		t.Errorf("namespace %v", v)
	}
	if v, _ := md.Get("traceparent"); len(v) != 1 {
		t.Errorf("other metadata lost: %v", md)
	}
	// the caller's metadata is not changed
	if v, _ := ttrpc.GetMetadataValue(ctx, namespaceKey); v != "other" {
		t.Errorf("caller's namespace changed to %q", v)
	}
	if v, _ := ttrpc.GetMetadataValue(withNamespace(context.Background(), "ns"), namespaceKey); v != "ns" {
		t.Errorf("without metadata: %q", v)
	}
}

// TestWithConn: a broken connection is retried on the next one; another
// error ends at once; a gone guest ends it.
func TestWithConn(t *testing.T) {
	closed := make(chan struct{})
	close(closed)
	conns := 0
	g := &fakeGuest{conn: func() (Conn, error) {
		conns++
		return &fakeConn{done: closed}, nil
	}}
	ctx := context.Background()
	calls := 0
	err := withConn(ctx, g, func(Conn) error {
		if calls++; calls < 3 {
			return errdefs.ErrUnavailable
		}
		return nil
	})
	if err != nil || calls != 3 || conns != 3 {
		t.Errorf("err %v after %d calls on %d connections", err, calls, conns)
	}
	bad := errors.New("no")
	if err := withConn(ctx, g, func(Conn) error { return bad }); err != bad {
		t.Errorf("a final error: %v", err)
	}
	g.Set(255, time.Now())
	err = withConn(ctx, g, func(Conn) error { return errdefs.ErrUnavailable })
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "gone") {
		t.Errorf("a gone guest: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	g2 := &fakeGuest{}
	if err := withConn(cctx, g2, func(Conn) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("an ended context: %v", err)
	}
}

// TestPumpHandle: exits go to their process (a stale pid is ignored), OOMs
// to their container; the guest's end loses every process.
func TestPumpHandle(t *testing.T) {
	life, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := New(Config{Life: life}).(*backend)
	g := &fakeGuest{}
	c := b.newCtr(g, "c1", "ns", ctrState{})
	c.process = c.newProcess("", stdio.Config{})
	c.pid.Store(10)
	x := c.newProcess("x1", stdio.Config{})
	for _, p := range []*process{c.process, x} {
		if err := c.pump.add(p); err != nil {
			t.Fatal(err)
		}
	}
	ev := func(topic string, m proto.Message) *agentapi.Event {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return &agentapi.Event{Topic: topic, Event: a}
	}
	at := time.Unix(1000, 0)
	c.pump.handle(life, ev(events.TopicTaskExit, &apievents.TaskExit{ContainerID: "c1", ID: "c1", Pid: 99, ExitStatus: 1}))
	if c.guestExit.IsSet() {
		t.Fatal("an exit of another pid ended the init")
	}
	c.pump.handle(life, ev(events.TopicTaskExit, &apievents.TaskExit{ContainerID: "c1", ID: "x1", Pid: 11, ExitStatus: 7, ExitedAt: timestamppb.New(at)}))
	if code, when := x.guestExit.ExitStatus(); !x.guestExit.IsSet() || code != 7 || !when.Equal(at) {
		t.Errorf("exec exit %d at %s", code, when)
	}
	c.pump.handle(life, ev(events.TopicTaskOOM, &apievents.TaskOOM{ContainerID: "c1"}))
	select {
	case <-c.OOM():
	default:
		t.Error("no OOM")
	}
	c.pump.handle(life, ev(events.TopicTaskStart, &apievents.TaskStart{ContainerID: "c1"})) // ignored
	g.Set(255, time.Now())
	select {
	case <-c.Exited():
	case <-time.After(waitShort):
		t.Fatal("the init did not end with its guest")
	}
	if code, _ := c.ExitStatus(); code != 255 {
		t.Errorf("lost init: exit %d", code)
	}
	if code, _ := x.guestExit.ExitStatus(); code != 7 {
		t.Errorf("an exit the guest reported is kept: %d", code)
	}
	deadline := time.Now().Add(waitShort)
	for c.pump.add(c.newProcess("late", stdio.Config{})) == nil {
		if time.Now().After(deadline) {
			t.Fatal("a pump of a gone guest takes processes")
		}
		time.Sleep(time.Millisecond)
	}
}

// bundleDirs makes, for a test of writeBundle (as root: it mounts), a temp
// dir with share/ (and share/<sub> for each sub), image/ and vol/ in it.
func bundleDirs(t *testing.T, sub ...string) (dir, share, image, vol string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
	dir = t.TempDir()
	share, image, vol = filepath.Join(dir, "share"), filepath.Join(dir, "image"), filepath.Join(dir, "vol")
	for _, d := range append([]string{share, image, vol}, sub...) {
		if !filepath.IsAbs(d) {
			d = filepath.Join(share, d)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, share, image, vol
}

// TestWriteBundle: the rootfs and host binds mounted into the share,
// config.json rewritten to the guest's paths; removeBundle leaves nothing.
func TestWriteBundle(t *testing.T) {
	dir, share, image, vol := bundleDirs(t, "pod")
	file := filepath.Join(dir, "file")
	for _, f := range []string{file, filepath.Join(share, "pod", "hosts")} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g := &fakeGuest{share: share, files: map[string]string{"/etc/hosts": filepath.Join(share, "pod", "hosts")}}
	sp := &specs.Spec{Root: &specs.Root{Path: image}, Process: &specs.Process{Args: []string{"sh"}}, Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "ro"}},
		{Destination: "/file", Type: "bind", Source: "file", Options: []string{"bind"}}, // relative to the bundle
		{Destination: "/dev/shm", Type: "bind", Source: "/run/containerd/shm", Options: []string{"rbind"}},
	}}
	st := newCtrState(g, "c1")
	if err := os.Mkdir(st.Dir, 0o711); err != nil {
		t.Fatal(err)
	}
	defer removeBundle(st.Dir)
	if err := writeBundle(context.Background(), &task.CreateRequest{ID: "c1", Bundle: dir, Spec: sp}, g, Forwarding{}, st); err != nil {
		t.Fatal(err)
	}
	got := readSpecFile(t, filepath.Join(st.Dir, configJSON))
	if got.Root.Path != "rootfs" {
		t.Errorf("root.path %q", got.Root.Path)
	}
	want := map[string]string{
		"/proc":      "proc",
		"/vol":       "/run/magnetar/share/c1/mounts/1",
		"/file":      "/run/magnetar/share/c1/mounts/2",
		"/dev/shm":   "/dev/shm",
		"/etc/hosts": "/run/magnetar/share/pod/hosts",
	}
	for _, m := range got.Mounts {
		if want[m.Destination] != m.Source {
			t.Errorf("%s: source %q, want %q", m.Destination, m.Source, want[m.Destination])
		}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(filepath.Join(st.Dir, mountsDir, "1"), &sfs); err != nil || sfs.Flags&unix.ST_RDONLY == 0 {
		t.Errorf("read-only volume: %v, flags %#x", err, sfs.Flags)
	}
	if fi, err := os.Stat(filepath.Join(st.Dir, mountsDir, "2")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("file volume: %v", err)
	}
	if err := removeBundle(st.Dir); err != nil {
		t.Fatal(err)
	}
	if left := mountsBelow(t, dir); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
	if _, err := os.Stat(filepath.Join(vol)); err != nil {
		t.Errorf("the volume's source went: %v", err)
	}
}

// TestWriteBundleReadonlySubmounts: a host mount below a read-only volume
// that is not recursively read-only gets a writable bind of its own after
// the volume's (a guest's read-only bind of the volume would make it
// read-only: critest "should support non-recursive readonly mounts"); with
// rro it does not.
// With binds made in the rootfs (Quark), a host mount below a read-only
// volume is bound for the guest to mount (it is below another bind): made
// in the rootfs it would sit on the volume's own directory in the host's
// mount namespace, which the host then could not remove.
func TestWriteBundleReadonlySubmountsInRootfs(t *testing.T) {
	dir, share, image, vol := bundleDirs(t)
	tmpfs := filepath.Join(vol, "tmpfs")
	if err := os.Mkdir(tmpfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", tmpfs, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(tmpfs, unix.MNT_DETACH)
	g := &fakeGuest{share: share}
	sp := &specs.Spec{Root: &specs.Root{Path: image}, Process: &specs.Process{Args: []string{"sh"}}, Mounts: []specs.Mount{
		{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "ro", "rprivate"}},
	}}
	st := newCtrState(g, "c1")
	if err := os.Mkdir(st.Dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := writeBundle(context.Background(), &task.CreateRequest{ID: "c1", Bundle: dir, Spec: sp}, g, Forwarding{BindsInRootfs: true}, st); err != nil {
		t.Fatal(err)
	}
	got := readSpecFile(t, filepath.Join(st.Dir, configJSON))
	if len(got.Mounts) != 1 || got.Mounts[0].Destination != "/vol/tmpfs" || got.Mounts[0].Source != "/run/magnetar/share/c1/mounts/1" {
		t.Errorf("mounts in config.json %+v, want /vol/tmpfs from the share's mounts/1", got.Mounts)
	}
	if err := os.WriteFile(filepath.Join(st.Dir, rootfsDir, "vol", "f"), nil, 0o644); err == nil {
		t.Error("the volume in the rootfs is writable")
	}
	if err := os.WriteFile(filepath.Join(st.Dir, mountsDir, "1", "f"), nil, 0o644); err != nil {
		t.Errorf("the tmpfs below the volume is not writable: %v", err)
	}
	if err := unix.Unmount(tmpfs, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(tmpfs); err != nil {
		t.Errorf("the host's mountpoint below the volume is pinned: %v", err)
	}
	if err := removeBundle(st.Dir); err != nil {
		t.Fatal(err)
	}
	if left := mountsBelow(t, share); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
}

func TestWriteBundleReadonlySubmounts(t *testing.T) {
	dir, share, image, vol := bundleDirs(t)
	if err := os.Mkdir(filepath.Join(vol, "tmpfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", filepath.Join(vol, "tmpfs"), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(filepath.Join(vol, "tmpfs"), unix.MNT_DETACH)
	g := &fakeGuest{share: share}
	for _, c := range []struct {
		opts []string
		want map[string]string
	}{
		{[]string{"rbind", "ro", "rprivate"}, map[string]string{
			"/vol":       "/run/magnetar/share/c1/mounts/0",
			"/vol/tmpfs": "/run/magnetar/share/c1/mounts/1",
		}},
		{[]string{"rbind", "ro", "rro"}, map[string]string{"/vol": "/run/magnetar/share/c1/mounts/0"}},
	} {
		sp := &specs.Spec{Root: &specs.Root{Path: image}, Process: &specs.Process{Args: []string{"sh"}}, Mounts: []specs.Mount{
			{Destination: "/vol", Type: "bind", Source: vol, Options: c.opts},
		}}
		st := newCtrState(g, "c1")
		if err := os.Mkdir(st.Dir, 0o711); err != nil {
			t.Fatal(err)
		}
		if err := writeBundle(context.Background(), &task.CreateRequest{ID: "c1", Bundle: dir, Spec: sp}, g, Forwarding{}, st); err != nil {
			t.Fatal(err)
		}
		got := readSpecFile(t, filepath.Join(st.Dir, configJSON))
		if len(got.Mounts) != len(c.want) {
			t.Errorf("%v: mounts %+v, want %v", c.opts, got.Mounts, c.want)
		}
		for _, m := range got.Mounts {
			if c.want[m.Destination] != m.Source {
				t.Errorf("%v: %s: source %q, want %q", c.opts, m.Destination, m.Source, c.want[m.Destination])
			}
		}
		if len(c.want) == 2 {
			// the volume's copy is not recursive: it pins no host mountpoint
			if got := got.Mounts[0].Options; !slices.Equal(got, []string{"bind", "ro", "rprivate"}) {
				t.Errorf("the volume's options in config.json: %v", got)
			}
			if left := mountsBelow(t, filepath.Join(st.Dir, mountsDir, "0")); len(left) != 1 {
				t.Errorf("mounts of the volume's copy: %v", left)
			}
			if err := os.WriteFile(filepath.Join(st.Dir, mountsDir, "1", "f"), nil, 0o644); err != nil {
				t.Errorf("the tmpfs below the volume is not writable: %v", err)
			}
			if err := os.WriteFile(filepath.Join(st.Dir, mountsDir, "0", "f"), nil, 0o644); err == nil {
				t.Error("the volume is writable")
			}
			// whoever mounted the tmpfs can unmount it and remove its
			// directory while the container lives (critest's cleanup)
			tmpfs := filepath.Join(vol, "tmpfs")
			if err := unix.Unmount(tmpfs, 0); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(tmpfs); err != nil {
				t.Errorf("the host's mountpoint below the volume is pinned: %v", err)
			}
			if err := os.MkdirAll(tmpfs, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mount("tmpfs", tmpfs, "tmpfs", 0, "size=1m"); err != nil {
				t.Fatal(err)
			}
		}
		if err := removeBundle(st.Dir); err != nil {
			t.Fatal(err)
		}
	}
	if left := mountsBelow(t, share); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
}
