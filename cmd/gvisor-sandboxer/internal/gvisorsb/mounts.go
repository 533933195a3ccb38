package gvisorsb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/shared/mount"
)

// What runsc does not do of a container's spec as runc does, the sandboxer
// does with mounts runsc does serve: the sentry (the pod's kernel) has its
// own mount table, and each bind mount of the spec is one mount in it,
// served by the container's gofer from the host.

// errSentryFS: a path in a file system of the sentry's own (/proc, /sys,
// a tmpfs), which no bind mount can reach.
var errSentryFS = errors.New("in a file system of the sandbox's kernel")

// visible is the index of the mount of sp that holds container path p: the
// last one whose destination is p or one of its parents (a later mount
// over a parent hides an earlier one below it); -1 for the rootfs.
func visible(sp *specs.Spec, p string) int {
	at := -1
	for i, m := range sp.Mounts {
		d := filepath.Clean(m.Destination)
		if d == p || d == "/" || strings.HasPrefix(p, d+"/") {
			at = i
		}
	}
	return at
}

// hostOf is the host path of container path p and the index of the mount
// that holds it (-1: the rootfs); errSentryFS when that mount is not a bind
// mount.
func hostOf(sp *specs.Spec, p string) (string, int, error) {
	i := visible(sp, p)
	if i < 0 {
		return filepath.Join(sp.Root.Path, p), i, nil
	}
	m := sp.Mounts[i]
	if !mount.IsBind(&m) {
		return "", i, fmt.Errorf("%s (%s on %s): %w", p, m.Type, m.Destination, errSentryFS)
	}
	rel := strings.TrimPrefix(p, filepath.Clean(m.Destination))
	return filepath.Join(m.Source, rel), i, nil
}

// maxLinks bounds the symbolic links followed resolving a path (Linux's
// MAXSYMLINKS).
const maxLinks = 40

// resolve resolves container path p as the container would see it: its
// symbolic links (in the image or in a volume) followed, none leaving the
// container's root. The result names no link; os.ErrNotExist when some
// component is missing.
func resolve(sp *specs.Spec, p string) (string, error) {
	todo := strings.Split(filepath.Join("/", p), "/")
	cur, links := "/", 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		host, i, err := hostOf(sp, next)
		if errors.Is(err, errSentryFS) {
			// the sentry's (a tmpfs, proc): not to be read here; a
			// bind mount below it may still hold the path
			cur = next
			continue
		}
		if err != nil {
			return "", err
		}
		if i >= 0 && filepath.Clean(sp.Mounts[i].Destination) == next {
			// a mountpoint: whatever its source is on the host, the
			// container sees the mount there
			if _, err := os.Stat(host); err != nil {
				return "", err
			}
			cur = next
			continue
		}
		fi, err := os.Lstat(host)
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: %w", p, syscall.ELOOP)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return cur, nil
}

// readonlyPaths does what runsc ignores of the spec: linux.readonlyPaths
// (CRI's readonly_paths; runsc reads neither them nor the masked paths).
// As runc bind-mounts each path on itself read-only, each becomes a
// read-only bind mount of its host path (in the rootfs or in a volume)
// over itself, before the mounts below it, or, for a path that is a
// mountpoint already, that mount made read-only. A missing path is
// skipped, as runc does; so is a path in a file system of the sentry's
// own (the default readonly paths are in /proc): it is returned.
func readonlyPaths(sp *specs.Spec) (skipped []string, err error) {
	if sp.Linux == nil || sp.Root == nil {
		return nil, nil
	}
	for _, p := range sp.Linux.ReadonlyPaths {
		r, err := resolve(sp, p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			return skipped, fmt.Errorf("bundle config.json: linux.readonlyPaths %q: %w: %w", p, err, errdefs.ErrInvalidArgument)
		}
		if r == "/" {
			sp.Root.Readonly = true
			continue
		}
		host, i, err := hostOf(sp, r)
		if err != nil {
			skipped = append(skipped, p) // errSentryFS
			continue
		}
		if i >= 0 && filepath.Clean(sp.Mounts[i].Destination) == r {
			sp.Mounts[i].Options = append(slices.DeleteFunc(slices.Clone(sp.Mounts[i].Options), func(o string) bool { return o == "rw" || o == "ro" }), "ro")
			continue
		}
		at := len(sp.Mounts)
		for j := i + 1; j < len(sp.Mounts); j++ {
			if d := filepath.Clean(sp.Mounts[j].Destination); d == r || strings.HasPrefix(d, r+"/") {
				at = j
				break
			}
		}
		sp.Mounts = slices.Insert(sp.Mounts, at, specs.Mount{Destination: r, Type: "bind", Source: host, Options: []string{"rbind", "rprivate", "ro"}})
	}
	return skipped, nil
}
