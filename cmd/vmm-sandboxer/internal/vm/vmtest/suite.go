package vmtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/proc"
)

// ImageEnv names the guest image directory (vmlinuz, initramfs.cpio) the
// suite boots; `make vm-test` builds the image and sets it. Without it the
// suite skips: a plain `go test ./...` boots no VM.
const ImageEnv = "MAGNETAR_GUEST_IMAGE"

// BootTimeout bounds a boot to the agent's first answer (TCG on a loaded
// 2-vCPU host: seconds, not minutes).
const BootTimeout = 90 * time.Second

// Suite is what an implementation of vm.Hypervisor gives the conformance
// suite.
type Suite struct {
	// New returns a new Hypervisor value, as a restarted daemon makes one.
	New func() vm.Hypervisor
	// Configure completes a VM the suite made (ID, Dir, Kernel, Initrd,
	// VCPUs, MemoryMiB, Share and ShareTag set) with what this
	// implementation needs: Binary, Helpers, Agent, Accel. It skips the
	// test (t.Skip) where the implementation cannot run here.
	Configure func(t *testing.T, cfg *vm.Config)
	// RunFiles are the names in the run directory that Stop and Cleanup
	// must leave removed (sockets, pid files).
	RunFiles []string
	// Helpers is the number of helper processes of a VM with a share
	// (virtiofsd: 1); Pids lists them after the VMM.
	Helpers int
	// Leftovers, when set, lists what else of cfg's VM is left on the
	// host (an implementation's own files); checked after every Cleanup.
	Leftovers func(cfg *vm.Config) []string
}

// Run runs every case of the suite as a subtest, one VM at a time. It needs
// root (virtiofsd, mounts, cgroups) and the guest image (ImageEnv).
func Run(t *testing.T, s Suite) {
	for _, c := range []struct {
		name string
		run  func(*testing.T, Suite)
	}{
		{"BootAgentRecover", testBootAgentRecover},
		{"KilledFromOutside", testKilledFromOutside},
		{"HelperKilled", testHelperKilled},
		{"StartFailures", testStartFailures},
		{"RecoverStopped", testRecoverStopped},
		{"RecoverBadState", testRecoverBadState},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, s) })
	}
}

// image is the guest image's kernel and initrd, or a skip.
func image(t *testing.T) (kernel, initrd string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("VM tests need root (virtiofsd, mounts, cgroups)")
	}
	dir := os.Getenv(ImageEnv)
	if dir == "" {
		t.Skipf("%s is not set (make vm-test builds the guest image and sets it)", ImageEnv)
	}
	for _, f := range []string{"vmlinuz", "initramfs.cpio"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("guest image %s: %v", dir, err)
		}
	}
	return filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initramfs.cpio")
}

// newConfig is a VM of the guest image with a share, in a fresh short
// directory, completed by the implementation. Whatever happens, no process
// naming the VM outlives the test.
func (s Suite) newConfig(t *testing.T) *vm.Config {
	t.Helper()
	kernel, initrd := image(t)
	dir, err := os.MkdirTemp("", "vt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := &vm.Config{ID: "vt" + strconv.FormatInt(time.Now().UnixNano(), 36), Dir: filepath.Join(dir, "vm"),
		Kernel: kernel, Initrd: initrd, VCPUs: 1, MemoryMiB: 512,
		Share: filepath.Join(dir, "share"), ShareTag: agentapi.DefaultShareTag}
	if err := os.Mkdir(cfg.Share, 0o755); err != nil {
		t.Fatal(err)
	}
	s.Configure(t, cfg)
	t.Cleanup(func() {
		for _, p := range proc.Find(proc.Naming(cfg.ID)) {
			t.Errorf("killing leftover process %d: %s", p.PID, p.Line())
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	})
	return cfg
}

// leftovers lists what of cfg's VM is still on the host: processes naming
// its id, run files, the share mounted somewhere (virtiofsd's bind), and
// the implementation's own.
func (s Suite) leftovers(cfg *vm.Config) []string {
	var out []string
	for _, p := range proc.Find(proc.Naming(cfg.ID)) {
		out = append(out, fmt.Sprintf("process %d: %s", p.PID, p.Line()))
	}
	for _, f := range s.RunFiles {
		if _, err := os.Lstat(filepath.Join(cfg.Dir, f)); err == nil {
			out = append(out, "run file "+f)
		}
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), " "+cfg.Share+" ") {
		out = append(out, "share "+cfg.Share+" still mounted")
	}
	if s.Leftovers != nil {
		out = append(out, s.Leftovers(cfg)...)
	}
	return out
}

func (s Suite) assertNothingLeft(t *testing.T, cfg *vm.Config) {
	t.Helper()
	for _, l := range s.leftovers(cfg) {
		t.Error("left: " + l)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func waitDone(t *testing.T, v vm.VM, d time.Duration) {
	t.Helper()
	select {
	case <-v.Done():
	case <-time.After(d):
		t.Fatalf("VM not done %s after it should have ended", d)
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

func dialAgent(t *testing.T, v vm.VM) *agentclient.Client {
	t.Helper()
	c, err := agentclient.Dial(ctxT(t, BootTimeout), v.Agent(), agentclient.Options{Alive: v.Alive})
	if err != nil {
		t.Fatalf("agent: %v\nconsole:\n%s", err, v.ConsoleTail(40))
	}
	return c
}

// testBootAgentRecover boots the guest with its share in a cgroup, talks to
// the agent, shows that a mount made below the share after the VM started
// reaches the guest, finds the VM again from its State with a new
// Hypervisor (a restarted daemon), talks to the agent again, stops it
// gracefully through the recovered value and checks that nothing is left.
func testBootAgentRecover(t *testing.T, s Suite) {
	cfg := s.newConfig(t)
	cfg.Cgroup = "/magnetar-vmtest-" + cfg.ID
	defer cgroups.Delete(cfg.Cgroup)
	start := time.Now()
	v, err := s.New().Start(ctxT(t, 60*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop(context.Background(), true)
	tStart := time.Since(start)
	pids := v.Pids()
	if len(pids) != 1+s.Helpers {
		t.Fatalf("pids %v: want the VMM and %d helper(s)", pids, s.Helpers)
	}
	for _, pid := range pids {
		if !inCgroup(pid, cfg.Cgroup) {
			t.Errorf("pid %d is not in cgroup %s", pid, cfg.Cgroup)
		}
	}
	if v.Alive() != nil || !v.ExitedAt().IsZero() {
		t.Errorf("a running VM: alive %v, exited at %v", v.Alive(), v.ExitedAt())
	}
	c := dialAgent(t, v)
	ctx := ctxT(t, 2*time.Minute)
	t.Logf("the VMM answered %.2f s after Start, the agent %.2f s (%s, protocol %s)",
		tStart.Seconds(), time.Since(start).Seconds(), c.Health().GetAgentVersion(), c.Health().GetVersion())
	if tail := v.ConsoleTail(5); tail == "" {
		t.Error("the console log is empty after a boot")
	}

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
	if bb, err := os.ReadFile("/bin/busybox"); err != nil {
		t.Logf("no /bin/busybox to read the late mount in the guest (apt-get install busybox-static): %v", err)
	} else {
		if err := os.WriteFile(filepath.Join(late, "busybox"), bb, 0o755); err != nil {
			t.Fatal(err)
		}
		r, err := c.Sandbox().DebugExec(ctx, &agentapi.DebugExecRequest{
			Args: []string{agentapi.ShareRoot + "/late/busybox", "cat", agentapi.ShareRoot + "/late/hello"}})
		if err != nil || r.GetExitCode() != 0 || string(r.GetStdout()) != "mounted after boot" {
			t.Errorf("the guest reads the late mount: %v, exit %d, stdout %q, stderr %q", err, r.GetExitCode(), r.GetStdout(), r.GetStderr())
		}
	}
	c.Close()

	st, err := v.State()
	if err != nil {
		t.Fatal(err)
	}
	v2, err := s.New().Recover(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if v2.Alive() != nil || len(v2.Pids()) != len(pids) || v2.Pids()[0] != pids[0] || v2.Agent() != v.Agent() {
		t.Fatalf("recovered: alive %v, pids %v (were %v), agent %v (was %v)", v2.Alive(), v2.Pids(), pids, v2.Agent(), v.Agent())
	}
	// a restarted daemon is never back within milliseconds; the agent
	// must be reachable again all the same
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
	t.Logf("graceful stop took %.2f s", time.Since(stop).Seconds())
	waitDone(t, v2, time.Second)
	waitDone(t, v, 5*time.Second)
	if v2.ExitedAt().IsZero() || v2.Alive() == nil {
		t.Errorf("a stopped VM: exited at %v, alive %v", v2.ExitedAt(), v2.Alive())
	}
	if err := v2.Stop(ctxT(t, 5*time.Second), true); err != nil {
		t.Errorf("Stop is idempotent: %v", err)
	}
	if err := v2.Cleanup(); err != nil {
		t.Fatal(err)
	}
	s.assertNothingLeft(t, cfg)
	if err := cgroups.Delete(cfg.Cgroup); err != nil {
		t.Errorf("cgroup: %v", err)
	}
}

// testKilledFromOutside: the VMM killed by someone else closes Done, makes
// Alive report Unavailable and a dial fail fast, and its helpers follow.
func testKilledFromOutside(t *testing.T, s Suite) {
	cfg := s.newConfig(t)
	v, err := s.New().Start(ctxT(t, 60*time.Second), cfg)
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
		t.Errorf("Alive after the kill: %v, want Unavailable", err)
	}
	start := time.Now()
	if _, err := agentclient.Dial(ctxT(t, 30*time.Second), v.Agent(), agentclient.Options{Alive: v.Alive}); !errors.Is(err, agentclient.ErrVMMExited) {
		t.Errorf("dial of a dead VM: %v, want ErrVMMExited", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("dial of a dead VM took %s", d)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(v.Pids()) > 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(v.Pids()) > 1 {
		t.Errorf("helpers still run 10 s after the VMM died: pids %v, were %v", v.Pids(), pids)
	}
	if err := v.Stop(ctxT(t, 10*time.Second), false); err != nil {
		t.Fatal(err)
	}
	if err := v.Cleanup(); err != nil {
		t.Fatal(err)
	}
	s.assertNothingLeft(t, cfg)
}

// testHelperKilled: a helper (virtiofsd) killed from outside ends the VM:
// the pod's share is gone, so is the pod.
func testHelperKilled(t *testing.T, s Suite) {
	if s.Helpers == 0 {
		t.Skip("no helper processes")
	}
	cfg := s.newConfig(t)
	v, err := s.New().Start(ctxT(t, 60*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop(context.Background(), true)
	pids := v.Pids()
	if err := syscall.Kill(pids[1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, v, 20*time.Second)
	if err := v.Stop(ctxT(t, 10*time.Second), false); err != nil {
		t.Fatal(err)
	}
	if err := v.Cleanup(); err != nil {
		t.Fatal(err)
	}
	s.assertNothingLeft(t, cfg)
}

// testStartFailures: a missing VMM binary, a missing initrd and a kernel
// that is no kernel fail with the right code, name the file, and leave
// nothing.
func testStartFailures(t *testing.T, s Suite) {
	for _, c := range []struct {
		name string
		edit func(cfg *vm.Config) string // returns what the error must name
		is   func(error) bool
		code string
	}{
		{"missing binary", func(cfg *vm.Config) string {
			cfg.Binary = "/nonexistent/vmm-binary"
			return cfg.Binary
		}, errdefs.IsNotFound, "NotFound"},
		{"missing initrd", func(cfg *vm.Config) string {
			cfg.Initrd = filepath.Join(filepath.Dir(cfg.Dir), "no-initramfs.cpio")
			return cfg.Initrd
		}, errdefs.IsNotFound, "NotFound"},
		{"not a kernel", func(cfg *vm.Config) string {
			cfg.Kernel = filepath.Join(filepath.Dir(cfg.Dir), "random")
			noise := make([]byte, 1<<16)
			for i := range noise {
				noise[i] = byte(i*7 + 13)
			}
			_ = os.WriteFile(cfg.Kernel, noise, 0o644)
			return cfg.Kernel
		}, errdefs.IsInvalidArgument, "InvalidArgument"},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			cfg := s.newConfig(t)
			named := c.edit(cfg)
			v, err := s.New().Start(ctxT(t, 60*time.Second), cfg)
			if err == nil {
				v.Stop(context.Background(), true)
				v.Cleanup()
				t.Fatalf("Start succeeded, want %s", c.code)
			}
			if !c.is(err) || !strings.Contains(err.Error(), named) {
				t.Errorf("Start: %v, want %s naming %s", err, c.code, named)
			}
			s.assertNothingLeft(t, cfg)
		})
	}
}

// testRecoverStopped: the State of a VM that has since ended recovers to a
// VM that is already Done (a pod lost while the daemon was away), which
// Stop and Cleanup accept.
func testRecoverStopped(t *testing.T, s Suite) {
	cfg := s.newConfig(t)
	v, err := s.New().Start(ctxT(t, 60*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := v.State()
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Stop(ctxT(t, 30*time.Second), true); err != nil {
		t.Fatal(err)
	}
	waitDone(t, v, 5*time.Second)
	v2, err := s.New().Recover(ctxT(t, 10*time.Second), st)
	if err != nil {
		t.Fatalf("Recover of an ended VM: %v, want a VM already done", err)
	}
	waitDone(t, v2, 5*time.Second)
	if v2.Alive() == nil {
		t.Error("Alive of a recovered, ended VM is nil")
	}
	if err := v2.Stop(ctxT(t, 10*time.Second), false); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := v2.Cleanup(); err != nil {
		t.Errorf("Cleanup: %v", err)
	}
	if err := v.Cleanup(); err != nil {
		t.Errorf("Cleanup of the first value: %v", err)
	}
	s.assertNothingLeft(t, cfg)
}

// testRecoverBadState: a State that is not this hypervisor's, or not JSON,
// is InvalidArgument.
func testRecoverBadState(t *testing.T, s Suite) {
	h := s.New()
	for name, st := range map[string]json.RawMessage{
		"truncated": json.RawMessage(`{"hypervisor":`),
		"empty":     json.RawMessage(`{}`),
		"other":     json.RawMessage(`{"hypervisor":"no-such-vmm","id":"x"}`),
	} {
		if _, err := h.Recover(context.Background(), st); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s state: %v, want InvalidArgument", name, err)
		}
	}
}
