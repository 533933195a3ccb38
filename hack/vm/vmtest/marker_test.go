package vmtest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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
	// as many as the manifest lists
	b, err := os.ReadFile(filepath.Join(image(t), "manifest-marker.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Meta map[string]string `json:"meta"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("n=%d ", len(strings.Fields(m.Meta["modules"]))); !strings.Contains(l.Text, want) {
		t.Errorf("marker loaded other than the manifest's modules (%s): %s", want, l.Text)
	}
	if err := vm.Wait(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatalf("QEMU after poweroff: %v", err)
	}
	t.Logf("%s; QEMU exited %.2f s after start", l.Text, time.Since(vm.Started).Seconds())
}
