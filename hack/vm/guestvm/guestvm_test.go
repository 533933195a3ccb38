package guestvm

import (
	"context"
	"errors"
	"strings"
	"testing"

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
