package taskfwd

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// A volume's copy in the share receives what the host mounts below its
// source later when the volume asks for it (rslave: Kubernetes'
// HostToContainer; rshared), and only then (critest's mount propagation
// specs on the VM handlers: rslave failed, the copy was always private).
func TestVolumePropagation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
	for _, tc := range []struct {
		options []string
		want    bool
	}{
		{[]string{"rbind", "rslave"}, true},
		{[]string{"rbind", "rshared"}, true},
		{[]string{"rbind", "rprivate"}, false},
		{[]string{"rbind"}, false},
	} {
		dir := t.TempDir()
		src, target := filepath.Join(dir, "src"), filepath.Join(dir, "share", "0")
		if err := os.Mkdir(src, 0o755); err != nil {
			t.Fatal(err)
		}
		// the source: a mount of its own in a shared peer group, as a
		// kubelet's volume below a shared / is
		if err := unix.Mount("tmpfs", src, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(src, unix.MNT_DETACH) })
		if err := unix.Mount("", src, "", unix.MS_SHARED, ""); err != nil {
			t.Fatal(err)
		}
		m := specs.Mount{Source: src, Options: tc.options}
		if err := bindInto(src, target, bindMode{recursive: true, slave: receivesMounts(&m)}); err != nil {
			t.Fatalf("%v: %v", tc.options, err)
		}
		t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
		// a mount made on the host after the container started
		if err := os.Mkdir(filepath.Join(src, "later"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", filepath.Join(src, "later"), "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(filepath.Join(src, "later"), unix.MNT_DETACH) })
		if err := os.WriteFile(filepath.Join(src, "later", "f"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := os.Stat(filepath.Join(target, "later", "f"))
		if got := err == nil; got != tc.want {
			t.Errorf("%v: the host's later mount seen in the share's copy: %v, want %v", tc.options, got, tc.want)
		}
		// and nothing goes the other way: a mount below the copy stays there
		if err := unix.Mount("tmpfs", filepath.Join(target, "later"), "tmpfs", 0, ""); err == nil {
			if _, err := os.Stat(filepath.Join(src, "later", "f")); err != nil {
				t.Errorf("%v: a mount made below the share's copy reached the source", tc.options)
			}
			_ = unix.Unmount(filepath.Join(target, "later"), unix.MNT_DETACH)
		}
	}
}
