package nsutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// Kind is a namespace type as named under /proc/<pid>/ns.
type Kind string

var cloneFlags = map[Kind]int{
	"ipc": unix.CLONE_NEWIPC, "uts": unix.CLONE_NEWUTS, "net": unix.CLONE_NEWNET,
	"pid": unix.CLONE_NEWPID, "mnt": unix.CLONE_NEWNS, "cgroup": unix.CLONE_NEWCGROUP,
	"user": unix.CLONE_NEWUSER,
}

// Create makes fresh namespaces of the given kinds (ipc and uts) and
// bind-mounts each at dir/<kind>. hostname is set in a new uts namespace
// when not empty. On failure everything done is undone.
func Create(ctx context.Context, dir string, kinds []Kind, hostname string) (_ map[Kind]string, retErr error) {
	flags := 0
	for _, k := range kinds {
		if k != "ipc" && k != "uts" {
			return nil, fmt.Errorf("namespace kind %q: only ipc and uts can be held: %w", k, errdefs.ErrInvalidArgument)
		}
		flags |= cloneFlags[k]
	}
	if len(kinds) == 0 {
		return map[Kind]string{}, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	held := map[Kind]string{}
	defer func() {
		if retErr != nil {
			_ = Release(dir)
		}
	}()
	for _, k := range kinds {
		p := filepath.Join(dir, string(k))
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o400)
		if err != nil {
			return nil, fmt.Errorf("namespace file: %w", err)
		}
		f.Close()
		held[k] = p
	}
	errc := make(chan error, 1)
	go func() {
		// This thread ends up in foreign namespaces: never unlock it, so the
		// runtime terminates it when the goroutine returns.
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(flags); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			if hostname != "" && flags&unix.CLONE_NEWUTS != 0 {
				if err := unix.Sethostname([]byte(hostname)); err != nil {
					return fmt.Errorf("sethostname %q: %w", hostname, err)
				}
			}
			tid := unix.Gettid()
			for k, p := range held {
				src := fmt.Sprintf("/proc/self/task/%d/ns/%s", tid, k)
				if err := unix.Mount(src, p, "", unix.MS_BIND, ""); err != nil {
					return fmt.Errorf("bind-mount %s namespace: %w", k, err)
				}
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	log.G(ctx).WithField("dir", dir).Debug("namespaces held")
	return held, nil
}

// Release unmounts and removes every namespace file in dir, then dir if it
// is empty. Idempotent.
func Release(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var errs []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		for {
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
				if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Sprintf("unmount %s: %v", p, err))
				}
				break
			}
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err.Error())
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// Do runs fn on a locked OS thread that has joined the namespace at path.
// The thread is restored afterwards; if restoring fails it is left locked so
// that the runtime discards it.
func Do(path string, kind Kind, fn func() error) error {
	flag, ok := cloneFlags[kind]
	if !ok {
		return fmt.Errorf("namespace kind %q: unknown: %w", kind, errdefs.ErrInvalidArgument)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/%s", unix.Gettid(), kind))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("namespace %s: %w", path, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), flag); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), flag); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// IsNSFile reports whether path is a namespace file of the given kind.
func IsNSFile(path string, kind Kind) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, err
	}
	if st.Type != unix.NSFS_MAGIC {
		return false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		return false, err
	}
	return t == cloneFlags[kind], nil
}

// sysctlClass says which namespace a sysctl belongs to.
func sysctlClass(key string) (Kind, bool) {
	switch {
	case strings.HasPrefix(key, "net."):
		return "net", true
	case strings.HasPrefix(key, "kernel.shm"), strings.HasPrefix(key, "kernel.msg"), key == "kernel.sem", strings.HasPrefix(key, "fs.mqueue."):
		return "ipc", true
	}
	return "", false
}

// ApplySysctls writes namespaced sysctls: net.* into the network namespace at
// netnsPath, IPC ones into ipcPath. Every key is checked before any is written.
func ApplySysctls(netnsPath, ipcPath string, sysctls map[string]string) error {
	type item struct{ key, file, value string }
	byKind := map[Kind][]item{}
	keys := make([]string, 0, len(sysctls))
	for k := range sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := sysctls[k]
		key := strings.ReplaceAll(k, "/", ".")
		if key == "" || strings.Contains(key, "..") || strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") {
			return fmt.Errorf("sysctl %q: malformed key: %w", k, errdefs.ErrInvalidArgument)
		}
		for _, r := range key {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
				return fmt.Errorf("sysctl %q: character %q not allowed: %w", k, r, errdefs.ErrInvalidArgument)
			}
		}
		if strings.ContainsAny(v, "\n\x00") {
			return fmt.Errorf("sysctl %q: value must be one line: %w", k, errdefs.ErrInvalidArgument)
		}
		kind, ok := sysctlClass(key)
		if !ok {
			return fmt.Errorf("sysctl %q: not namespaced, a pod cannot set it: %w", k, errdefs.ErrInvalidArgument)
		}
		switch {
		case kind == "net" && netnsPath == "":
			return fmt.Errorf("sysctl %q: the pod has no network namespace of its own: %w", k, errdefs.ErrInvalidArgument)
		case kind == "ipc" && ipcPath == "":
			return fmt.Errorf("sysctl %q: the pod has no IPC namespace of its own: %w", k, errdefs.ErrInvalidArgument)
		}
		byKind[kind] = append(byKind[kind], item{k, "/proc/sys/" + strings.ReplaceAll(key, ".", "/"), v})
	}
	for kind, items := range byKind {
		path := netnsPath
		if kind == "ipc" {
			path = ipcPath
		}
		err := Do(path, kind, func() error {
			for _, it := range items {
				if err := os.WriteFile(it.file, []byte(it.value), 0); err != nil {
					return fmt.Errorf("sysctl %q: %w", it.key, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
