package guest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindSerialPort(t *testing.T) {
	sys := t.TempDir()
	for port, name := range map[string]string{"vport0p0": "org.qemu.console", "vport0p1": "magnetar.agent"} {
		d := filepath.Join(sys, "class/virtio-ports", port)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "name"), []byte(name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := FindSerialPort(sys, "/dev", "magnetar.agent")
	if err != nil || p != "/dev/vport0p1" {
		t.Fatalf("%q %v", p, err)
	}
	_, err = FindSerialPort(sys, "/dev", "other")
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "magnetar.agent") {
		t.Fatalf("missing port: %v", err)
	}
}

func TestLoadModulesValidatesTheList(t *testing.T) {
	d := t.TempDir()
	if loaded, errs := LoadModules(d); loaded != nil || errs != nil {
		t.Fatalf("no load file: %v %v", loaded, errs)
	}
	// names with a path are refused without touching the kernel; a missing
	// file is an error for that line only
	if err := os.WriteFile(filepath.Join(d, "load"), []byte("# comment\n\n../evil.ko\nmissing.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, errs := LoadModules(d)
	if len(loaded) != 0 || len(errs) != 2 || !strings.Contains(errs[0].Error(), "evil") || !errors.Is(errs[1], os.ErrNotExist) {
		t.Fatalf("loaded %v errs %v", loaded, errs)
	}
}
