package runcbe

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/agent/internal/reaper"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// The agent refuses a bundle, or a container root, that is outside the
// share once its symlinks are followed, not only by its name (issue 16,
// item 4).
func TestCreateRefusesWhatIsOutsideTheShare(t *testing.T) {
	dir := t.TempDir()
	share, outside := filepath.Join(dir, "share"), filepath.Join(dir, "outside")
	for _, d := range []string{filepath.Join(share, "b"), filepath.Join(outside, "b"), filepath.Join(share, "r")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(share, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(share, "r", "rootfs")); err != nil {
		t.Fatal(err)
	}
	be, err := New(Config{Runc: "/nonexistent/runc", Root: filepath.Join(dir, "runc"), Dir: filepath.Join(dir, "ctr"),
		ShareRoot: share, Reaper: reaper.New()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ bundle, root, field string }{
		{filepath.Join(outside, "b"), "rootfs", "bundle"},
		{share, "rootfs", "bundle"},
		{share + "/../outside/b", "rootfs", "bundle"},
		{filepath.Join(share, "link", "b"), "rootfs", "bundle"}, // a symlink on the way out
		{filepath.Join(share, "b"), "/", "root.path"},
		{filepath.Join(share, "b"), "../../outside", "root.path"},
		{filepath.Join(share, "r"), "rootfs", "root.path"}, // rootfs -> outside
	} {
		sp := &specs.Spec{Process: &specs.Process{Args: []string{"true"}}, Root: &specs.Root{Path: c.root}, Linux: &specs.Linux{}}
		_, err := be.Create(context.Background(), &task.CreateRequest{ID: "c", Bundle: c.bundle, Spec: sp})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("bundle %s, root %s: %v, want InvalidArgument naming %s", c.bundle, c.root, err, c.field)
		}
	}
}
