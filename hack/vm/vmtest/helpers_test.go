package vmtest

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

	"github.com/magnetar-runtime/magnetar/hack/vm/guestvm"
	"github.com/magnetar-runtime/magnetar/shared/proc"
)

// bootTimeout bounds a boot to the agent's first answer (TCG on a busy 2-core
// machine: usually 2–5 s).
const bootTimeout = 90 * time.Second

// image is the guest image directory, or the test is skipped.
func image(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("VM tests need root (virtiofsd, runc in the guest as the host's uid 0)")
	}
	dir := os.Getenv("MAGNETAR_GUEST_IMAGE")
	if dir == "" {
		t.Skip("MAGNETAR_GUEST_IMAGE is not set (make vm-test builds the image and sets it)")
	}
	for _, f := range []string{"vmlinuz", "initramfs.cpio", "initramfs-marker.cpio"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Skipf("guest image incomplete: %v (make guest-image)", err)
		}
	}
	q := os.Getenv("MAGNETAR_QEMU")
	if q == "" {
		q = guestvm.DefaultQEMU
	}
	if _, err := exec.LookPath(q); err != nil {
		t.Skipf("no QEMU: %v (apt-get install qemu-system-x86)", err)
	}
	v := os.Getenv("MAGNETAR_VIRTIOFSD")
	if v == "" {
		v = guestvm.DefaultVirtiofsd
	}
	if _, err := os.Stat(v); err != nil {
		t.Skipf("no virtiofsd: %v (Debian's qemu-system-common 7.2 ships it)", err)
	}
	return dir
}

// vmOpts adjusts a test VM's config.
type vmOpts struct {
	marker  bool     // boot initramfs-marker.cpio instead of the agent's
	cmdline []string // extra kernel arguments
}

// startVM boots the image with a virtio-serial agent port and a virtio-fs
// share (a fresh temporary directory, returned), and registers a cleanup
// that closes the VM and fails the test if anything of it is left.
func startVM(t *testing.T, o vmOpts) (*guestvm.VM, string) {
	t.Helper()
	dir := image(t)
	share, err := os.MkdirTemp("", "mgvm-share-")
	if err != nil {
		t.Fatal(err)
	}
	initrd := "initramfs.cpio"
	if o.marker {
		initrd = "initramfs-marker.cpio"
	}
	// the console log is kept only when the test fails: in
	// MAGNETAR_VM_LOGDIR (make vm-test: _output/vm-test/), else the temp dir
	logDir := os.Getenv("MAGNETAR_VM_LOGDIR")
	if logDir == "" {
		logDir = os.TempDir()
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(logDir, "magnetar-vmtest-"+strings.ReplaceAll(t.Name(), "/", "_")+".console.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := guestvm.Config{
		Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, initrd),
		MemoryMiB: 512, SerialPort: "magnetar.agent", Share: share, ShareTag: "magnetar",
		Cmdline: append([]string{"magnetar.transport=serial:magnetar.agent", "magnetar.share=virtiofs:magnetar"}, o.cmdline...),
		Console: logf,
	}
	vm, err := guestvm.Start(context.Background(), cfg)
	if err != nil {
		logf.Close()
		os.RemoveAll(share)
		os.Remove(logPath)
		t.Fatalf("start VM: %v", err)
	}
	t.Logf("VM: accel %s, run dir %s, pids %v, console log %s", vm.Accel(), vm.Dir(), vm.Pids(), logPath)
	t.Cleanup(func() {
		pids, run := vm.Pids(), vm.Dir()
		if t.Failed() {
			t.Logf("console tail:\n%s", vm.Tail(40))
		}
		if err := vm.Close(); err != nil {
			t.Errorf("close VM: %v", err)
		}
		logf.Close()
		if !t.Failed() {
			os.Remove(logPath)
		} else {
			t.Logf("full console log kept: %s", logPath)
		}
		if err := os.RemoveAll(share); err != nil {
			t.Errorf("remove share: %v", err)
		}
		assertGone(t, pids, run, share)
	})
	return vm, share
}

// assertGone fails the test if a process of pids still exists or a path is
// still there.
func assertGone(t *testing.T, pids []int, paths ...string) {
	t.Helper()
	for _, p := range pids {
		if err := syscall.Kill(p, 0); !errors.Is(err, syscall.ESRCH) {
			b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "cmdline"))
			t.Errorf("leak: process %d still exists (%v): %s", p, err, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("leak: %s still exists (%v)", p, err)
		}
	}
	// and no QEMU anywhere that uses one of our run directories
	for _, p := range paths {
		if p == "" {
			continue
		}
		for _, q := range proc.Find(proc.Naming(p + "/")) {
			t.Errorf("leak: process %d uses %s: %s", q.PID, p, q.Line())
		}
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
