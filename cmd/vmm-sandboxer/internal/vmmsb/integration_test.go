package vmmsb

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmtest"
	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/controller"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/taskfwd"
)

// These tests boot real VMs (QEMU, TCG here: a few seconds each): they need
// root, qemu-system-x86_64, virtiofsd and the guest image named by
// MAGNETAR_GUEST_IMAGE (make vm-test builds it, sets it and runs them).
// They drive the controller as containerd does, without containerd, and
// check that a failed start and a torn-down pod leave nothing behind.

type nopPub struct{}

func (nopPub) Publish(context.Context, string, string, proto.Message) {}

type rig struct {
	t    *testing.T
	dir  string
	cfg  *Config
	ctrl *controller.Controller
	drv  *driver
	// stop ends the first daemon's lifetime (its watchers, its pool's
	// refill), as its death would
	stop context.CancelFunc
}

func guestImage(t *testing.T) string {
	d := os.Getenv(vmtest.ImageEnv)
	if d == "" {
		t.Skipf("%s is not set (make vm-test builds the guest image and sets it)", vmtest.ImageEnv)
	}
	return d
}

func newRig(t *testing.T, edit func(*Config)) *rig {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (netns, cgroups, mounts, QEMU's taps)")
	}
	img := guestImage(t)
	if _, err := os.Stat(filepath.Join(img, "manifest.json")); err != nil {
		t.Skipf("no guest image in %s: run make guest-image", img)
	}
	cfg := DefaultConfig()
	if _, err := exec.LookPath(cfg.QEMU.Binary); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	dir := t.TempDir()
	cfg.Dir = dir
	cfg.RunDir = filepath.Join("/run/magnetar-vmmsb-test", strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(time.Now().UnixNano()%1e6, 10))
	cfg.VM.Kernel, cfg.VM.Initrd = filepath.Join(img, "vmlinuz"), filepath.Join(img, "initramfs.cpio")
	cfg.VM.BootTimeout = config.Duration(90 * time.Second)
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.CheckHost(); err != nil {
		t.Skipf("host: %v", err)
	}
	life, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	t.Cleanup(func() { os.RemoveAll(cfg.RunDir) })
	r := &rig{t: t, dir: dir, cfg: cfg, stop: cancel}
	r.open(life)
	return r
}

// open makes the daemon's parts on the rig's directory: the first time a
// new daemon, later a restarted one.
func (r *rig) open(life context.Context) {
	env := &daemon.Env{Life: life, Name: Name, Dir: r.dir, TaskAddress: "ttrpc+unix://" + r.dir + "/t.sock", Events: nopPub{}}
	d, err := newDriver(env, r.cfg, kinds, podNetwork{})
	if err != nil {
		r.t.Fatal(err)
	}
	parts, err := daemon.NewParts(life, r.dir, Name, d, taskfwd.New(taskfwd.Config{Life: life}), nopPub{})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := parts.Recover(life); err != nil {
		r.t.Fatal(err)
	}
	r.ctrl, r.drv = parts.Controller, d
}

// newNetNS is a network namespace with only a loopback (the VM gets no NIC),
// bind-mounted on a file.
func newNetNS(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		// the thread ends in the new netns: never unlocked, so it exits
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- unix.Mount("/proc/thread-self/ns/net", p, "", unix.MS_BIND, "")
	}()
	if err := <-errc; err != nil {
		t.Fatalf("netns: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(p, unix.MNT_DETACH) })
	return p
}

func podOptions(t *testing.T, hostname string) *anypb.Any {
	b, err := proto.Marshal(&cri.PodSandboxConfig{Hostname: hostname, Linux: &cri.LinuxPodSandboxConfig{CgroupParent: "/magnetar-vmmsb-test"}})
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: "type.googleapis.com/runtime.v1.PodSandboxConfig", Value: b}
}

// leftovers lists what a pod must not leave once gone: processes naming the
// run directory or the state directory, entries of the run directory,
// sandbox directories, mounts below the state directory, the cgroup.
func (r *rig) leftovers(id string) []string {
	var out []string
	for _, p := range proc.Find(func(args []string) bool {
		return proc.Naming(r.cfg.RunDir+"/")(args) || proc.Naming(r.dir+"/")(args)
	}) {
		out = append(out, fmt.Sprintf("process %d: %s", p.PID, p.Line()))
	}
	if ents, _ := os.ReadDir(r.cfg.RunDir); len(ents) > 0 {
		out = append(out, "run dir entries: "+ents[0].Name())
	}
	if ents, _ := os.ReadDir(filepath.Join(r.dir, "sandboxes")); len(ents) > 0 {
		out = append(out, "sandbox dir "+ents[0].Name())
	}
	if tab, _ := mount.Self(); len(mount.Below(tab, r.dir)) > 0 {
		out = append(out, "mounts "+strings.Join(mount.Below(tab, r.dir), " "))
	}
	for _, root := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(root, "magnetar-vmmsb-test", "magnetar-vmm-"+id)); err == nil {
			out = append(out, "cgroup "+filepath.Join(root, "magnetar-vmmsb-test", "magnetar-vmm-"+id))
		}
	}
	return out
}

func (r *rig) create(id string) {
	r.t.Helper()
	ctx := context.Background()
	if _, err := r.ctrl.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: id, NetnsPath: newNetNS(r.t), Options: podOptions(r.t, id)}); err != nil {
		r.t.Fatal(err)
	}
	// a test that fails half-way leaves no VM running
	r.t.Cleanup(func() {
		_, _ = r.ctrl.Shutdown(context.Background(), &sandboxapi.ControllerShutdownRequest{SandboxID: id})
	})
}

func (r *rig) shutdown(id string) {
	r.t.Helper()
	if _, err := r.ctrl.Shutdown(context.Background(), &sandboxapi.ControllerShutdownRequest{SandboxID: id}); err != nil {
		r.t.Fatalf("shutdown: %v", err)
	}
	if left := r.leftovers(id); len(left) > 0 {
		r.t.Errorf("left after shutdown: %v", left)
	}
}

// TestVMPodBootRestartStop: a pod VM boots (READY), survives a daemon restart
// (found again, its agent answers), stops with its timeout, and leaves
// nothing once shut down.
func TestVMPodBootRestartStop(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	r.create("boot")
	if _, err := r.ctrl.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "boot"}); err != nil {
		t.Fatal(err)
	}
	st, err := r.ctrl.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "boot", Verbose: true})
	if err != nil || st.State != controller.StateReady || st.Info["stage"] != "running" || st.Pid == 0 {
		t.Fatalf("status %v %v", st, err)
	}
	// the restarted daemon: the old one's agent connection goes with it
	// (QEMU's chardev serves one client at a time)
	if old, _, err := r.ctrl.Pod("boot"); err == nil {
		old.(*pod).conn.Close()
	}
	life2, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.open(life2)
	inst, ok, err := r.ctrl.Pod("boot")
	if err != nil || !ok {
		t.Fatalf("pod after restart: %v %v", ok, err)
	}
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	if _, err := inst.(taskfwd.Guest).Conn(cctx); err != nil {
		t.Fatalf("agent after restart: %v", err)
	}
	if _, err := r.ctrl.Stop(ctx, &sandboxapi.ControllerStopRequest{SandboxID: "boot", TimeoutSecs: 5}); err != nil {
		t.Fatal(err)
	}
	if w, err := r.ctrl.Wait(ctx, &sandboxapi.ControllerWaitRequest{SandboxID: "boot"}); err != nil || w.ExitStatus != 0 {
		t.Errorf("wait %v %v", w, err)
	}
	r.shutdown("boot")
}

// TestVMPodStartFailures: a start that cannot succeed fails naming the cause and
// leaves no QEMU, virtiofsd, socket, mount or directory.
func TestVMPodStartFailures(t *testing.T) {
	junk := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(junk, []byte("not a kernel at all, just text"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"corrupt kernel", func(c *Config) { c.VM.Kernel = junk }, "vmlinuz"},
		{"QEMU exits at start", func(c *Config) { c.QEMU.Binary = "/bin/false" }, "qemu"},
		{"boot timeout", func(c *Config) { c.VM.BootTimeout = config.Duration(time.Second) }, "vm.boot_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.edit)
			ctx := context.Background()
			r.create("bad")
			_, err := r.ctrl.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "bad"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("start: %v, want an error naming %q", err, tc.want)
			}
			t.Logf("start error: %.400s", err)
			r.shutdown("bad")
		})
	}
}

// TestVMPodVirtiofsdKilled: a VM whose virtiofsd is killed from outside ends
// (Wait returns, the pod is NOTREADY) and is cleaned up.
func TestVMPodVirtiofsdKilled(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	r.create("fsd")
	if _, err := r.ctrl.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: "fsd"}); err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, p := range proc.Find(func(args []string) bool {
		return proc.Naming("virtiofsd")(args) && proc.Naming(r.dir+"/")(args)
	}) {
		if unix.Kill(p.PID, unix.SIGKILL) == nil {
			killed++
		}
	}
	if killed == 0 {
		t.Fatal("no virtiofsd of the pod found")
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := r.ctrl.Wait(wctx, &sandboxapi.ControllerWaitRequest{SandboxID: "fsd"}); err != nil {
		t.Fatalf("wait after virtiofsd died: %v", err)
	}
	if st, _ := r.ctrl.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "fsd"}); st.State != controller.StateNotReady {
		t.Errorf("status %v", st.State)
	}
	r.shutdown("fsd")
}
