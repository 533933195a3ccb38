package cgroups

import (
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
)

// defaultSlice is the slice runc's systemd driver uses when the
// "slice:prefix:name" form leaves the slice empty.
const defaultSlice = "system.slice"

// ResolvePath turns an OCI linux.cgroupsPath into the path of the cgroup
// below the root of each hierarchy.
//
// A path starting with "/" is the cgroupfs form and must be clean (no "..",
// no "//", no trailing "/") and not the root itself. Anything else must be the
// systemd form "slice:prefix:name", converted the way systemd lays units out:
// the slice is expanded on its dashes ("a-b.slice" lives in
// "/a.slice/a-b.slice", "-.slice" is the root, "" means "system.slice"), and
// the unit is "prefix-name.scope" ("name.scope" without a prefix, or name
// itself when it already ends in ".slice"). Relative cgroupfs paths are
// refused rather than guessed at.
func ResolvePath(cgroupsPath string) (string, error) {
	if cgroupsPath == "" {
		return "", fmt.Errorf("empty cgroups path: %w", errdefs.ErrInvalidArgument)
	}
	if strings.HasPrefix(cgroupsPath, "/") {
		if cgroupsPath == "/" {
			return "", fmt.Errorf("cgroups path %q is the root cgroup: %w", cgroupsPath, errdefs.ErrInvalidArgument)
		}
		if path.Clean(cgroupsPath) != cgroupsPath {
			return "", fmt.Errorf("cgroups path %q is not clean: %w", cgroupsPath, errdefs.ErrInvalidArgument)
		}
		if strings.ContainsRune(cgroupsPath, 0) {
			return "", fmt.Errorf("cgroups path %q contains NUL: %w", cgroupsPath, errdefs.ErrInvalidArgument)
		}
		return cgroupsPath, nil
	}
	parts := strings.Split(cgroupsPath, ":")
	if len(parts) != 3 {
		return "", fmt.Errorf("cgroups path %q is neither absolute nor slice:prefix:name: %w", cgroupsPath, errdefs.ErrInvalidArgument)
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = defaultSlice
	}
	if name == "" {
		return "", fmt.Errorf("cgroups path %q has no unit name: %w", cgroupsPath, errdefs.ErrInvalidArgument)
	}
	for _, p := range []string{slice, prefix, name} {
		if strings.ContainsAny(p, "/\x00") || p == "." || p == ".." {
			return "", fmt.Errorf("cgroups path %q: invalid component %q: %w", cgroupsPath, p, errdefs.ErrInvalidArgument)
		}
	}
	dir, err := expandSlice(slice)
	if err != nil {
		return "", fmt.Errorf("cgroups path %q: %w", cgroupsPath, err)
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") {
		if prefix != "" {
			unit = prefix + "-" + name
		}
		unit += ".scope"
	}
	return path.Join("/", dir, unit), nil
}

// expandSlice returns the directory systemd uses for a slice unit:
// "a-b-c.slice" is "/a.slice/a-b.slice/a-b-c.slice", "-.slice" is "/".
func expandSlice(slice string) (string, error) {
	const suffix = ".slice"
	if !strings.HasSuffix(slice, suffix) || len(slice) == len(suffix) {
		return "", fmt.Errorf("invalid slice name %q: %w", slice, errdefs.ErrInvalidArgument)
	}
	if slice == "-"+suffix {
		return "/", nil
	}
	base := strings.TrimSuffix(slice, suffix)
	var (
		b      strings.Builder
		prefix string
	)
	for _, comp := range strings.Split(base, "-") {
		if comp == "" {
			return "", fmt.Errorf("invalid slice name %q: empty component: %w", slice, errdefs.ErrInvalidArgument)
		}
		prefix += comp
		b.WriteString("/" + prefix + suffix)
		prefix += "-"
	}
	return b.String(), nil
}

// splitPath returns the components of a clean absolute path.
func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}
