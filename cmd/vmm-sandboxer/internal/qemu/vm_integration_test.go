package qemu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/virtiofsd"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
	"github.com/magnetar-runtime/magnetar/shared/cgroups"
)

// The VM integration tests boot the real guest image with the real QEMU
// (TCG on this machine kind, ~3-5 s to the agent). They need root,
// qemu-system-x86_64, virtiofsd and the guest image: $MAGNETAR_GUEST_IMAGE,
// else _output/guest of the checkout (make guest-image); they skip with
// the reason otherwise. Run them serially.

const bootTimeout = 90 * time.Second

// guestImage is the kernel and initrd of the guest image, or a skip.
func guestImage(t *testing.T) (kernel, initrd string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("VM tests need root (virtiofsd, mounts, cgroups)")
	}
	dir := os.Getenv("MAGNETAR_GUEST_IMAGE")
	if dir == "" {
		dir, _ = filepath.Abs("../../../../_output/guest")
	}
	for _, f := range []string{"vmlinuz", "initramfs.cpio", "manifest.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Skipf("no guest image: %v (make guest-image, or set MAGNETAR_GUEST_IMAGE)", err)
		}
	}
	if _, err := exec.LookPath(DefaultBinary); err != nil {
		t.Skipf("no QEMU: %v (apt-get install qemu-system-x86)", err)
	}
	if _, err := os.Stat(virtiofsd.DefaultBinary); err != nil {
		t.Skipf("no virtiofsd: %v (qemu-system-common 7.2)", err)
	}
	return filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initramfs.cpio")
}

// realConfig is a VM of the guest image; with a share when share is set.
func realConfig(t *testing.T, share bool) *vm.Config {
	t.Helper()
	kernel, initrd := guestImage(t)
	dir := shortTempDir(t)
	cfg := &vm.Config{ID: "it" + strconv.FormatInt(time.Now().UnixNano(), 36), Dir: filepath.Join(dir, "vm"),
		Kernel: kernel, Initrd: initrd, VCPUs: 1, MemoryMiB: 512, Accel: AccelAuto,
		Agent: vm.AgentChannel{Kind: vm.ChannelSerial}}
	if share {
		cfg.Share, cfg.ShareTag = filepath.Join(dir, "share"), agentapi.DefaultShareTag
		if err := os.Mkdir(cfg.Share, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// whatever happens, no QEMU outlives the test
	t.Cleanup(func() {
		for _, pid := range procsWith(cfg.ID) {
			t.Errorf("killing leftover process %d", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if cfg.Share != "" {
			virtiofsd.ReleaseShare(cfg.Share)
		}
		virtiofsd.Cleanup(filepath.Join(cfg.Dir, VirtiofsSocket))
	})
	return cfg
}

// assertNothingLeft is assertClean plus the share's bind mount and
// virtiofsd's lock file.
func assertNothingLeft(t *testing.T, cfg *vm.Config) {
	t.Helper()
	assertClean(t, cfg)
	if _, err := os.Lstat(virtiofsd.LockFile(filepath.Join(cfg.Dir, VirtiofsSocket))); err == nil {
		t.Error("virtiofsd lock file left")
	}
	if cfg.Share != "" {
		if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), " "+cfg.Share+" ") {
			t.Errorf("share %s still mounted", cfg.Share)
		}
	}
}

// inCgroup reports whether pid's cgroup (any hierarchy) ends with path.
func inCgroup(pid int, path string) bool {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasSuffix(l, ":"+path) {
			return true
		}
	}
	return false
}

// TestVMBootAgentRecover boots the guest with virtio-fs in a cgroup, talks
// to the agent, proves that a mount made below the share after the VM
// started reaches the guest, then recovers the VM in a "new daemon" (a new
// Hypervisor from the State), talks to the agent again, stops it through
// the recovered value and checks that nothing is left.
func TestVMBootAgentRecover(t *testing.T) {
	cfg := realConfig(t, true)
	cfg.Cgroup = "/magnetar-qemu-test-" + cfg.ID
	defer cgroups.Delete(cfg.Cgroup)
	h := New(Options{})
	start := time.Now()
	v, err := h.Start(ctxT(t, 60*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop(context.Background(), true)
	tStart := time.Since(start)
	pids := v.Pids()
	if len(pids) != 2 {
		t.Fatalf("pids %v: want qemu and virtiofsd", pids)
	}
	for _, pid := range pids {
		if !inCgroup(pid, cfg.Cgroup) {
			t.Errorf("pid %d is not in cgroup %s", pid, cfg.Cgroup)
		}
	}

	c, err := agentclient.Dial(ctxT(t, bootTimeout), v.Agent(), agentclient.Options{Alive: v.Alive})
	if err != nil {
		t.Fatalf("agent: %v\nconsole:\n%s", err, v.ConsoleTail(40))
	}
	tAgent := time.Since(start)
	ctx := ctxT(t, 2*time.Minute)
	if _, err := c.Sandbox().Health(ctx, &agentapi.HealthRequest{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("qemu answered QMP %.2f s after Start, agent healthy after %.2f s (%s, protocol %s)",
		tStart.Seconds(), tAgent.Seconds(), c.Health().GetAgentVersion(), c.Health().GetVersion())

	// a tmpfs mounted below the share now, with a static busybox in it
	late := filepath.Join(cfg.Share, "late")
	os.Mkdir(late, 0o755)
	if err := unix.Mount("tmpfs", late, "tmpfs", 0, "size=8m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(late, unix.MNT_DETACH)
	if err := os.WriteFile(filepath.Join(late, "hello"), []byte("mounted after boot"), 0o644); err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("no /bin/busybox to read the file in the guest (apt-get install busybox-static): %v", err)
	}
	if err := os.WriteFile(filepath.Join(late, "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := c.Sandbox().DebugExec(ctx, &agentapi.DebugExecRequest{
		Args: []string{agentapi.ShareRoot + "/late/busybox", "cat", agentapi.ShareRoot + "/late/hello"}})
	if err != nil || r.GetExitCode() != 0 || string(r.GetStdout()) != "mounted after boot" {
		t.Errorf("guest reads the late mount: %v, exit %d, stdout %q, stderr %q", err, r.GetExitCode(), r.GetStdout(), r.GetStderr())
	}
	c.Close()

	// a new daemon: a new Hypervisor value and the persisted State
	st, err := v.State()
	if err != nil {
		t.Fatal(err)
	}
	v2, err := New(Options{}).Recover(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if v2.Alive() != nil || len(v2.Pids()) != 2 || v2.Pids()[0] != pids[0] || v2.Agent() != v.Agent() {
		t.Fatalf("recovered: alive %v, pids %v (were %v), agent %v", v2.Alive(), v2.Pids(), pids, v2.Agent())
	}
	// the agent must see the first connection end (EOF on its port) before
	// a new one talks: a reconnect within milliseconds would be read as
	// more of the old ttrpc session (see the report); a restarted daemon
	// is never that fast
	time.Sleep(time.Second)
	c2, err := agentclient.Dial(ctxT(t, 30*time.Second), v2.Agent(), agentclient.Options{Alive: v2.Alive})
	if err != nil {
		t.Fatalf("agent after recover: %v", err)
	}
	c2.Close()

	stop := time.Now()
	if err := v2.Stop(ctxT(t, 30*time.Second), false); err != nil {
		t.Fatal(err)
	}
	t.Logf("graceful stop (QMP quit, virtiofsd following) took %.2f s", time.Since(stop).Seconds())
	waitDone(t, v2, time.Second)
	waitDone(t, v, 5*time.Second)
	if err := v2.Cleanup(); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, cfg)
	if err := cgroups.Delete(cfg.Cgroup); err != nil {
		t.Errorf("cgroup: %v", err)
	}
}

// TestVMKilledFromOutside: QEMU killed by someone else closes Done, makes
// a dial fail fast, and virtiofsd follows its peer.
func TestVMKilledFromOutside(t *testing.T) {
	cfg := realConfig(t, true)
	v, err := New(Options{}).Start(ctxT(t, 60*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop(context.Background(), true)
	pids := v.Pids()
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, v, 5*time.Second)
	if err := v.Alive(); err == nil || !errdefs.IsUnavailable(err) {
		t.Errorf("alive after kill: %v", err)
	}
	start := time.Now()
	if _, err := agentclient.Dial(ctxT(t, 30*time.Second), v.Agent(), agentclient.Options{Alive: v.Alive}); !errors.Is(err, agentclient.ErrVMMExited) {
		t.Errorf("dial a dead vm: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("dial of a dead vm took %s", d)
	}
	// virtiofsd ends by itself once its vhost-user peer is gone (Pids
	// lists helpers while they run)
	deadline := time.Now().Add(5 * time.Second)
	for len(v.Pids()) > 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(pids) != 2 || len(v.Pids()) != 1 {
		t.Errorf("virtiofsd still runs 5 s after its qemu died: pids %v, were %v", v.Pids(), pids)
	}
	if err := v.Stop(ctxT(t, 10*time.Second), false); err != nil {
		t.Fatal(err)
	}
	if err := v.Cleanup(); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, cfg)
}

// TestVMStartFailures: a kernel QEMU refuses (after virtiofsd started), a
// kernel that is no kernel, and a missing initrd give clear errors and
// leave nothing behind.
func TestVMStartFailures(t *testing.T) {
	h := New(Options{})

	// "HdrS" but boot protocol 1.0: QEMU itself refuses it
	cfg := realConfig(t, true)
	bad := make([]byte, 8192)
	copy(bad[0x202:], "HdrS")
	bad[0x206], bad[0x207] = 0x00, 0x01
	cfg.Kernel = filepath.Join(filepath.Dir(cfg.Dir), "old-vmlinuz")
	if err := os.WriteFile(cfg.Kernel, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := h.Start(ctxT(t, 60*time.Second), cfg)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "linux kernel too old") {
		t.Errorf("kernel qemu refuses: %v", err)
	} else {
		t.Logf("refused in %.2f s: %v", time.Since(start).Seconds(), err)
	}
	assertNothingLeft(t, cfg)

	// random bytes
	cfg = realConfig(t, true)
	cfg.Kernel = filepath.Join(filepath.Dir(cfg.Dir), "random")
	noise := make([]byte, 1<<16)
	for i := range noise {
		noise[i] = byte(i*7 + 13)
	}
	os.WriteFile(cfg.Kernel, noise, 0o644)
	if _, err := h.Start(ctxT(t, 60*time.Second), cfg); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), cfg.Kernel) {
		t.Errorf("random kernel: %v", err)
	}
	assertNothingLeft(t, cfg)

	// missing initrd
	cfg = realConfig(t, true)
	cfg.Initrd = filepath.Join(filepath.Dir(cfg.Dir), "no-initramfs.cpio")
	if _, err := h.Start(ctxT(t, 60*time.Second), cfg); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), cfg.Initrd) {
		t.Errorf("missing initrd: %v", err)
	}
	assertNothingLeft(t, cfg)
}
