package main

import (
	"context"
	"path/filepath"

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

// bootBare boots the marker image as hack/bench/vmboot does
// (guestvm.BootMarker): the same guestvm VM shape (microvm, virtio-serial
// port, virtio-fs share through virtiofsd, the accelerator
// MAGNETAR_VM_ACCEL or auto picks) with memMiB of memory, and times QEMU's
// start to the marker's first line.
func bootBare(ctx context.Context, img, share string, memMiB int) (bareSample, string, error) {
	s := bareSample{VMMStart: -1, Kernel: -1, ToInit: -1, GuestInit: -1, Modules: -1, ToModules: -1}
	b, err := guestvm.BootMarker(ctx, guestvm.Config{
		Kernel: filepath.Join(img, "vmlinuz"), Initrd: filepath.Join(img, "initramfs-marker.cpio"), MemoryMiB: memMiB,
		SerialPort: agentapi.DefaultSerialPort, Share: share, ShareTag: agentapi.DefaultShareTag,
		Cmdline: []string{agentapi.CmdlineTransport + "=" + agentapi.DefaultTransport, agentapi.CmdlineShare + "=" + agentapi.DefaultShare},
	})
	if err != nil {
		return s, b.Accel, err
	}
	s.VMMStart = ms(b.QMP.Sub(b.Started))
	s.ToInit = ms(b.Init.Sub(b.Started))
	s.Kernel = ms(b.Init.Sub(b.QMP))
	s.GuestInit = b.GuestInitMS
	s.ToModules = ms(b.Modules.Sub(b.Started))
	s.Modules = b.ModulesMS
	return s, b.Accel, nil
}
