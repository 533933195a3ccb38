package vmmsb

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVMGuestImageModules: the guest image ships the modules a pod's
// containers may need later, not only those its boot needs. The guest has no
// modprobe, so the kernel cannot load one on demand: without bridge (and its
// stp and llc) a container with NET_ADMIN cannot create a bridge (`brctl
// addbr` fails with ENOPKG, "Package not installed": critest's "Privileged
// is true" and "adding capability" specs).
func TestVMGuestImageModules(t *testing.T) {
	img := guestImage(t)
	b, err := os.ReadFile(filepath.Join(img, "manifest.json"))
	if err != nil {
		t.Skipf("no guest image in %s: run make guest-image (%v)", img, err)
	}
	var m struct {
		Meta  map[string]string `json:"meta"`
		Files []struct {
			Path string `json:"path"`
		} `json:"files"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	files := map[string]bool{}
	for _, f := range m.Files {
		files[f.Path] = true
	}
	load := " " + m.Meta["modules"] + " "
	for _, mod := range []string{"llc.ko", "stp.ko", "bridge.ko"} {
		if !files["/modules/"+mod] {
			t.Errorf("guest image %s has no /modules/%s", img, mod)
		}
		if !strings.Contains(load, " "+mod+" ") {
			t.Errorf("guest image %s does not load %s (load order: %s)", img, mod, strings.TrimSpace(load))
		}
	}
	// dependency order: llc and stp before bridge
	if i, j, k := strings.Index(load, " llc.ko "), strings.Index(load, " stp.ko "), strings.Index(load, " bridge.ko "); k >= 0 && (i > k || j > k) {
		t.Errorf("bridge.ko is loaded before its dependencies: %s", strings.TrimSpace(load))
	}
}
