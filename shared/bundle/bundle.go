// Package bundle is what a sandboxer leaves in containerd's task bundle for
// later readers that get nothing else: a restarted containerd finds the
// runtime binary of a task in shim-binary-path (it then reconnects to the
// task, and runs that binary's `delete` after a lost task connection), and
// that `delete` reads the sandboxer's own note to clean up what the task
// left on the host. WriteSpec writes an OCI bundle's config.json, synced
// (a runtime's bundle in the sandboxer's state directory).
//
// The files are written complete or not at all (a temporary file renamed)
// but not synced: the bundle lives in containerd's state directory, a tmpfs
// under /run on a node, which a power loss takes with it.
package bundle

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/shared/mount"
)

// ShimBinaryPath is the file naming a task's runtime binary.
const ShimBinaryPath = "shim-binary-path"

// WriteNotes writes into bundle the note name (v as JSON, mode 0600) and
// shim-binary-path naming this binary.
func WriteNotes(bundle, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(bundle, name), data, 0o600); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(bundle, ShimBinaryPath), []byte(self), 0o644)
}

// RemoveNotes removes what WriteNotes wrote; missing files are fine.
func RemoveNotes(bundle, name string) {
	_ = os.Remove(filepath.Join(bundle, name))
	_ = os.Remove(filepath.Join(bundle, ShimBinaryPath))
}

// ReadNote reads the note name of bundle into v. It reports false, and no
// error, when the bundle path is not absolute or holds no such note:
// nothing of that sandboxer is there.
func ReadNote(bundle, name string, v any) (bool, error) {
	if bundle == "" || !filepath.IsAbs(bundle) {
		return false, nil
	}
	data, err := os.ReadFile(filepath.Join(bundle, name))
	if err != nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	return true, nil
}

// writeFile writes data to path through a temporary file and a rename.
// The bundle is the request's: whatever is at the temporary name (a
// symlink out of the bundle) is replaced, never followed.
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// Clean undoes what a backend made of a container in its bundle and in a
// directory of its own: the mounts on bundle/rootfs (when mounted), the
// notes name, dir. Idempotent; an unmount that fails is logged.
func Clean(ctx context.Context, bundle, name string, mounted bool, dir string) {
	if mounted {
		if err := mount.UnmountAll(filepath.Join(bundle, "rootfs")); err != nil {
			log.G(ctx).WithError(err).Warn("unmounting rootfs")
		}
	}
	RemoveNotes(bundle, name)
	_ = os.RemoveAll(dir)
}

// MountRootfs mounts a container's rootfs (ms, as the Task API gives them)
// on bundle/rootfs and points the spec's root there when it names no
// absolute path of its own. mounted tells whether anything was mounted:
// Clean's argument.
func MountRootfs(bundle string, ms []*types.Mount, sp *specs.Spec) (mounted bool, err error) {
	rootfs := filepath.Join(bundle, "rootfs")
	// bundle/rootfs, mounted on or used as the root, is made here or is a
	// directory: never a symlink to follow out of the bundle
	if st, err := os.Lstat(rootfs); err == nil && !st.IsDir() && (len(ms) > 0 || sp.Root == nil || !filepath.IsAbs(sp.Root.Path)) {
		return false, fmt.Errorf("bundle %s: rootfs is a %s, not a directory: %w", bundle, st.Mode().Type(), errdefs.ErrInvalidArgument)
	}
	if len(ms) > 0 {
		if err := os.MkdirAll(rootfs, 0o711); err != nil {
			return false, err
		}
		if err := mount.All(ms, rootfs); err != nil {
			return false, err
		}
		mounted = true
	}
	if sp.Root == nil {
		sp.Root = &specs.Root{}
	}
	if sp.Root.Path == "" || !filepath.IsAbs(sp.Root.Path) {
		sp.Root.Path = rootfs
	}
	return mounted, nil
}
