package vmtest

import (
	"strings"
	"testing"
	"time"
)

// TestMarkerBoot boots the bare image (the same kernel, modules and VM shape
// as the agent's, /init = markerinit): every module of /modules/load loads
// and the guest powers itself off, QEMU exiting 0.
func TestMarkerBoot(t *testing.T) {
	vm, _ := startVM(t, vmOpts{marker: true})
	ctx := ctxTimeout(t, bootTimeout)
	if _, err := vm.WaitLine(ctx, "MAGNETAR-MARKER init"); err != nil {
		t.Fatal(err)
	}
	l, err := vm.WaitLine(ctx, "MAGNETAR-MARKER modules")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(vm.Console(), "markerinit: modules:") {
		t.Errorf("a module failed to load: %s", l.Text)
	}
	if err := vm.Wait(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatalf("QEMU after poweroff: %v", err)
	}
	t.Logf("%s; QEMU exited %.2f s after start", l.Text, time.Since(vm.Started).Seconds())
}
