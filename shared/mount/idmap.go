package mount

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// idmapOptions takes the uidmap= and gidmap= options containerd's overlay
// snapshotter adds for a container in a pod with its own user namespace
// (its "remap-ids" capability) out of opts.
func idmapOptions(opts []string) (rest []string, uidmap, gidmap string) {
	for _, o := range opts {
		switch {
		case strings.HasPrefix(o, "uidmap="):
			uidmap = strings.TrimPrefix(o, "uidmap=")
		case strings.HasPrefix(o, "gidmap="):
			gidmap = strings.TrimPrefix(o, "gidmap=")
		default:
			rest = append(rest, o)
		}
	}
	return rest, uidmap, gidmap
}

// parseIDMap parses containerd's mapping label form, "ctr:host:size"
// entries separated by commas.
func parseIDMap(field, s string) ([]syscall.SysProcIDMap, error) {
	var out []syscall.SysProcIDMap
	for _, e := range strings.Split(s, ",") {
		parts := strings.Split(e, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("%s %q: want ctr:host:size[,...]: %w", field, s, errdefs.ErrInvalidArgument)
		}
		var v [3]int
		for i, p := range parts {
			n, err := strconv.ParseUint(p, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%s %q: %w", field, s, errdefs.ErrInvalidArgument)
			}
			v[i] = int(n)
		}
		if v[2] == 0 {
			return nil, fmt.Errorf("%s %q: an empty range: %w", field, s, errdefs.ErrInvalidArgument)
		}
		out = append(out, syscall.SysProcIDMap{ContainerID: v[0], HostID: v[1], Size: v[2]})
	}
	return out, nil
}

// usernsFD returns a user namespace with the mappings, for idmapped
// mounts: the namespace of a child made with them that is stopped before it
// runs anything (traced at its exec) and killed once the namespace is open.
func usernsFD(uidmap, gidmap []syscall.SysProcIDMap) (*os.File, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// ptrace requests (and the tracee's stop) belong to one thread
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command(self)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: uidmap, GidMappings: gidmap,
		GidMappingsEnableSetgroups: false, Ptrace: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("user namespace for idmapped mounts: %w", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid))
	if err != nil {
		return nil, fmt.Errorf("user namespace for idmapped mounts: %w", err)
	}
	return f, nil
}

// mountIDMappedOverlay mounts an overlay whose lower layers are seen through
// the user namespace of uidmap/gidmap: each lowerdir is cloned, idmapped
// and attached below a private temporary directory that the overlay then
// uses, and detached again once the overlay holds it. The upper and work
// directories are the snapshotter's, already owned by the mapped root.
func mountIDMappedOverlay(src, dst string, opts []string, uidmap, gidmap string) (retErr error) {
	if uidmap == "" || gidmap == "" {
		return fmt.Errorf("overlay on %s: uidmap and gidmap come together: %w", dst, errdefs.ErrInvalidArgument)
	}
	uids, err := parseIDMap("uidmap", uidmap)
	if err != nil {
		return err
	}
	gids, err := parseIDMap("gidmap", gidmap)
	if err != nil {
		return err
	}
	userns, err := usernsFD(uids, gids)
	if err != nil {
		return err
	}
	defer userns.Close()
	tmp, err := os.MkdirTemp("", "magnetar-idmap")
	if err != nil {
		return err
	}
	var attached []string
	defer func() {
		// the overlay keeps what it uses: the temporary mounts can go
		for _, p := range attached {
			_ = unix.Unmount(p, unix.MNT_DETACH)
		}
		_ = os.RemoveAll(tmp)
	}()
	flags, data := ParseOptions(opts)
	var out []string
	for _, o := range strings.Split(data, ",") {
		lower, ok := strings.CutPrefix(o, "lowerdir=")
		if !ok {
			out = append(out, o)
			continue
		}
		var mapped []string
		for i, l := range strings.Split(lower, ":") {
			p := filepath.Join(tmp, strconv.Itoa(len(attached)))
			if err := os.Mkdir(p, 0o700); err != nil {
				return err
			}
			if err := idmapAt(l, p, int(userns.Fd())); err != nil {
				return fmt.Errorf("overlay on %s: lowerdir %d (%s): %w", dst, i, l, err)
			}
			attached = append(attached, p)
			mapped = append(mapped, p)
		}
		out = append(out, "lowerdir="+strings.Join(mapped, ":"))
	}
	if err := unix.Mount(src, dst, "overlay", flags&^unix.MS_REMOUNT, strings.Join(out, ",")); err != nil {
		return fmt.Errorf("mount idmapped overlay on %s: %w", dst, err)
	}
	return nil
}

// idmapAt attaches an idmapped clone of dir at target.
func idmapAt(dir, target string, userns int) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(fd)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns)}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
		return fmt.Errorf("mount_setattr idmap: %w", err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}
