package runcbe

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

var nsPathRE = regexp.MustCompile(`^/proc/([0-9]+)/ns/[a-z]+$`)

// within reports whether p is root or inside it: root is clean and
// absolute, p must be too ("root/../x" is not inside, nor "root//x").
func within(root, p string) bool {
	return filepath.Clean(p) == p && (p == root || strings.HasPrefix(p, root+"/"))
}

// inShare tells whether p lies inside the share by its clean name and,
// when it exists, once its symlinks are followed (a link on the share
// pointing out of it is out); it returns the path it judged.
func inShare(share, p string) (string, bool) {
	p = filepath.Clean(p)
	if !within(share, p) {
		return p, false
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		// nothing there (runc fails on it): judged by its name
		return p, errors.Is(err, fs.ErrNotExist)
	}
	return real, within(inShareRoot(share), real)
}

// inShareRoot is the share with its own symlinks followed.
func inShareRoot(share string) string {
	if r, err := filepath.EvalSymlinks(share); err == nil {
		return r
	}
	return share
}

// RewriteSpec adapts a host-made spec to the guest. shareRoot confines bind
// sources; isContainerPid says whether a pid is the init of one of our
// containers (a namespace path of such a pid — CRI's target pid namespace
// for an ephemeral container — is kept). podPID, when set, gives the path of
// the pod's shared PID namespace in the guest: a container that joins the
// pod's PID namespace on the host (CRI's namespace_options.pid = POD) joins
// that one, so that the pod's containers see each other but not the agent,
// and an orphan of a container stays in the pod. Without it (nil) such a
// container gets a PID namespace of its own.
func RewriteSpec(sp *specs.Spec, id, shareRoot string, isContainerPid func(int) bool, podPID func() (string, error)) error {
	if sp.Linux == nil {
		sp.Linux = &specs.Linux{}
	}
	var nss []specs.LinuxNamespace
	for _, ns := range sp.Linux.Namespaces {
		if ns.Path == "" {
			if ns.Type == specs.NetworkNamespace {
				continue // the VM's network namespace is the pod's
			}
			nss = append(nss, ns)
			continue
		}
		m := nsPathRE.FindStringSubmatch(ns.Path)
		if m != nil {
			if pid, err := strconv.Atoi(m[1]); err == nil && pid > 1 && isContainerPid != nil && isContainerPid(pid) {
				nss = append(nss, ns)
				continue
			}
		}
		switch ns.Type {
		case specs.PIDNamespace:
			ns.Path = ""
			if podPID != nil {
				p, err := podPID()
				if err != nil {
					return fmt.Errorf("the pod's PID namespace: %w", err)
				}
				ns.Path = p
			}
			nss = append(nss, ns)
		case specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace:
			// the pod's namespace on the host: in the guest the VM's own is the pod's
			continue
		default:
			return fmt.Errorf("linux.namespaces: %s namespace path %q cannot be joined inside the VM: %w", ns.Type, ns.Path, errdefs.ErrInvalidArgument)
		}
	}
	// a cgroup namespace of its own, as containerd gives a container on a
	// cgroup v2 host: the guest is cgroup v2 whatever the host is, and
	// without one the container saw the guest's root cgroup at
	// /sys/fs/cgroup instead of its own (its limits: memory.max, cpu.max)
	if !slices.ContainsFunc(nss, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.CgroupNamespace }) {
		nss = append(nss, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	sp.Linux.Namespaces = nss
	sp.Linux.CgroupsPath = "/magnetar/" + id
	sp.Linux.MountLabel = ""
	if sp.Process != nil {
		sp.Process.ApparmorProfile = ""
		sp.Process.SelinuxLabel = ""
	}
	sp.Hooks = nil
	for i, m := range sp.Mounts {
		bind := m.Type == "bind"
		for _, o := range m.Options {
			if o == "bind" || o == "rbind" {
				bind = true
			}
		}
		if !bind {
			continue
		}
		src := m.Source
		if !filepath.IsAbs(src) || filepath.Clean(src) != src {
			return fmt.Errorf("mounts[%d] (%s): source %q must be an absolute, clean path: %w", i, m.Destination, src, errdefs.ErrInvalidArgument)
		}
		if !within(shareRoot, src) && src != "/dev/shm" {
			return fmt.Errorf("mounts[%d] (%s): bind source %q is outside the share %s (the host must put it there): %w", i, m.Destination, src, shareRoot, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
