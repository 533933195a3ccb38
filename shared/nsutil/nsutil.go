package nsutil

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// Kind is a namespace type, named as under /proc/<pid>/ns.
type Kind string

// Namespace kinds.
const (
	KindIPC    Kind = "ipc"
	KindUTS    Kind = "uts"
	KindNet    Kind = "net"
	KindPID    Kind = "pid"
	KindMount  Kind = "mnt"
	KindUser   Kind = "user"
	KindCgroup Kind = "cgroup"
	KindTime   Kind = "time"
)

var cloneFlags = map[Kind]int{
	KindIPC:    unix.CLONE_NEWIPC,
	KindUTS:    unix.CLONE_NEWUTS,
	KindNet:    unix.CLONE_NEWNET,
	KindPID:    unix.CLONE_NEWPID,
	KindMount:  unix.CLONE_NEWNS,
	KindUser:   unix.CLONE_NEWUSER,
	KindCgroup: unix.CLONE_NEWCGROUP,
	KindTime:   unix.CLONE_NEWTIME,
}

// allKinds lists every kind in a fixed order, for Release.
var allKinds = []Kind{KindIPC, KindUTS, KindNet, KindPID, KindMount, KindUser, KindCgroup, KindTime}

// hostNameMax is HOST_NAME_MAX.
const hostNameMax = 64

// testHookAfterMount, when set by tests, runs after each namespace is
// mounted in Create; an error makes Create fail there.
var testHookAfterMount func(Kind) error

// Create makes fresh namespaces of the given kinds and bind-mounts each at
// dir/<kind>, creating dir (0700) if needed. Only ipc, uts and net can be
// created (a new net namespace has loopback only, down); other kinds are
// refused with errdefs.ErrInvalidArgument. hostname, when
// not empty, is set in the new uts namespace (it is ignored when uts is not
// among kinds). An existing dir/<kind> is refused with errdefs.ErrAlreadyExists.
//
// On any failure everything Create did is undone (mounts, files, the
// directories it made) before it returns.
func Create(ctx context.Context, dir string, kinds []Kind, hostname string) (_ map[Kind]string, retErr error) {
	if len(kinds) == 0 {
		return nil, fmt.Errorf("no namespace kind given: %w", errdefs.ErrInvalidArgument)
	}
	flags := 0
	for i, k := range kinds {
		if k != KindIPC && k != KindUTS && k != KindNet {
			return nil, fmt.Errorf("namespace kind %q: only ipc, uts and net can be created and held: %w", k, errdefs.ErrInvalidArgument)
		}
		if slices.Contains(kinds[:i], k) {
			return nil, fmt.Errorf("namespace kind %q given twice: %w", k, errdefs.ErrInvalidArgument)
		}
		flags |= cloneFlags[k]
	}
	if !slices.Contains(kinds, KindUTS) {
		hostname = "" // only a new uts namespace gets one
	}
	if len(hostname) > hostNameMax {
		return nil, fmt.Errorf("hostname %q longer than %d bytes: %w", hostname, hostNameMax, errdefs.ErrInvalidArgument)
	}
	if dir == "" {
		return nil, fmt.Errorf("no directory for the namespace files: %w", errdefs.ErrInvalidArgument)
	}
	dir = filepath.Clean(dir)

	// Undo log, run backwards on failure.
	var undo []func()
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	if top := firstMissing(dir); top != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
		undo = append(undo, func() { removeUpTo(dir, top) })
	}
	held := make(map[Kind]string, len(kinds))
	for _, k := range kinds {
		p := filepath.Join(dir, string(k))
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDONLY|unix.O_CLOEXEC, 0o400)
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("namespace file %s: %w", p, errdefs.ErrAlreadyExists)
		}
		if err != nil {
			return nil, fmt.Errorf("namespace file: %w", err)
		}
		f.Close()
		undo = append(undo, func() { _ = os.Remove(p) })
		held[k] = p
	}

	type result struct {
		mounted []string
		err     error
	}
	done := make(chan result, 1)
	go func() {
		// This thread is about to leave the process's namespaces for good:
		// it is never unlocked, so the runtime ends it when the goroutine
		// returns instead of handing it to other goroutines.
		runtime.LockOSThread()
		var res result
		res.err = func() error {
			if err := unix.Unshare(flags); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			if hostname != "" {
				if err := unix.Sethostname([]byte(hostname)); err != nil {
					return fmt.Errorf("sethostname %q: %w", hostname, err)
				}
			}
			for _, k := range kinds {
				src := "/proc/thread-self/ns/" + string(k)
				if err := unix.Mount(src, held[k], "", unix.MS_BIND, ""); err != nil {
					return fmt.Errorf("bind-mount %s namespace on %s: %w", k, held[k], err)
				}
				res.mounted = append(res.mounted, held[k])
				if testHookAfterMount != nil {
					if err := testHookAfterMount(k); err != nil {
						return err
					}
				}
			}
			return nil
		}()
		done <- res
	}()
	res := <-done
	for _, p := range res.mounted {
		undo = append(undo, func() { unmountAll(p) })
	}
	if res.err != nil {
		return nil, res.err
	}
	log.G(ctx).WithField("dir", dir).Debugf("holding %d namespaces", len(kinds))
	return held, nil
}

// Release unmounts (MNT_DETACH) and removes every namespace file Create may
// have made in dir (dir/ipc, dir/uts, ...), then dir itself if it is empty.
// Files of other names are left alone. It is idempotent: a missing dir or
// file is fine.
func Release(dir string) error {
	if dir == "" {
		return fmt.Errorf("no directory: %w", errdefs.ErrInvalidArgument)
	}
	var errs []error
	for _, k := range allKinds {
		p := filepath.Join(dir, string(k))
		if err := unmountAll(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
		errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
	}
	return errors.Join(errs...)
}

// unmountAll detaches every mount stacked on p.
func unmountAll(p string) error {
	for i := 0; i < 16; i++ {
		err := unix.Unmount(p, unix.MNT_DETACH)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil // not (or no longer) a mount point
		default:
			return fmt.Errorf("unmount %s: %w", p, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 16 unmounts", p)
}

// firstMissing returns the shallowest ancestor of dir (or dir) that does not
// exist, "" when dir exists.
func firstMissing(dir string) string {
	missing := ""
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			return missing
		}
		missing = p
		if p == filepath.Dir(p) {
			return missing
		}
	}
}

// removeUpTo removes dir and its empty ancestors up to and including top.
func removeUpTo(dir, top string) {
	for p := dir; ; p = filepath.Dir(p) {
		if os.Remove(p) != nil || p == top || p == filepath.Dir(p) {
			return
		}
	}
}

// Do runs fn on a locked OS thread switched into the namespace of the given
// kind at path (setns), then switches the thread back. If switching back
// fails the thread is not unlocked, so the runtime discards it rather than
// run other goroutines in a foreign namespace. fn runs on a goroutine of its
// own; a panic in fn is re-raised in the caller.
//
// Mount and user namespaces are refused with errdefs.ErrInvalidArgument: the
// kernel does not let one thread of a multi-threaded process enter them. For
// pid and time namespaces only processes fn starts are inside.
func Do(path string, kind Kind, fn func() error) error {
	flag, ok := cloneFlags[kind]
	if !ok {
		return fmt.Errorf("namespace kind %q: unknown: %w", kind, errdefs.ErrInvalidArgument)
	}
	if kind == KindMount || kind == KindUser {
		return fmt.Errorf("namespace kind %q cannot be entered by one thread: %w", kind, errdefs.ErrInvalidArgument)
	}
	target, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("namespace %s: %w", path, errdefs.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("namespace %s: %w", path, err)
	}
	defer target.Close()

	type result struct {
		err      error
		panicked bool
		panicVal any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var res result
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			}
			done <- res
		}()
		orig, err := os.Open("/proc/thread-self/ns/" + string(kind))
		if err != nil {
			res.err = fmt.Errorf("open current %s namespace: %w", kind, err)
			restored = true
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), flag); err != nil {
			if errors.Is(err, unix.EINVAL) {
				err = fmt.Errorf("%w (not a %s namespace?): %w", err, kind, errdefs.ErrInvalidArgument)
			}
			res.err = fmt.Errorf("setns %s: %w", path, err)
			restored = true
			return
		}
		func() {
			defer func() {
				if v := recover(); v != nil {
					res.panicked, res.panicVal = true, v
				}
			}()
			res.err = fn()
		}()
		if err := unix.Setns(int(orig.Fd()), flag); err != nil {
			log.L.WithError(err).Errorf("cannot restore the %s namespace of a thread; discarding the thread", kind)
			return
		}
		restored = true
	}()
	res := <-done
	if res.panicked {
		panic(res.panicVal)
	}
	return res.err
}

// CheckNetNSPath checks a pod's netns_path from a request: "" (none) or
// a network namespace file. Anything else is InvalidArgument naming the
// field, also where the sandbox would not use it (a host-network pod, a
// pod without a network of its own).
func CheckNetNSPath(p string) error {
	if p == "" {
		return nil
	}
	if ok, err := IsNSFile(p, KindNet); err != nil || !ok {
		return fmt.Errorf("netns_path %q: not a network namespace (%v): %w", p, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// IsNSFile reports whether path is a namespace file (an nsfs inode: a
// /proc/<pid>/ns entry or a bind mount of one) of the given kind. A missing
// path is an error wrapping errdefs.ErrNotFound; an existing file of another
// filesystem is (false, nil).
func IsNSFile(path string, kind Kind) (bool, error) {
	flag, ok := cloneFlags[kind]
	if !ok {
		return false, fmt.Errorf("namespace kind %q: unknown: %w", kind, errdefs.ErrInvalidArgument)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, fmt.Errorf("%s: %w", path, errdefs.ErrNotFound)
		}
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return false, nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		return false, fmt.Errorf("NS_GET_NSTYPE %s: %w", path, err)
	}
	return t == flag, nil
}
