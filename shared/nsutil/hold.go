package nsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// nsGetUserns is NS_GET_USERNS (linux/nsfs.h): the user namespace that
// owns a namespace, as a new file descriptor.
const nsGetUserns = 0xb701

// Hold keeps an existing namespace alive by bind-mounting its file src (a
// /proc/<pid>/ns/<kind> entry of a process that may end soon, or an
// already held file) at dir/<kind>, creating dir (0700) if needed, and
// returns that path. src must be a namespace of the kind; an existing
// dir/<kind> is errdefs.ErrAlreadyExists. On failure nothing is left.
// Release undoes it with the rest.
func Hold(dir string, kind Kind, src string) (string, error) {
	ok, err := IsNSFile(src, kind)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%s: not a %s namespace: %w", src, kind, errdefs.ErrInvalidArgument)
	}
	return hold(dir, kind, src)
}

// HoldOwner holds the user namespace that owns the namespace file ns (for
// a pod's network namespace made by containerd inside a pod-level user
// namespace) at dir/user and returns that path. A namespace owned by this
// process's own user namespace is errdefs.ErrInvalidArgument: a pod with
// its own user namespace never joins the daemon's.
func HoldOwner(dir string, ns string) (string, error) {
	f, err := os.OpenFile(ns, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", ns, err)
	}
	defer f.Close()
	fd, err := unix.IoctlRetInt(int(f.Fd()), nsGetUserns)
	if err != nil {
		return "", fmt.Errorf("owner user namespace of %s: %w", ns, err)
	}
	owner := os.NewFile(uintptr(fd), "userns")
	defer owner.Close()
	var o, self unix.Stat_t
	if err := unix.Fstat(fd, &o); err != nil {
		return "", err
	}
	if err := unix.Stat("/proc/self/ns/user", &self); err != nil {
		return "", err
	}
	if o.Ino == self.Ino && o.Dev == self.Dev {
		return "", fmt.Errorf("%s is owned by the host's user namespace, not a pod's: %w", ns, errdefs.ErrInvalidArgument)
	}
	return hold(dir, KindUser, fmt.Sprintf("/proc/self/fd/%d", fd))
}

// Unhold undoes one Hold: unmounts and removes the file.
func Unhold(path string) error {
	if err := unmountAll(path); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func hold(dir string, kind Kind, src string) (_ string, retErr error) {
	if dir == "" {
		return "", fmt.Errorf("no directory for the namespace file: %w", errdefs.ErrInvalidArgument)
	}
	dir = filepath.Clean(dir)
	if top := firstMissing(dir); top != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("create %s: %w", dir, err)
		}
		defer func() {
			if retErr != nil {
				removeUpTo(dir, top)
			}
		}()
	}
	p := filepath.Join(dir, string(kind))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDONLY|unix.O_CLOEXEC, 0o400)
	if errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("namespace file %s: %w", p, errdefs.ErrAlreadyExists)
	}
	if err != nil {
		return "", fmt.Errorf("namespace file: %w", err)
	}
	f.Close()
	if err := unix.Mount(src, p, "", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(p)
		return "", fmt.Errorf("bind-mount %s namespace %s on %s: %w", kind, src, p, err)
	}
	return p, nil
}
