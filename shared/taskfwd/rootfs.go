package taskfwd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/mount"
)

// Binds in the rootfs (Forwarding.BindsInRootfs): a bind mount of the spec
// is made by the host at its destination inside the container's rootfs,
// before the guest sees the container. The destination is resolved inside
// the rootfs as runc resolves it (symlinks in the image are followed as if
// the rootfs were /, never out of it) and what is missing is created: a
// directory for a directory source, an empty file otherwise.

// maxSymlinks bounds the symlinks followed while resolving a destination
// (the kernel's own limit).
const maxSymlinks = 40

// inRootfs reports whether a bind at dest is made in the rootfs: not when
// dest lies at or below the destination of a mount that config.json keeps,
// one already kept (kept) or a later one that is no bind (rest), which the
// guest mounts over the rootfs, hiding anything bound there below it; nor
// when it lies at or below a bind already made in the rootfs (made): made
// there, it would be mounted on the bound directory's own dentry, in the
// host's mount namespace, so that the host could not remove that
// directory (EBUSY) while the container exists (a tmpfs that critest
// mounts below a read-only volume, unmounts and removes). Such a bind is
// made for the guest to mount, as for an agent.
func inRootfs(dest string, kept, made, rest []specs.Mount) bool {
	dest = path.Clean("/" + dest)
	under := func(m specs.Mount) bool {
		d := path.Clean("/" + m.Destination)
		return dest == d || d == "/" || strings.HasPrefix(dest, d+"/")
	}
	if slices.ContainsFunc(kept, under) || slices.ContainsFunc(made, under) {
		return false
	}
	for i := range rest {
		if !mount.IsBind(&rest[i]) && under(rest[i]) {
			return false
		}
	}
	return true
}

// bindAttrs are the mount attributes of a bind's options.
func bindAttrs(m *specs.Mount) uint64 {
	var attr uint64
	for _, o := range m.Options {
		switch o {
		case "ro":
			attr |= unix.MOUNT_ATTR_RDONLY
		case "nosuid":
			attr |= unix.MOUNT_ATTR_NOSUID
		case "nodev":
			attr |= unix.MOUNT_ATTR_NODEV
		case "noexec":
			attr |= unix.MOUNT_ATTR_NOEXEC
		}
	}
	return attr
}

// bindInRootfs bind-mounts src (clean, absolute) at m.Destination inside
// rootfs, with m's options (ro, nosuid, nodev, noexec; rbind: recursive).
func bindInRootfs(src, rootfs string, m *specs.Mount) error {
	fi, err := os.Stat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bind source %q does not exist: %w", src, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return fmt.Errorf("bind source %q: %v: %w", src, err, errdefs.ErrInvalidArgument)
	}
	target, err := openInRoot(rootfs, m.Destination, fi.IsDir())
	if err != nil {
		return err
	}
	defer target.Close()
	b := bindMode{ro: bindAttrs(m)&unix.MOUNT_ATTR_RDONLY != 0, recursive: hasOption(m, "rbind"), slave: receivesMounts(m)}
	err = attachTreeAt(src, int(target.Fd()), "", bindAttrs(m), b.recursive, b.propagation())
	if errors.Is(err, unix.ENOSYS) {
		// no mount API (Linux < 5.12): by the path the target resolved to
		var p string
		if p, err = os.Readlink(fmt.Sprintf("/proc/self/fd/%d", target.Fd())); err == nil {
			err = bindLegacy(src, p, b)
		}
	}
	if err != nil {
		return fmt.Errorf("bind %s on %s in the rootfs: %w", src, m.Destination, err)
	}
	return nil
}

// attachTreeAt binds src onto target with the mount API (Linux 5.12): a
// detached copy of src, with attr and propagation (unix.MS_PRIVATE,
// MS_SLAVE), moved to the file or directory open (O_PATH) at dirfd when path
// is "", else to path (relative to dirfd, e.g. unix.AT_FDCWD).
func attachTreeAt(src string, dirfd int, path string, attr uint64, recursive bool, propagation uint64) error {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, flags)
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: attr, Propagation: propagation}); err != nil {
		return fmt.Errorf("mount_setattr: %w", err)
	}
	mflags := unix.MOVE_MOUNT_F_EMPTY_PATH
	if path == "" {
		mflags |= unix.MOVE_MOUNT_T_EMPTY_PATH
	}
	if err := unix.MoveMount(fd, "", dirfd, path, mflags); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// openInRoot opens (O_PATH) dest resolved inside root, creating what is
// missing: the directories on the way, and dest itself as a directory
// (dir) or an empty file. Symlinks are followed inside root (an absolute
// one from root, ".." never above it); a dangling one is created where it
// points. dest names root itself (also through a symlink): refused.
func openInRoot(root, dest string, dir bool) (*os.File, error) {
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	defer unix.Close(rootFd)
	want := path.Clean("/" + dest)
	for range maxSymlinks {
		if want == "/" {
			return nil, fmt.Errorf("destination %q: the rootfs itself: %w", dest, errdefs.ErrInvalidArgument)
		}
		fd, err := openat2(rootFd, want, 0, unix.RESOLVE_IN_ROOT)
		if err == nil {
			if sameFile(fd, rootFd) {
				// a symlink to "/" (or "..", or "a/.."): the rootfs itself
				unix.Close(fd)
				return nil, fmt.Errorf("destination %q: the rootfs itself: %w", dest, errdefs.ErrInvalidArgument)
			}
			return os.NewFile(uintptr(fd), want), nil
		}
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("destination %q: %v: %w", dest, err, errdefs.ErrInvalidArgument)
		}
		if !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("destination %q: %w", dest, err)
		}
		next, err := createInRoot(rootFd, root, want, dir)
		if err != nil {
			return nil, fmt.Errorf("destination %q: %w", dest, err)
		}
		if next == "" {
			continue // created: open it
		}
		want = next // a dangling symlink: where it points
	}
	return nil, fmt.Errorf("destination %q: too many symlinks: %w", dest, errdefs.ErrInvalidArgument)
}

// sameFile reports whether two descriptors are the same inode.
func sameFile(a, b int) bool {
	var sa, sb unix.Stat_t
	return unix.Fstat(a, &sa) == nil && unix.Fstat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// openat2 opens p below dirfd with resolve flags (and O_PATH, O_CLOEXEC
// and extra open flags).
func openat2(dirfd int, p string, flags uint64, resolve uint64) (int, error) {
	if p = strings.TrimPrefix(p, "/"); p == "" {
		p = "."
	}
	return unix.Openat2(dirfd, p, &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_CLOEXEC | flags, Resolve: resolve | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// createInRoot creates the missing part of want (absolute, clean, within
// root): from its deepest existing directory, each missing directory, then
// the last component. A dangling symlink met on the way is not created
// over: its target, as a path within root, is returned instead (followed
// by what remained of want).
func createInRoot(rootFd int, root, want string, dir bool) (string, error) {
	parts := strings.Split(strings.TrimPrefix(want, "/"), "/")
	// the deepest directory that exists
	i := len(parts) - 1
	var cur int
	for ; i >= 0; i-- {
		fd, err := openat2(rootFd, "/"+strings.Join(parts[:i], "/"), unix.O_DIRECTORY, unix.RESOLVE_IN_ROOT)
		if err == nil {
			cur = fd
			break
		}
		if errors.Is(err, unix.ENOTDIR) {
			return "", fmt.Errorf("/%s: not a directory: %w", strings.Join(parts[:i], "/"), errdefs.ErrInvalidArgument)
		}
		if !errors.Is(err, unix.ENOENT) {
			return "", err
		}
	}
	if i < 0 {
		return "", errors.New("the rootfs is gone")
	}
	defer func() { unix.Close(cur) }()
	for j := i; j < len(parts); j++ {
		name, last := parts[j], j == len(parts)-1
		var err error
		if last && !dir {
			var fd int
			if fd, err = unix.Openat(cur, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644); err == nil {
				unix.Close(fd)
			}
		} else {
			err = unix.Mkdirat(cur, name, 0o755)
		}
		if errors.Is(err, unix.EEXIST) {
			// a dangling symlink (the lookup failed, the name exists)
			target, lerr := readlinkat(cur, name)
			if lerr != nil {
				return "", err
			}
			base, berr := pathInRoot(cur, root)
			if berr != nil {
				return "", berr
			}
			if !path.IsAbs(target) {
				target = path.Join(base, target)
			}
			return path.Clean("/" + path.Join(append([]string{target}, parts[j+1:]...)...)), nil
		}
		if err != nil {
			return "", fmt.Errorf("creating %s: %w", name, err)
		}
		if last {
			return "", nil
		}
		fd, err := openat2(cur, name, unix.O_DIRECTORY, unix.RESOLVE_BENEATH|unix.RESOLVE_NO_SYMLINKS)
		if err != nil {
			return "", err
		}
		unix.Close(cur)
		cur = fd
	}
	return "", nil
}

// readlinkat reads the symlink name in dirfd.
func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// pathInRoot is the path of the directory open at fd as seen from root
// ("/" for root itself).
func pathInRoot(fd int, root string) (string, error) {
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return "", err
	}
	r, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	rel, ok := within(filepath.Clean(r), filepath.Clean(p))
	if !ok {
		return "", fmt.Errorf("%s: resolved outside the rootfs (%s)", p, r)
	}
	return path.Clean("/" + filepath.ToSlash(rel)), nil
}
