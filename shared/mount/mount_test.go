package mount

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	f, d := ParseOptions([]string{"ro", "nosuid", "lowerdir=/a:/b", "upperdir=/u", "rw", "rbind"})
	if f != unix.MS_NOSUID|unix.MS_BIND|unix.MS_REC {
		t.Errorf("flags = %#x", f)
	}
	if d != "lowerdir=/a:/b,upperdir=/u" {
		t.Errorf("data = %q", d)
	}
}

func TestValidate(t *testing.T) {
	bad := [][]*types.Mount{
		{{Type: "", Source: "x"}},
		{{Type: "bind", Target: "/abs"}},
		{{Type: "bind", Target: "a/../../b"}},
		{{Type: "overlay", Options: []string{"lowerdir=" + strings.Repeat("x", 5000)}}},
	}
	for i, ms := range bad {
		if err := Validate("rootfs", ms); err == nil || !strings.Contains(err.Error(), "rootfs[0]") {
			t.Errorf("case %d: %v", i, err)
		}
	}
	if err := Validate("rootfs", bad[3]); !errdefs.IsNotImplemented(err) {
		t.Errorf("long data: %v", err)
	}
	if err := Validate("rootfs", []*types.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/a"}}}); err != nil {
		t.Error(err)
	}
}

// A mount target is resolved inside the target it is mounted below: a
// target that is itself a symlink, or a sub-target whose path goes
// through a symlink out, mounts nothing outside (issue 16: request paths
// resolved inside their root).
func TestAllStaysInsideTarget(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := t.TempDir()
	root, outside := filepath.Join(dir, "root"), filepath.Join(dir, "outside")
	for _, d := range []string{root, outside, filepath.Join(outside, "x")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	tmpfs := func(target string) []*types.Mount {
		return []*types.Mount{{Type: "tmpfs", Source: "tmpfs", Target: target, Options: []string{"size=1m"}}}
	}
	if err := os.Symlink(outside, filepath.Join(root, "abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../outside", filepath.Join(root, "rel")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = UnmountAll(outside); _ = UnmountAll(filepath.Join(outside, "x")); _ = RemoveAll(dir) }()
	for _, c := range []struct {
		ms     []*types.Mount
		target string
	}{
		{tmpfs(""), link},    // the target a symlink out
		{tmpfs("abs"), root}, // an absolute symlink below it
		{tmpfs("rel"), root}, // a relative symlink climbing out
		{tmpfs("abs/x"), root},
		{tmpfs("rel/x"), root},
	} {
		err := All(c.ms, c.target)
		table, _ := Self()
		if got := Below(table, outside); len(got) > 0 {
			t.Errorf("All(%s on %s) mounted outside: %v (err %v)", c.ms[0].Target, c.target, got, err)
			for i := len(got) - 1; i >= 0; i-- {
				_ = UnmountAll(got[i])
			}
		}
		if err == nil || !errdefs.IsInvalidArgument(err) {
			t.Errorf("All(%s on %s) = %v, want InvalidArgument", c.ms[0].Target, c.target, err)
		}
	}
	// a real directory below the target still works, and is undone
	if err := os.Mkdir(filepath.Join(root, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := All(tmpfs("sub"), root); err != nil {
		t.Fatalf("a sub-target inside: %v", err)
	}
	table, _ := Self()
	if got := Below(table, root); len(got) != 1 || got[0] != filepath.Join(root, "sub") {
		t.Errorf("mounts below the target: %v", got)
	}
	if err := UnmountAll(filepath.Join(root, "sub")); err != nil {
		t.Fatal(err)
	}
}

// A mount the kernel refuses for what the request names (a missing
// directory, an unknown type, a bad option) is InvalidArgument, not an
// unknown error (found by hack/rpcfuzz).
func TestAllRefusalsAreInvalidArgument(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := t.TempDir()
	for _, m := range []*types.Mount{
		{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + dir + "/none", "upperdir=" + dir + "/up", "workdir=" + dir + "/w"}},
		{Type: "nosuchfs", Source: "none"},
		{Type: "bind", Source: dir + "/missing", Options: []string{"bind"}},
		{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=bogus"}},
	} {
		if err := All([]*types.Mount{m}, dir); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s mount: %v, want InvalidArgument", m.Type, err)
			_ = UnmountAll(dir)
		}
	}
}
