package taskfwd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzOpenInRoot: a bind destination, whatever its ".." and whatever the
// rootfs's symlinks point at (the host's /, "../..", a dangling absolute
// link to a real directory outside, a loop), is opened or created inside
// the rootfs and never outside it.
func FuzzOpenInRoot(f *testing.F) {
	for _, d := range []string{"/etc/hosts", "/abs/x", "/up/y", "/dangling", "/dangling/z", "/rel/w", "/loop/x", "/", "../../../tmp",
		"/file/x", "a/../../b", "/./.", "/new/deep/dir/", "//x//y", "/up/../../..", "/self/self/self/q"} {
		f.Add(d, true)
		f.Add(d, false)
	}
	parent := f.TempDir()
	outside := filepath.Join(parent, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		f.Fatal(err)
	}
	n := 0
	f.Fuzz(func(t *testing.T, dest string, dir bool) {
		if strings.IndexByte(dest, 0) >= 0 {
			return // not a path
		}
		n++
		root := filepath.Join(parent, "root"+strconv.Itoa(n))
		if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(root)
		if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		for link, target := range map[string]string{
			"abs": "/", "up": "../..", "dangling": filepath.Join(outside, "made"), "rel": "../outside/made",
			"loop": "loop", "self": ".", "etc/hosts": "/../../../outside/hosts",
		} {
			if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
				t.Fatal(err)
			}
		}
		fh, err := openInRoot(root, dest, dir)
		if err == nil {
			got, rerr := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fh.Fd())))
			fh.Close()
			if rerr != nil || !strings.HasPrefix(got, root+"/") {
				t.Fatalf("openInRoot(%q) opened %s (%v), outside the rootfs %s", dest, got, rerr, root)
			}
		}
		if ents, err := os.ReadDir(outside); err != nil || len(ents) > 0 {
			t.Fatalf("openInRoot(%q) made %v outside the rootfs (%v)", dest, ents, err)
		}
		if ents, err := os.ReadDir(parent); err != nil || len(ents) != 2 {
			t.Fatalf("openInRoot(%q): beside the rootfs: %v (%v)", dest, ents, err)
		}
	})
}
