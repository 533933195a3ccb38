package guestvm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestQEMUArgs(t *testing.T) {
	cfg := Config{Kernel: "/k", Initrd: "/i", MemoryMiB: 256, CPUs: 1, SerialPort: "magnetar.agent",
		Share: "/s", ShareTag: "magnetar", Cmdline: []string{"magnetar.log=debug"}}
	a := strings.Join(QEMUArgs(cfg, "tcg", "/d", 2445404), " ")
	for _, want := range []string{
		"-machine microvm,memory-backend=mem -accel tcg -cpu max",
		"memory-backend-memfd,id=mem,size=256M,share=on -m 256",
		"-nodefaults -no-user-config -display none -no-reboot",
		"-global virtio-mmio.force-legacy=false",
		"socket,id=agent,path=/d/agent.sock,server=on,wait=off",
		"virtserialport,bus=vser0.0,chardev=agent,name=magnetar.agent",
		"vhost-user-fs-device,chardev=vfs,tag=magnetar",
		"-kernel /k -initrd /i",
		"-append console=ttyS0 quiet panic=-1 reboot=t tsc_early_khz=2445404 magnetar.log=debug",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("args lack %q:\n%s", want, a)
		}
	}
	if a := strings.Join(QEMUArgs(Config{Kernel: "/k", Initrd: "/i", MemoryMiB: 64}, "kvm", "/d", 0), " "); strings.Contains(a, "virtserialport") ||
		strings.Contains(a, "vhost-user-fs") || strings.Contains(a, "tsc_early_khz") || !strings.Contains(a, "-accel kvm -cpu host") {
		t.Errorf("minimal kvm args: %s", a)
	}
}

func TestTSCkHz(t *testing.T) {
	k, err := TSCkHz()
	if err != nil {
		t.Skip(err)
	}
	if k < 100000 || k > 10000000 {
		t.Fatalf("TSC %d kHz is implausible", k)
	}
}

func TestChooseAccel(t *testing.T) {
	for _, a := range []string{"tcg", "kvm"} {
		if got, err := ChooseAccel(a); err != nil || got != a {
			t.Errorf("%s: %s %v", a, got, err)
		}
	}
	if got, err := ChooseAccel("auto"); err != nil || (got != "tcg" && got != "kvm") {
		t.Errorf("auto: %s %v", got, err)
	}
	if _, err := ChooseAccel("xen"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("xen: %v", err)
	}
}

func TestStartBadConfig(t *testing.T) {
	if _, err := Start(context.Background(), Config{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("empty config: %v", err)
	}
	_, err := Start(context.Background(), Config{Kernel: "/k", Initrd: "/i", QEMU: "/nonexistent/qemu"})
	if err == nil || errors.Is(err, ErrVMMExited) {
		t.Errorf("missing qemu: %v", err)
	}
}

// TestFakeQEMU drives Start, the console, ExitReason, DialAgent and Close
// with a stand-in for QEMU (a shell script), so it runs without QEMU.
func TestFakeQEMU(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "qemu")
	script := "#!/bin/sh\necho 'Linux booting'\necho '[    2.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000200'\nsleep 0.2\nexit 0\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vm, err := Start(ctx, Config{Kernel: "/k", Initrd: "/i", QEMU: fake, Accel: "tcg", SerialPort: "p"})
	if err != nil {
		t.Fatal(err)
	}
	run := vm.Dir()
	if l, err := vm.WaitLine(ctx, "Linux booting"); err != nil || l.At.Before(vm.Started) {
		t.Fatalf("console line: %v %v", l, err)
	}
	if r := vm.ExitReason(); r != "" && !strings.Contains(r, "panic") {
		t.Errorf("reason while running: %q", r)
	}
	if err := vm.Wait(ctx); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if r := vm.ExitReason(); r != "exit status 0 after a guest kernel panic: Attempted to kill init! exitcode=0x00000200" {
		t.Errorf("exit reason %q", r)
	}
	if _, err := vm.DialAgent(ctx); !errors.Is(err, ErrVMMExited) || !strings.Contains(err.Error(), "Attempted to kill init") {
		t.Errorf("dial after exit: %v", err)
	}
	if _, err := vm.WaitLine(ctx, "never printed"); !errors.Is(err, ErrVMMExited) {
		t.Errorf("wait for a line after exit: %v", err)
	}
	if err := vm.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(run); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run dir left: %v", err)
	}
}

func TestBusyboxBundle(t *testing.T) {
	if _, err := os.Stat(Busybox); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	if err := BusyboxBundle(dir, "c1", []string{"sh", "-c", "echo hi"}, []string{"mkdir"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "c1", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"SCMP_ACT_ERRNO"`, `"mkdir"`, `"path": "rootfs"`, `"echo hi"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("config.json lacks %s", want)
		}
	}
	if fi, err := os.Lstat(filepath.Join(dir, "c1", "rootfs", "bin", "sh")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("bin/sh: %v", err)
	}
	if err := BusyboxBundle(dir, "c2", nil, nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("no args: %v", err)
	}
}
