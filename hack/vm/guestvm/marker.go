package guestvm

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// MarkerBoot is one boot of the marker image (initramfs-marker.cpio, whose
// /init is hack/vm/markerinit): when each step arrived on the host, and
// what the marker measured in the guest.
type MarkerBoot struct {
	Accel   string    // the accelerator QEMU ran with
	Started time.Time // QEMU started
	QMP     time.Time // its QMP greeting (main loop running)
	Init    time.Time // the marker's first line: /init runs
	Modules time.Time // its modules line: the modules are loaded
	Exited  time.Time // QEMU exited after the marker's poweroff
	// GuestInitMS is the guest's CLOCK_BOOTTIME at /init, in ms (-1: not in
	// the line).
	GuestInitMS float64
	// ModulesMS is the module loading as the marker timed it, in ms (-1:
	// not in the line).
	ModulesMS float64
}

// The marker's console lines (hack/vm/markerinit).
const (
	markerInit    = "MAGNETAR-MARKER init"
	markerModules = "MAGNETAR-MARKER modules"
)

var (
	reBoottime = regexp.MustCompile(`boottime_us=(\d+)`)
	reModMS    = regexp.MustCompile(`\bms=(\d+)`)
)

// BootMarker starts cfg (the marker initramfs as Initrd), waits for the
// marker's two lines and QEMU's exit after the marker powers the guest off,
// all within 120 s, and closes the VM. On error, the MarkerBoot holds the
// steps reached (zero times for the others).
func BootMarker(ctx context.Context, cfg Config) (MarkerBoot, error) {
	b := MarkerBoot{GuestInitMS: -1, ModulesMS: -1}
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	vm, err := Start(ctx, cfg)
	if err != nil {
		return b, err
	}
	defer vm.Close()
	b.Accel, b.Started = vm.Accel(), vm.Started
	if b.QMP, err = vm.QMPReady(ctx); err != nil {
		return b, err
	}
	l, err := vm.WaitLine(ctx, markerInit)
	if err != nil {
		return b, fmt.Errorf("marker boot: %w\n%s", err, vm.Tail(20))
	}
	b.Init = l.At
	if v := matchFloat(reBoottime, l.Text); v >= 0 {
		b.GuestInitMS = v / 1000
	}
	l, err = vm.WaitLine(ctx, markerModules)
	if err != nil {
		return b, fmt.Errorf("marker modules: %w\n%s", err, vm.Tail(20))
	}
	b.Modules = l.At
	b.ModulesMS = matchFloat(reModMS, l.Text)
	if err := vm.Wait(ctx); err != nil {
		return b, fmt.Errorf("qemu after the marker's poweroff: %w", err)
	}
	b.Exited = time.Now()
	return b, nil
}

// matchFloat is re's first group in s as a number (-1: no match).
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
