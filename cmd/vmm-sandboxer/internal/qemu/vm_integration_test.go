package qemu

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/virtiofsd"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmtest"
	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

// The VM integration tests boot the real guest image with the real QEMU
// (TCG on this machine kind, ~3-5 s to the agent). They need root,
// qemu-system-x86_64, virtiofsd and the guest image named by
// $MAGNETAR_GUEST_IMAGE (make vm-test builds it, sets it and runs them);
// they skip with the reason otherwise.

// guestImage is the kernel and initrd of the guest image, or a skip.
func guestImage(t *testing.T) (kernel, initrd string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("VM tests need root (virtiofsd, mounts, cgroups)")
	}
	dir := os.Getenv(vmtest.ImageEnv)
	if dir == "" {
		t.Skipf("%s is not set (make vm-test builds the guest image and sets it)", vmtest.ImageEnv)
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

// TestVMConformance runs the vm.Hypervisor conformance suite on QEMU.
func TestVMConformance(t *testing.T) {
	vmtest.Run(t, vmtest.Suite{
		New: func() vm.Hypervisor { return New(Options{}) },
		Configure: func(t *testing.T, cfg *vm.Config) {
			if _, err := exec.LookPath(DefaultBinary); err != nil {
				t.Skipf("no QEMU: %v (apt-get install qemu-system-x86)", err)
			}
			if _, err := os.Stat(virtiofsd.DefaultBinary); err != nil {
				t.Skipf("no virtiofsd: %v (qemu-system-common 7.2)", err)
			}
			cfg.Accel, cfg.Agent = AccelAuto, vm.AgentChannel{Kind: vm.ChannelSerial}
		},
		RunFiles: []string{QMPSocket, AgentSocket, VirtiofsSocket, PidFile},
		Helpers:  1,
		Leftovers: func(cfg *vm.Config) []string {
			if _, err := os.Lstat(virtiofsd.LockFile(filepath.Join(cfg.Dir, VirtiofsSocket))); err == nil {
				return []string{"virtiofsd lock file"}
			}
			return nil
		},
	})
}

// TestVMKernelQEMURefuses: a kernel that passes vm.CheckGuest but that QEMU
// itself refuses ("HdrS" with boot protocol 1.0: too old to load an
// initrd), after virtiofsd started, is FailedPrecondition with QEMU's
// message, and leaves nothing behind.
func TestVMKernelQEMURefuses(t *testing.T) {
	cfg := realConfig(t, true)
	bad := make([]byte, 8192)
	copy(bad[0x202:], "HdrS")
	bad[0x206], bad[0x207] = 0x00, 0x01
	cfg.Kernel = filepath.Join(filepath.Dir(cfg.Dir), "old-vmlinuz")
	if err := os.WriteFile(cfg.Kernel, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := New(Options{}).Start(ctxT(t, 60*time.Second), cfg)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "linux kernel too old") {
		t.Errorf("kernel qemu refuses: %v", err)
	} else {
		t.Logf("refused in %.2f s: %v", time.Since(start).Seconds(), err)
	}
	assertNothingLeft(t, cfg)
}
