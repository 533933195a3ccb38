package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var flagOpts = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"bind": {false, unix.MS_BIND}, "rbind": {false, unix.MS_BIND | unix.MS_REC},
	"noatime": {false, unix.MS_NOATIME}, "relatime": {false, unix.MS_RELATIME},
	"sync": {false, unix.MS_SYNCHRONOUS}, "remount": {false, unix.MS_REMOUNT},
	"defaults": {false, 0},
}

// IsBind reports whether an OCI mount is a bind mount: type bind, or a bind
// or rbind option (runc's rule).
func IsBind(m *specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// ParseOptions splits mount options into flags and the data string.
func ParseOptions(opts []string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range opts {
		if f, ok := flagOpts[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		data = append(data, o)
	}
	return flags, strings.Join(data, ",")
}

// Validate checks mounts from a request before use.
func Validate(field string, ms []*types.Mount) error {
	for i, m := range ms {
		if m.GetType() == "" {
			return fmt.Errorf("%s[%d].type: must not be empty: %w", field, i, errdefs.ErrInvalidArgument)
		}
		if m.GetTarget() != "" && (filepath.IsAbs(m.GetTarget()) || strings.Contains(m.GetTarget(), "..")) {
			return fmt.Errorf("%s[%d].target %q: must be relative without \"..\": %w", field, i, m.GetTarget(), errdefs.ErrInvalidArgument)
		}
		for _, v := range append([]string{m.GetType(), m.GetSource(), m.GetTarget()}, m.GetOptions()...) {
			if strings.IndexByte(v, 0) >= 0 {
				// mount(2) takes C strings: it would be cut short there
				return fmt.Errorf("%s[%d]: %q contains a NUL byte: %w", field, i, v, errdefs.ErrInvalidArgument)
			}
		}
		_, data := ParseOptions(m.GetOptions())
		if len(data) >= os.Getpagesize() {
			return fmt.Errorf("%s[%d].options: %d bytes of mount data exceed one page: %w", field, i, len(data), errdefs.ErrNotImplemented)
		}
	}
	return nil
}

// All mounts ms on target in order; on failure the ones done are undone.
func All(ms []*types.Mount, target string) (retErr error) {
	if err := Validate("rootfs", ms); err != nil {
		return err
	}
	var done []string
	defer func() {
		if retErr != nil {
			for i := len(done) - 1; i >= 0; i-- {
				_ = unix.Unmount(done[i], unix.MNT_DETACH)
			}
		}
	}()
	for _, m := range ms {
		// each mount lands where its target resolves inside target now
		// (on what the mounts before it put there)
		at, err := openBelow(target, m.GetTarget())
		if err != nil {
			return fmt.Errorf("mount %s (%s): %w", m.GetSource(), m.GetType(), err)
		}
		dst, err := at.path()
		if err != nil {
			at.Close()
			return err
		}
		opts, uidmap, gidmap := idmapOptions(m.GetOptions())
		if uidmap != "" || gidmap != "" {
			if m.GetType() != "overlay" {
				at.Close()
				return fmt.Errorf("mount %s (%s) on %s: uidmap/gidmap options on a %s mount: %w", m.GetSource(), m.GetType(), dst, m.GetType(), errdefs.ErrNotImplemented)
			}
			err := mountIDMappedOverlay(m.GetSource(), at.proc(), opts, uidmap, gidmap)
			at.Close()
			if err != nil {
				return err
			}
			done = append(done, dst)
			continue
		}
		flags, data := ParseOptions(opts)
		err = unix.Mount(m.GetSource(), at.proc(), m.GetType(), flags&^unix.MS_REMOUNT, data)
		at.Close()
		if err != nil {
			return fmt.Errorf("mount %s (%s) on %s: %w", m.GetSource(), m.GetType(), dst, refused(err))
		}
		done = append(done, dst)
		// a read-only bind needs a remount to take effect
		if flags&unix.MS_BIND != 0 && flags&unix.MS_RDONLY != 0 {
			if err := unix.Mount("", dst, "", flags|unix.MS_REMOUNT, ""); err != nil {
				return fmt.Errorf("remount %s read-only: %w", dst, err)
			}
		}
	}
	return nil
}

// refused makes the kernel's refusals of what a request named (a missing
// source or directory, an unknown type, a bad option) InvalidArgument.
func refused(err error) error {
	for _, e := range []error{unix.ENOENT, unix.ENOTDIR, unix.EINVAL, unix.ENODEV, unix.ENOTBLK} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
		}
	}
	return err
}

// belowDir is a directory opened (O_PATH) inside a root: see openBelow.
type belowDir struct{ fd int }

// openBelow opens sub (relative; "" is root itself) resolved inside root,
// as the mount point of a request's mount: root must not be a symlink
// itself, and sub is resolved with openat2 RESOLVE_IN_ROOT, so that no
// symlink or ".." on its way leaves root. Not found (a symlink pointing
// out resolves inside root, where nothing is) is InvalidArgument.
func openBelow(root, sub string) (*belowDir, error) {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("mount target %s: %v: %w", root, err, errdefs.ErrInvalidArgument)
	}
	var st unix.Stat_t
	if err := unix.Fstat(rfd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		unix.Close(rfd)
		return nil, fmt.Errorf("mount target %s: not a directory (a symlink is not followed): %w", root, errdefs.ErrInvalidArgument)
	}
	if sub == "" {
		return &belowDir{fd: rfd}, nil
	}
	defer unix.Close(rfd)
	fd, err := unix.Openat2(rfd, sub, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return nil, fmt.Errorf("mount target %q below %s (resolved inside it): %v: %w", sub, root, err, errdefs.ErrInvalidArgument)
	}
	return &belowDir{fd: fd}, nil
}

// proc is the path that names the opened directory itself, for mount(2).
func (b *belowDir) proc() string { return "/proc/self/fd/" + strconv.Itoa(b.fd) }

// path is where the opened directory is, for the unmount of an undo.
func (b *belowDir) path() (string, error) {
	p, err := os.Readlink(b.proc())
	if err != nil {
		return "", fmt.Errorf("mount target: %w", err)
	}
	return p, nil
}

func (b *belowDir) Close() { unix.Close(b.fd) }

// UnmountAll unmounts everything mounted on target (stacked mounts too).
// Not mounted is fine.
func UnmountAll(target string) error {
	for i := 0; i < 64; i++ {
		err := unix.Unmount(target, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 64 unmounts", target)
}
