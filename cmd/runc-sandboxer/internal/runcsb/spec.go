package runcsb

import (
	"fmt"
	"math"
	"regexp"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/shared/podfiles"
)

// nsPathRE matches the /proc/<pid>/ns/<kind> paths containerd's CRI derives
// from the sandbox pid that Controller.Start returned.
var nsPathRE = regexp.MustCompile(`^/proc/([0-9]+)/ns/([a-z]+)$`)

// isSandboxPid tells whether pid is the sandbox pid containerd derived a
// namespace path from: the one Start reported, or 0 (containerd 2.4 turns
// it into 4294967295 on the way) when the pod has no process.
func isSandboxPid(pid uint64, sandboxPid int) bool {
	return pid == uint64(sandboxPid) || pid == 0 || pid == math.MaxUint32
}

// rewriteSpec makes a container spec join its pod: namespaces, the pod's
// files and /dev/shm. sandboxPid is the pid the pod reported at Start.
func rewriteSpec(sp *specs.Spec, st *podState, sandboxPid int) error {
	if sp.Linux == nil {
		sp.Linux = &specs.Linux{}
	}
	var out []specs.LinuxNamespace
	// a container's mounts stay in a mount namespace of its own: without
	// one runc would make them in the host's
	mnt := false
	for _, ns := range sp.Linux.Namespaces {
		if ns.Type == specs.MountNamespace {
			if ns.Path != "" {
				return fmt.Errorf("linux.namespaces: mount namespace %q: a container cannot join another mount namespace: %w", ns.Path, errdefs.ErrInvalidArgument)
			}
			mnt = true
		}
	}
	if !mnt {
		sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: specs.MountNamespace})
	}
	for _, ns := range sp.Linux.Namespaces {
		m := nsPathRE.FindStringSubmatch(ns.Path)
		if m == nil {
			out = append(out, ns)
			continue
		}
		if pid, _ := strconv.ParseUint(m[1], 10, 32); !isSandboxPid(pid, sandboxPid) {
			out = append(out, ns) // e.g. a target container's pid namespace
			continue
		}
		switch ns.Type {
		case specs.NetworkNamespace:
			if st.HostNetwork || st.NetNS == "" {
				continue
			}
			ns.Path = st.NetNS
		case specs.IPCNamespace:
			if st.IPC == "" && !st.LateNS {
				continue
			}
			ns.Path = st.IPC // "" in a late pod: its first container makes it
		case specs.UTSNamespace:
			if st.UTS == "" && !st.LateNS {
				continue
			}
			ns.Path = st.UTS
		case specs.UserNamespace:
			if st.UserNS == "" {
				return fmt.Errorf("linux.namespaces: the pod has no user namespace of its own (its userns_options), a container cannot join one: %w", errdefs.ErrInvalidArgument)
			}
			ns.Path = st.UserNS
		case specs.PIDNamespace:
			switch {
			case st.HostPID:
				continue
			case st.SharedPID && st.InitPid > 0:
				ns.Path = fmt.Sprintf("/proc/%d/ns/pid", st.InitPid)
			default:
				ns.Path = "" // a pid namespace of its own
			}
		default:
			return fmt.Errorf("linux.namespaces: joining the pod's %s namespace is not supported: %w", ns.Type, errdefs.ErrNotImplemented)
		}
		out = append(out, ns)
	}
	sp.Linux.Namespaces = out
	if st.HostNetwork {
		// with the host's uts namespace a container may not set a hostname
		sp.Hostname = ""
	} else if sp.Hostname == "" {
		sp.Hostname = st.Hostname
	}

	shm := st.Shm
	if st.IPC == "" {
		shm = "/dev/shm"
	}
	podfiles.Mount(sp, st.Dir, shm)
	return nil
}
