package guestimage

import (
	"maps"
	"os"
	"path/filepath"
	"testing"
)

func TestInfo(t *testing.T) {
	dir := t.TempDir()
	if info := Info(dir); len(info) != 0 {
		t.Errorf("no manifest: %v", info)
	}
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("manifest.json", `{"meta": {"kernel_release": "6.1.0-40-cloud-amd64", "runc_version": "v1.3.0",
		"init_version": "v0.9.0", "modules": "virtio_console.ko fuse.ko virtiofs.ko "},
		"initramfs": {"size": 31457280, "sha256": "ab"}, "files": []}`)
	want := map[string]string{"kernel": "6.1.0-40-cloud-amd64", "runc": "v1.3.0", "agent": "v0.9.0",
		"initramfs_bytes": "31457280", "modules": "3"}
	if info := Info(dir); !maps.Equal(info, want) {
		t.Errorf("without the marker's manifest: %v", info)
	}
	write("manifest-marker.json", `{"meta": {}, "initramfs": {"size": 20971520}}`)
	want["marker_initramfs_bytes"] = "20971520"
	if info := Info(dir); !maps.Equal(info, want) {
		t.Errorf("with the marker's manifest: %v", info)
	}
	if info := Info(dir, "kernel", "modules", "nonesuch"); !maps.Equal(info, map[string]string{"kernel": "6.1.0-40-cloud-amd64", "modules": "3"}) {
		t.Errorf("picked: %v", info)
	}
	write("manifest.json", `not json`)
	if info := Info(dir); !maps.Equal(info, map[string]string{"marker_initramfs_bytes": "20971520"}) {
		t.Errorf("a bad manifest.json: %v", info)
	}
}
