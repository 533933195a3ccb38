package runcsb

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/controller"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/task"
	"github.com/magnetar-runtime/magnetar/shared/tasktest"
)

// This integration test runs the real runc binary (no containerd): it needs
// root and runc (MAGNETAR_RUNC, else _output/prefix/bin/runc, else PATH).

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, string, proto.Message) {}

type rig struct {
	dir  string
	ctrl *controller.Controller
	task *task.Service
	cfg  *Config
	stop context.CancelFunc // ends the rig's life: its watchers write no more
}

func findRunc(t *testing.T) string {
	p := tasktest.FindRunc("../../../..")
	if p == "" {
		t.Skip("runc not found: set MAGNETAR_RUNC or run hack/install-tools.sh")
	}
	return p
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func newRig(t *testing.T) *rig {
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, mounts, runc)")
	}
	// as the daemon is: container inits are re-parented to us
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	life, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Dir = dir
	cfg.Runc.Binary = findRunc(t)
	cfg.Runc.Root = filepath.Join(dir, "runc-root")
	env := &daemon.Env{Life: life, Name: Name, Dir: dir, TaskAddress: "ttrpc+unix://" + dir + "/t.sock", Events: nopPublisher{}}
	d, be, err := Sandboxer().Build(env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := daemon.NewParts(life, dir, Name, d, be, nopPublisher{})
	if err != nil {
		t.Fatal(err)
	}
	if err := parts.Recover(life); err != nil {
		t.Fatal(err)
	}
	return &rig{dir: dir, ctrl: parts.Controller, task: parts.Tasks, cfg: cfg, stop: cancel}
}

// leftovers lists what a failed request must not leave: mounts under the
// rig's dir, sandbox dirs, bundles and runc containers.
func (r *rig) leftovers(t *testing.T) []string {
	var out []string
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, r.dir) {
			out = append(out, "mount: "+l)
		}
	}
	for _, sub := range []string{"sandboxes", "bundles", "state", "tasks"} {
		ents, _ := os.ReadDir(filepath.Join(r.dir, sub))
		for _, e := range ents {
			out = append(out, sub+"/"+e.Name())
		}
	}
	ents, _ := os.ReadDir(r.cfg.Runc.Root)
	for _, e := range ents {
		out = append(out, "runc container "+e.Name())
	}
	return out
}

func podAny(t *testing.T, c *runtime.PodSandboxConfig) *anypb.Any {
	b, err := proto.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: "type.googleapis.com/runtime.v1.PodSandboxConfig", Value: b}
}

func hostNetPod(sysctls map[string]string, hostname string) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{Hostname: hostname, Linux: &runtime.LinuxPodSandboxConfig{
		Sysctls:         sysctls,
		SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}},
	}}
}

func expectCode(t *testing.T, what string, err error, c codes.Code, field string) {
	t.Helper()
	if status.Code(err) != c || !strings.Contains(err.Error(), field) {
		t.Errorf("%s: %v, want %v naming %q", what, err, c, field)
	}
}

func TestBadPodRequestsLeaveNothing(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	notNS := filepath.Join(r.dir, "not-a-netns")
	os.WriteFile(notNS, nil, 0o600)
	defer os.Remove(notNS)
	cases := []struct {
		name  string
		req   *sandboxapi.ControllerCreateRequest
		code  codes.Code
		field string
	}{
		{"netns not nsfs", &sandboxapi.ControllerCreateRequest{SandboxID: "p", NetnsPath: notNS, Options: podAny(t, &runtime.PodSandboxConfig{})}, codes.InvalidArgument, "netns_path"},
		{"netns missing", &sandboxapi.ControllerCreateRequest{SandboxID: "p", NetnsPath: "/nonexistent/ns", Options: podAny(t, &runtime.PodSandboxConfig{})}, codes.InvalidArgument, "netns_path"},
		{"no netns, pod network", &sandboxapi.ControllerCreateRequest{SandboxID: "p", Options: podAny(t, &runtime.PodSandboxConfig{})}, codes.InvalidArgument, "netns_path"},
		{"bad hostname", &sandboxapi.ControllerCreateRequest{SandboxID: "p", Options: podAny(t, hostNetPod(nil, "a b/c"))}, codes.InvalidArgument, "hostname"},
		{"non-namespaced sysctl", &sandboxapi.ControllerCreateRequest{SandboxID: "p", Options: podAny(t, hostNetPod(map[string]string{"vm.swappiness": "1"}, ""))}, codes.InvalidArgument, "vm.swappiness"},
		{"net sysctl on host network", &sandboxapi.ControllerCreateRequest{SandboxID: "p", Options: podAny(t, hostNetPod(map[string]string{"net.core.somaxconn": "1"}, ""))}, codes.InvalidArgument, "net.core.somaxconn"},
		{"userns mode CONTAINER", &sandboxapi.ControllerCreateRequest{SandboxID: "p", Options: podAny(t, usernsModePod(runtime.NamespaceMode_CONTAINER))}, codes.InvalidArgument, "userns_options.mode"},
		{"userns mode TARGET", &sandboxapi.ControllerCreateRequest{SandboxID: "p", Options: podAny(t, usernsModePod(runtime.NamespaceMode_TARGET))}, codes.InvalidArgument, "userns_options.mode"},
	}
	for _, tc := range cases {
		_, err := r.ctrl.Create(ctx, tc.req)
		expectCode(t, tc.name, err, tc.code, tc.field)
		if left := r.leftovers(t); len(left) > 0 {
			t.Errorf("%s left %v", tc.name, left)
		}
	}
}

// usernsModePod is a host-network pod asking for a user namespace in mode m.
func usernsModePod(m runtime.NamespaceMode) *runtime.PodSandboxConfig {
	c := hostNetPod(nil, "")
	c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: m}
	return c
}

// busyboxBundle writes a bundle whose rootfs holds a static busybox.
func busyboxBundle(t *testing.T, r *rig, id, podID string, args []string) (bundle, rootfs string) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox (static) not installed")
	}
	rootfs = filepath.Join(r.dir, "img-"+id)
	for _, d := range []string{"bin", "proc", "dev", "etc", "tmp", "sys"} {
		os.MkdirAll(filepath.Join(rootfs, d), 0o755)
	}
	data, _ := os.ReadFile(bb)
	os.WriteFile(filepath.Join(rootfs, "bin/busybox"), data, 0o755)
	os.Symlink("busybox", filepath.Join(rootfs, "bin/sh"))
	for _, f := range []string{"etc/hostname", "etc/hosts", "etc/resolv.conf"} {
		os.WriteFile(filepath.Join(rootfs, f), nil, 0o644)
	}
	bundle = filepath.Join(r.dir, "ctrd-bundles", id)
	os.MkdirAll(filepath.Join(bundle, "rootfs"), 0o755)
	out, err := exec.Command(r.cfg.Runc.Binary, "spec", "--bundle", bundle).CombinedOutput()
	if err != nil {
		t.Fatalf("runc spec: %v %s", err, out)
	}
	var sp specs.Spec
	raw, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	json.Unmarshal(raw, &sp)
	sp.Process.Terminal = false
	sp.Process.Args = args
	sp.Annotations = map[string]string{sandbox.PodAnnotation: podID}
	sp.Linux.CgroupsPath = "/magnetar-it/" + id
	sp.Linux.Namespaces = append(sp.Linux.Namespaces,
		specs.LinuxNamespace{Type: specs.IPCNamespace, Path: "/proc/0/ns/ipc"},
		specs.LinuxNamespace{Type: specs.UTSNamespace, Path: "/proc/0/ns/uts"})
	var ns []specs.LinuxNamespace
	for _, n := range sp.Linux.Namespaces {
		if (n.Type == specs.IPCNamespace || n.Type == specs.UTSNamespace) && n.Path == "" || n.Type == specs.NetworkNamespace {
			continue
		}
		ns = append(ns, n)
	}
	sp.Linux.Namespaces = ns
	raw, _ = json.Marshal(&sp)
	os.WriteFile(filepath.Join(bundle, "config.json"), raw, 0o600)
	return bundle, rootfs
}

func TestContainerLifecycleAndBadTasks(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.ctrl.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "pod1", Options: podAny(t, hostNetPod(map[string]string{"kernel.shmmni": "2048"}, "pod1"))}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.ctrl.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: "pod1"}) })
	if _, err := r.ctrl.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "pod1"}); err != nil {
		t.Fatal(err)
	}
	// a pod without containers still reports well-formed cgroup metrics
	if m, err := r.ctrl.Metrics(ctx, &sandboxapi.ControllerMetricsRequest{SandboxID: "pod1"}); err != nil || m.Metrics.GetData().GetTypeUrl() == "" {
		t.Errorf("metrics of an empty pod: %v %v", m, err)
	}
	fifo := filepath.Join(r.dir, "stdout")
	syscall.Mkfifo(fifo, 0o600)
	outR, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	bind := func(rootfs string) []*types.Mount {
		return []*types.Mount{{Type: "bind", Source: rootfs, Options: []string{"rbind", "ro"}}}
	}

	// bad task requests
	b, rootfs := busyboxBundle(t, r, "bad1", "no-such-pod", []string{"true"})
	_, err = r.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "bad1", Bundle: b, Rootfs: bind(rootfs)})
	expectCode(t, "unknown pod", err, codes.NotFound, "no-such-pod")
	b, rootfs = busyboxBundle(t, r, "bad2", "pod1", []string{"true"})
	_, err = r.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "bad2", Bundle: b, Rootfs: []*types.Mount{{Type: "nonexistentfs", Source: rootfs}}})
	if err == nil {
		t.Error("bad rootfs mount accepted")
	}
	_, err = r.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "bad2", Bundle: b, Rootfs: bind(rootfs), Stdout: filepath.Join(r.dir, "no-fifo")})
	expectCode(t, "missing stdout fifo", err, codes.InvalidArgument, "stdout")
	b3, rootfs3 := busyboxBundle(t, r, "bad3", "pod1", []string{"/no/such/binary"})
	_, err = r.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "bad3", Bundle: b3, Rootfs: bind(rootfs3)})
	if err == nil || !strings.Contains(err.Error(), "no/such/binary") {
		t.Errorf("runc error not passed through: %v", err)
	}
	for _, l := range r.leftovers(t) {
		if strings.HasPrefix(l, "bundles/") || strings.HasPrefix(l, "runc container") || strings.Contains(l, "ctrd-bundles") {
			t.Errorf("bad task request left %s", l)
		}
	}

	// the happy path
	b, rootfs = busyboxBundle(t, r, "c1", "pod1", []string{"sh", "-c", "echo hello-$(hostname) $(cat /proc/sys/kernel/shmmni); exec sleep 60"})
	if _, err := r.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: b, Rootfs: bind(rootfs), Stdout: fifo}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.task.Start(ctx, &taskapi.StartRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	syscall.SetNonblock(int(outR.Fd()), false)
	buf := make([]byte, 64)
	n, _ := io.ReadAtLeast(outR, buf, 10)
	host, _ := os.Hostname() // a host-network pod keeps the host's uts namespace
	if got := strings.TrimSpace(string(buf[:n])); got != "hello-"+host+" 2048" {
		t.Errorf("container printed %q, want the host's hostname and the pod's IPC sysctl", got)
	}
	if m, err := r.ctrl.Metrics(ctx, &sandboxapi.ControllerMetricsRequest{SandboxID: "pod1"}); err != nil || m.Metrics.Data == nil {
		t.Errorf("metrics %v %v", m, err)
	}
	if st, err := r.task.Stats(ctx, &taskapi.StatsRequest{ID: "c1"}); err != nil || st.Stats == nil {
		t.Errorf("stats %v %v", st, err)
	}
	if _, err := r.ctrl.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: "pod1", TimeoutSecs: 1}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w, err := r.task.Wait(wctx, &taskapi.WaitRequest{ID: "c1"})
	if err != nil || w.ExitStatus != 137 {
		t.Errorf("wait after pod stop: %v %v", w, err)
	}
	if _, err := r.task.Delete(ctx, &taskapi.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ctrl.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: "pod1"}); err != nil {
		t.Fatal(err)
	}
	if left := r.leftovers(t); len(left) > 0 {
		t.Errorf("left after shutdown: %v", left)
	}
	for _, id := range []string{"c1", "bad3"} {
		_ = cgroups.Delete("/magnetar-it/" + id)
	}
	_ = cgroups.Delete("/magnetar-it")
}

// TestMain lets the test binary serve as the pod init it re-executes.
func TestMain(m *testing.M) {
	if len(os.Args) >= 2 && os.Args[1] == daemon.PodInitArg {
		_ = daemon.RunPodInit()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// reopen is what a restarted daemon makes of the rig's state directory.
func (r *rig) reopen(t *testing.T) *rig {
	r.stop() // the old daemon is dead: its watchers must not write over the new one's state
	life, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env := &daemon.Env{Life: life, Name: Name, Dir: r.dir, TaskAddress: "ttrpc+unix://" + r.dir + "/t.sock", Events: nopPublisher{}}
	d, be, err := Sandboxer().Build(env, r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := daemon.NewParts(life, r.dir, Name, d, be, nopPublisher{})
	if err != nil {
		t.Fatal(err)
	}
	if err := parts.Recover(life); err != nil {
		t.Fatal(err)
	}
	return &rig{dir: r.dir, ctrl: parts.Controller, task: parts.Tasks, cfg: r.cfg, stop: cancel}
}

// TestStartCutByRestartLeavesNoPodInit: a daemon killed inside Start, after
// the pod init of a shared-PID pod was spawned but before its pid was
// recorded, finds and ends that init at its next start; nothing is left
// once the pod is shut down.
func TestStartCutByRestartLeavesNoPodInit(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	cfg := hostNetPod(nil, "cut")
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtime.NamespaceMode_POD
	if _, err := r.ctrl.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "cut", Options: podAny(t, cfg)}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ctrl.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "cut"}); err != nil {
		t.Fatal(err)
	}
	inits := findPodInits("cut")
	if len(inits) != 1 {
		t.Fatalf("pod inits after start: %v", inits)
	}
	// what the record says when the daemon dies inside Start: phase
	// starting, no init pid yet
	recPath := filepath.Join(r.dir, "state", "cut.json")
	var st sandbox.State
	raw, _ := os.ReadFile(recPath)
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	var ps podState
	json.Unmarshal(st.Driver, &ps)
	ps.InitPid, ps.InitStart = 0, 0
	st.Driver, _ = json.Marshal(&ps)
	st.Phase = sandbox.PhaseStarting
	raw, _ = json.Marshal(&st)
	os.WriteFile(recPath, raw, 0o600)

	r2 := r.reopen(t)
	deadline := time.Now().Add(5 * time.Second)
	for len(findPodInits("cut")) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := findPodInits("cut"); len(left) > 0 {
		t.Fatalf("pod init of the cut start still runs: %v", left)
	}
	s, err := r2.ctrl.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "cut"})
	if err != nil || s.State != controller.StateNotReady {
		t.Fatalf("status after restart: %v %v", s, err)
	}
	if _, err := r2.ctrl.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: "cut"}); err != nil {
		t.Fatal(err)
	}
	if left := r2.leftovers(t); len(left) > 0 {
		t.Errorf("left after shutdown: %v", left)
	}
}

// TestCreateCutByRestartIsSwept: the namespace files a Create bind-mounted
// before the daemon died (no record yet) are unmounted and removed at the
// next start, and the same id can be created again.
func TestCreateCutByRestartIsSwept(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.ctrl.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "half", Options: podAny(t, hostNetPod(nil, "half"))}); err != nil {
		t.Fatal(err)
	}
	// the record is written last: without it, this is a Create cut short
	if err := os.Remove(filepath.Join(r.dir, "state", "half.json")); err != nil {
		t.Fatal(err)
	}
	r2 := r.reopen(t)
	if left := r2.leftovers(t); len(left) > 0 {
		t.Fatalf("left after restart: %v", left)
	}
	if _, err := r2.ctrl.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "half", Options: podAny(t, hostNetPod(nil, "half"))}); err != nil {
		t.Fatalf("create again: %v", err)
	}
	if _, err := r2.ctrl.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: "half"}); err != nil {
		t.Fatal(err)
	}
	if left := r2.leftovers(t); len(left) > 0 {
		t.Errorf("left after shutdown: %v", left)
	}
}

// TestExitsAndExecsSurviveRestart: after a restart, a container that had
// exited keeps its exit code, and an exec that still runs is found again:
// a replayed Kill reaches it and Wait returns.
func TestExitsAndExecsSurviveRestart(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.ctrl.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "rp", Options: podAny(t, hostNetPod(nil, "rp"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ctrl.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "rp"}); err != nil {
		t.Fatal(err)
	}
	bind := func(rootfs string) []*types.Mount {
		return []*types.Mount{{Type: "bind", Source: rootfs, Options: []string{"rbind", "ro"}}}
	}
	b, rootfs := busyboxBundle(t, r, "three", "rp", []string{"sh", "-c", "exit 3"})
	if _, err := r.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "three", Bundle: b, Rootfs: bind(rootfs)}); err != nil {
		t.Fatal(err)
	}
	r.task.Start(ctx, &taskapi.StartRequest{ID: "three"})
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if w, err := r.task.Wait(wctx, &taskapi.WaitRequest{ID: "three"}); err != nil || w.ExitStatus != 3 {
		t.Fatalf("wait: %v %v", w, err)
	}
	b, rootfs = busyboxBundle(t, r, "long", "rp", []string{"sh", "-c", "exec sleep 60"})
	if _, err := r.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "long", Bundle: b, Rootfs: bind(rootfs)}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.task.Start(ctx, &taskapi.StartRequest{ID: "long"}); err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(specs.Process{Args: []string{"sh", "-c", "exec sleep 60"}, Cwd: "/", Env: []string{"PATH=/bin"}})
	if _, err := r.task.Exec(ctx, &taskapi.ExecProcessRequest{ID: "long", ExecID: "x", Spec: &anypb.Any{Value: spec}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.task.Start(ctx, &taskapi.StartRequest{ID: "long", ExecID: "x"}); err != nil {
		t.Fatal(err)
	}

	r2 := r.reopen(t)
	if st, err := r2.task.State(ctx, &taskapi.StateRequest{ID: "three"}); err != nil || st.ExitStatus != 3 {
		t.Errorf("exited container after restart: %v %v", st, err)
	}
	st, err := r2.task.State(ctx, &taskapi.StateRequest{ID: "long", ExecID: "x"})
	if err != nil || st.Status.String() != "RUNNING" {
		t.Fatalf("exec after restart: %v %v", st, err)
	}
	if _, err := r2.task.Kill(ctx, &taskapi.KillRequest{ID: "long", ExecID: "x", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.task.Wait(wctx, &taskapi.WaitRequest{ID: "long", ExecID: "x"}); err != nil {
		t.Fatalf("wait of the recovered exec: %v", err)
	}
	if _, err := r2.ctrl.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: "rp"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.ctrl.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: "rp"}); err != nil {
		t.Fatal(err)
	}
	if left := r2.leftovers(t); len(left) > 0 {
		t.Errorf("left after shutdown: %v", left)
	}
	for _, id := range []string{"three", "long"} {
		_ = cgroups.Delete("/magnetar-it/" + id)
	}
}

// TestCreateCutLeavesNoCgroup: a `runc create` killed after it made the
// container's cgroup and put its init in it, and before it wrote its
// state (a request cancelled by a containerd that went away, a daemon
// killed) leaves nothing that `runc delete` could find: the failed Create
// removes the cgroup itself.
func TestCreateCutLeavesNoCgroup(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.ctrl.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: "podcut", Options: podAny(t, hostNetPod(nil, "podcut"))}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.ctrl.Shutdown(ctx, &sandboxapi.ControllerShutdownRequest{SandboxID: "podcut"}) })
	if _, err := r.ctrl.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "podcut"}); err != nil {
		t.Fatal(err)
	}
	cg := "/sys/fs/cgroup/memory" // v1 (a new cpuset cgroup takes no task before its cpus are set)
	if !fileExists(cg + "/memory.limit_in_bytes") {
		cg = "/sys/fs/cgroup" // cgroup v2
	}
	cg += "/magnetar-it/cut1"
	t.Cleanup(func() { _ = cgroups.Delete("/magnetar-it/cut1"); _ = cgroups.Delete("/magnetar-it") })
	// runc, but a create makes the cgroup, leaves a process in it (runc's
	// init, waiting to exec) and is killed there
	wrapper := filepath.Join(r.dir, "runc-cut")
	initPid := filepath.Join(r.dir, "init.pid")
	script := "#!/bin/sh\nfor a; do if [ \"$a\" = create ]; then mkdir -p '" + cg + "'; " +
		"sh -c 'echo $$ > \"$1/cgroup.procs\"; echo $$ > \"$2\"; exec sleep 60' _ '" + cg + "' '" + initPid + "' </dev/null >/dev/null 2>&1 & " +
		"while [ ! -s '" + initPid + "' ]; do sleep 0.01; done; kill -9 $$; fi; done\nexec '" + r.cfg.Runc.Binary + "' \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r.cfg.Runc.Binary = wrapper
	b, rootfs := busyboxBundle(t, r, "cut1", "podcut", []string{"true"})
	_, err := r.task.Create(ctx, &taskapi.CreateTaskRequest{ID: "cut1", Bundle: b, Rootfs: []*types.Mount{{Type: "bind", Source: rootfs, Options: []string{"rbind", "ro"}}}})
	if err == nil {
		t.Fatal("a runc create killed half-way succeeded")
	}
	if fileExists(cg) {
		t.Errorf("the cgroup %s that the cut runc create made is left", cg)
	}
	if data, err := os.ReadFile(initPid); err != nil {
		t.Errorf("the cut create left no init: %v", err)
	} else if pid, _ := strconv.Atoi(strings.TrimSpace(string(data))); pid > 0 {
		if st, err := proc.StartTime(pid); err == nil && st > 0 {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(b), ") Z ") {
				t.Errorf("the init %d that the cut runc create left in the cgroup still runs", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, l := range r.leftovers(t) {
		if strings.Contains(l, "cut1") {
			t.Errorf("the cut create left %s", l)
		}
	}
}
