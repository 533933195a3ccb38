package bundle

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/shared/mount"
)

// A bundle whose rootfs is a symlink (to a directory outside, or dangling)
// is refused before anything is mounted or made where it points (found by
// hack/rpcfuzz).
func TestMountRootfsRefusesASymlink(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside")
	if err := os.Mkdir(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = mount.RemoveAll(dir) }()
	for _, to := range []string{outside, filepath.Join(outside, "dangling")} {
		b, err := os.MkdirTemp(dir, "bundle")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(to, filepath.Join(b, "rootfs")); err != nil {
			t.Fatal(err)
		}
		ms := []*types.Mount{{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}}}
		mounted, err := MountRootfs(b, ms, &specs.Spec{})
		if mounted || !errdefs.IsInvalidArgument(err) {
			t.Errorf("rootfs -> %s: mounted %v, %v; want InvalidArgument", to, mounted, err)
		}
		// nothing to mount: the symlink would be the container's root
		sp := &specs.Spec{Root: &specs.Root{Path: "rootfs"}}
		if _, err := MountRootfs(b, nil, sp); !errdefs.IsInvalidArgument(err) {
			t.Errorf("rootfs -> %s as the root: %v, want InvalidArgument", to, err)
		}
		table, _ := mount.Self()
		if got := mount.Below(table, outside); len(got) > 0 {
			t.Errorf("rootfs -> %s: mounted outside: %v", to, got)
			_ = mount.UnmountAll(outside)
		}
		if _, err := os.Lstat(filepath.Join(outside, "dangling")); err == nil {
			t.Errorf("rootfs -> %s: made where it points", to)
		}
	}
}
