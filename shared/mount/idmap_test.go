package mount

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
)

func TestParseIDMap(t *testing.T) {
	m, err := parseIDMap("uidmap", "0:100000:65536,70000:200000:10")
	if err != nil || len(m) != 2 || m[0] != (syscall.SysProcIDMap{ContainerID: 0, HostID: 100000, Size: 65536}) || m[1].Size != 10 {
		t.Errorf("parse: %v %v", m, err)
	}
	for _, bad := range []string{"", "0:1", "0:1:0", "a:b:c", "0:1:2:3", "-1:0:1"} {
		if _, err := parseIDMap("uidmap", bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	rest, u, g := idmapOptions([]string{"index=off", "uidmap=0:1:2", "lowerdir=/a", "gidmap=0:3:4"})
	if u != "0:1:2" || g != "0:3:4" || strings.Join(rest, ",") != "index=off,lowerdir=/a" {
		t.Errorf("options: %v %q %q", rest, u, g)
	}
}

// TestIDMappedOverlay mounts an overlay as containerd's overlay snapshotter
// describes it for a pod with its own user namespace: files of the lower
// layers (owned by 0 on disk) appear owned by the mapped root, and nothing
// but the overlay is left mounted.
func TestIDMappedOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (overlay, idmapped mounts)")
	}
	d := t.TempDir()
	for _, s := range []string{"l1", "l2", "upper", "work", "rootfs"} {
		if err := os.Mkdir(filepath.Join(d, s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d, "l1", "f1"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "l2", "f2"), []byte("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(d, "upper"), 100000, 100000); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(d, "rootfs")
	m := &types.Mount{Type: "overlay", Source: "overlay", Options: []string{"index=off",
		"workdir=" + filepath.Join(d, "work"), "upperdir=" + filepath.Join(d, "upper"),
		"lowerdir=" + filepath.Join(d, "l1") + ":" + filepath.Join(d, "l2"),
		"uidmap=0:100000:65536", "gidmap=0:100000:65536"}}
	before := countMounts(t)
	if err := All([]*types.Mount{m}, target); err != nil {
		t.Fatal(err)
	}
	defer UnmountAll(target)
	for _, f := range []string{"f1", "f2"} {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(target, f), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 100000 || st.Gid != 100000 {
			t.Errorf("%s: owner %d:%d through the overlay, want the mapped root 100000:100000", f, st.Uid, st.Gid)
		}
	}
	if n := countMounts(t); n != before+1 {
		t.Errorf("%d mounts more, want only the overlay", n-before)
	}
	if err := UnmountAll(target); err != nil {
		t.Fatal(err)
	}
	// a uidmap on another kind of mount is not something we can do
	m2 := &types.Mount{Type: "bind", Source: filepath.Join(d, "l1"), Options: []string{"rbind", "uidmap=0:1:1", "gidmap=0:1:1"}}
	if err := All([]*types.Mount{m2}, target); !errdefs.IsNotImplemented(err) {
		t.Errorf("idmapped bind: %v", err)
	}
}

func countMounts(t *testing.T) int {
	t.Helper()
	tab, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	return len(tab)
}
