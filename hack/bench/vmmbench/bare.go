package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/magnetar-runtime/magnetar/hack/vm/guestvm"
	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

// bareSample is one boot of the marker image, in ms (-1: not measured).
type bareSample struct {
	Run       int     `json:"run"`
	Pos       int     `json:"position"`      // place in its round (0 first)
	VMMStart  float64 `json:"vmm_start_ms"`  // H: QEMU start → QMP greeting
	Kernel    float64 `json:"kernel_ms"`     // H: QMP greeting → /init's first line
	ToInit    float64 `json:"to_init_ms"`    // H: QEMU start → /init's first line (the bare guest boot)
	GuestInit float64 `json:"guest_init_ms"` // G: guest CLOCK_BOOTTIME at /init
	Modules   float64 `json:"modules_ms"`    // G: the marker loading the same modules as the agent
	ToModules float64 `json:"to_modules_ms"` // H: QEMU start → modules loaded
	Load1     float64 `json:"load1"`
}

var (
	reBoottime = regexp.MustCompile(`boottime_us=(\d+)`)
	reModMS    = regexp.MustCompile(`\bms=(\d+)`)
)

// bootBare boots the marker image as hack/bench/vmboot does (bootMarker):
// the same guestvm VM shape (microvm, virtio-serial port, virtio-fs share
// through virtiofsd, the accelerator MAGNETAR_VM_ACCEL or auto picks) with
// memMiB of memory, and times QEMU's start to the marker's first line.
func bootBare(ctx context.Context, img, share string, memMiB int) (bareSample, string, error) {
	s := bareSample{VMMStart: -1, Kernel: -1, ToInit: -1, GuestInit: -1, Modules: -1, ToModules: -1}
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	cfg := guestvm.Config{
		Kernel: filepath.Join(img, "vmlinuz"), Initrd: filepath.Join(img, "initramfs-marker.cpio"), MemoryMiB: memMiB,
		SerialPort: agentapi.DefaultSerialPort, Share: share, ShareTag: agentapi.DefaultShareTag,
		Cmdline: []string{agentapi.CmdlineTransport + "=" + agentapi.DefaultTransport, agentapi.CmdlineShare + "=" + agentapi.DefaultShare},
	}
	vm, err := guestvm.Start(ctx, cfg)
	if err != nil {
		return s, "", err
	}
	defer vm.Close()
	q, err := vm.QMPReady(ctx)
	if err != nil {
		return s, vm.Accel(), err
	}
	s.VMMStart = ms(q.Sub(vm.Started))
	l, err := vm.WaitLine(ctx, "MAGNETAR-MARKER init")
	if err != nil {
		return s, vm.Accel(), fmt.Errorf("marker boot: %w\n%s", err, vm.Tail(20))
	}
	s.ToInit = ms(l.At.Sub(vm.Started))
	s.Kernel = ms(l.At.Sub(q))
	if v := matchFloat(reBoottime, l.Text); v >= 0 {
		s.GuestInit = v / 1000
	}
	l, err = vm.WaitLine(ctx, "MAGNETAR-MARKER modules")
	if err != nil {
		return s, vm.Accel(), fmt.Errorf("marker modules: %w\n%s", err, vm.Tail(20))
	}
	s.ToModules = ms(l.At.Sub(vm.Started))
	s.Modules = matchFloat(reModMS, l.Text)
	if err := vm.Wait(ctx); err != nil {
		return s, vm.Accel(), fmt.Errorf("qemu after the marker's poweroff: %w", err)
	}
	return s, vm.Accel(), nil
}

func matchFloat(re *regexp.Regexp, s string) float64 {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}
