package mount

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const table = `22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
30 22 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
40 1 0:50 / /run/x rw - tmpfs shm rw
41 40 0:51 / /run/x/a\040b rw - tmpfs tmpfs rw
42 41 0:4 ipc:[4026532] /run/x/a\040b/ns/ipc rw - nsfs nsfs rw
43 1 0:52 / /run/xy rw - tmpfs tmpfs rw
bad line
`

func TestParseMountinfoAndBelow(t *testing.T) {
	tab, err := ParseMountinfo(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	if len(tab) != 6 || tab[3].Mountpoint != "/run/x/a b" || tab[4].FSType != "nsfs" || tab[2].Source != "shm" {
		t.Fatalf("parsed %+v", tab)
	}
	got := Below(tab, "/run/x/")
	want := []string{"/run/x/a b/ns/ipc", "/run/x/a b", "/run/x"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Below = %q, want %q", got, want)
	}
	// below / is every mount
	if got := Below(tab, "/"); len(got) != len(tab) {
		t.Errorf("Below(/) = %q, want all %d mountpoints", got, len(tab))
	}
}

func TestRemoveAllUnmounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := filepath.Join(t.TempDir(), "sb")
	inner := filepath.Join(dir, "shm", "deeper")
	if err := os.MkdirAll(filepath.Join(dir, "shm"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", filepath.Join(dir, "shm"), "tmpfs", 0, ""); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	if err := os.MkdirAll(inner, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", inner, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("dir still there: %v", err)
	}
	tab, _ := Self()
	if left := Below(tab, dir); len(left) > 0 {
		t.Fatalf("mounts left: %v", left)
	}
	if err := RemoveAll(dir); err != nil {
		t.Fatalf("second RemoveAll: %v", err)
	}
}
