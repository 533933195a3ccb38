package gvisorsb

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/shared/podfiles"
	"github.com/magnetar-runtime/magnetar/shared/podinit"
)

// The CRI annotations runsc reads to put a container into an existing
// sandbox (runsc/specutils/cri.go): the root container is of type
// "sandbox" (its id is the sandbox's), every other one of type "container"
// and names the sandbox. containerd's CRI sets them on every container;
// the sandboxer sets them on the pod's root container and checks them on
// the others.
const (
	annContainerType = "io.kubernetes.cri.container-type"
	annSandboxID     = "io.kubernetes.cri.sandbox-id"
	// annContainerName is the CRI container name, runsc's name of it
	annContainerName = "io.kubernetes.cri.container-name"
	typeSandbox      = "sandbox"
	typeContainer    = "container"
)

// hintPrefix starts runsc's pod mount hints: dev.gvisor.spec.mount.<name>.<field>.
// runsc reads them from the root container's spec when the sandbox starts
// (the sandbox's hints) and from every container's spec (its gofer's):
// every container of the pod carries the same set.
const hintPrefix = "dev.gvisor.spec.mount."

// shmHint names the hint of the pod's /dev/shm: a tmpfs inside the
// sandbox, one for all the pod's containers (share=pod). Its source is
// <pod dir>/shm, an empty host directory that only matches the mounts.
const shmHint = "magnetar-shm"

// hintFields are the fields of a mount hint and what each accepts (runsc's
// boot/mount_hints.go); nil: any value.
var hintFields = map[string][]string{
	"source":   nil,
	"type":     {"bind", "tmpfs"},
	"share":    {"container", "pod", "shared"},
	"options":  nil,
	"directfs": {"default", "off"},
}

// podHints checks the pod's own mount hints (the dev.gvisor.spec.mount.*
// annotations of its CRI config, as Kubernetes pod annotations give them)
// and returns them with the sandboxer's /dev/shm hint added.
func podHints(ann map[string]string, shm string) (map[string]string, error) {
	out := map[string]string{}
	names := map[string]map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(ann)) {
		rest, ok := strings.CutPrefix(k, hintPrefix)
		if !ok {
			continue
		}
		name, field, ok := strings.Cut(rest, ".")
		bad := func(why string) error {
			return fmt.Errorf("options.annotations[%q] = %q: %s: %w", k, ann[k], why, errdefs.ErrInvalidArgument)
		}
		switch {
		case !ok || name == "" || strings.Contains(field, "."):
			return nil, bad("want " + hintPrefix + "<name>.<field>")
		case name == shmHint:
			return nil, bad("the mount name " + shmHint + " is the sandboxer's own (the pod's /dev/shm)")
		}
		allowed, known := hintFields[field]
		switch {
		case !known:
			return nil, bad("unknown field (want source, type, share, options or directfs)")
		case allowed != nil && !slices.Contains(allowed, ann[k]):
			return nil, bad("want one of " + strings.Join(allowed, ", "))
		case field == "source" && !filepath.IsAbs(ann[k]):
			return nil, bad("the source must be an absolute host path")
		}
		if names[name] == nil {
			names[name] = map[string]string{}
		}
		names[name][field] = ann[k]
		out[k] = ann[k]
	}
	sources := map[string]string{}
	for name, f := range names {
		for _, req := range []string{"source", "type", "share"} {
			if f[req] == "" {
				return nil, fmt.Errorf("options.annotations: mount hint %q has no %s%s.%s (runsc would ignore it): %w", name, hintPrefix, name, req, errdefs.ErrInvalidArgument)
			}
		}
		if f["type"] == "bind" && f["share"] == "pod" {
			// runsc (boot/mount_hints.go ShouldShareMount) shares only
			// tmpfs mounts inside the sandbox; a sandbox-local bind mount
			// gets an overlay backed by a file in its source per
			// container, and the second container's start fails
			return nil, fmt.Errorf("options.annotations: mount hint %q: type bind with share pod: runsc shares only tmpfs volumes between a pod's containers (use type tmpfs, or share container for one container, or shared for a volume the host sees): %w", name, errdefs.ErrInvalidArgument)
		}
		if other, dup := sources[f["source"]]; dup || f["source"] == shm {
			return nil, fmt.Errorf("options.annotations: mount hints %q and %q have the same source %q: %w", name, other, f["source"], errdefs.ErrInvalidArgument)
		}
		sources[f["source"]] = name
	}
	out[hintPrefix+shmHint+".source"] = shm
	out[hintPrefix+shmHint+".type"] = "tmpfs"
	out[hintPrefix+shmHint+".share"] = "pod"
	return out, nil
}

// pauseBinary is where the pause runs from in its rootfs.
const pauseBinary = "/pause"

// rootSpec is the spec of a pod's root container: the pause (the
// magnetar-podinit binary, or this sandboxer re-executed as it: it reaps
// and waits for SIGTERM) from the read-only rootfs the sandboxer provides,
// in the pod's network namespace (runsc takes its interfaces), in the pod's
// cgroup, with the pod's hostname, sysctls, resources and mount hints.
func rootSpec(id string, st *podState, rootfs string, cfg *runtime.PodSandboxConfig) *specs.Spec {
	ann := map[string]string{annContainerType: typeSandbox, annSandboxID: id}
	maps.Copy(ann, st.Hints)
	ns := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace}}
	if !st.HostNetwork {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: st.NetNS})
	}
	sp := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: append([]string{pauseBinary}, podinit.Args(id)...),
			Env:  []string{"PATH=/"},
			Cwd:  "/",
			// the pause needs no privilege (as the pause image's 65535)
			User:            specs.User{UID: 65535, GID: 65535},
			Capabilities:    &specs.LinuxCapabilities{},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: rootfs, Readonly: true},
		Hostname: st.Hostname,
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		},
		Annotations: ann,
		Linux: &specs.Linux{
			Namespaces:  ns,
			CgroupsPath: st.Cgroup,
			Sysctl:      cfg.GetLinux().GetSysctls(),
			Resources:   podResources(cfg),
		},
	}
	if st.HostNetwork {
		sp.Hostname = ""
	}
	return sp
}

// podResources are the pod's CRI resources (its containers' limits plus
// its overhead) for the sandbox's cgroup, which runsc also takes as the
// sandbox's memory size; nil when the pod sets none.
func podResources(cfg *runtime.PodSandboxConfig) *specs.LinuxResources {
	res, over := cfg.GetLinux().GetResources(), cfg.GetLinux().GetOverhead()
	var r specs.LinuxResources
	set := false
	if m := res.GetMemoryLimitInBytes() + over.GetMemoryLimitInBytes(); m > 0 {
		r.Memory, set = &specs.LinuxMemory{Limit: &m}, true
	}
	if q, p := res.GetCpuQuota()+over.GetCpuQuota(), res.GetCpuPeriod(); q > 0 && p > 0 {
		per := uint64(p)
		r.CPU, set = &specs.LinuxCPU{Quota: &q, Period: &per}, true
	}
	if !set {
		return nil
	}
	return &r
}

// rewriteSpec makes the spec of an application container join its pod's
// sandbox: runsc's CRI annotations and the pod's mount hints, the pod's
// /etc/hostname, /etc/hosts and /etc/resolv.conf, and /dev/shm on the
// pod's shared tmpfs (its hint). Namespaces stay as containerd derived
// them from the sandbox pid: runsc runs every container in the sandbox's
// own (one network stack, UTS and IPC; a PID namespace per container, or
// one shared by the containers whose spec names the same path).
func rewriteSpec(sp *specs.Spec, podID string, st *podState) error {
	if t := sp.Annotations[annContainerType]; t != "" && t != typeContainer {
		return fmt.Errorf("bundle config.json: annotation %s = %q: a container of pod %s must be of type %q: %w", annContainerType, t, podID, typeContainer, errdefs.ErrInvalidArgument)
	}
	if err := checkPropagation(sp); err != nil {
		return err
	}
	if sp.Annotations == nil {
		sp.Annotations = map[string]string{}
	}
	sp.Annotations[annContainerType] = typeContainer
	sp.Annotations[annSandboxID] = podID
	for k := range sp.Annotations {
		if strings.HasPrefix(k, hintPrefix) {
			delete(sp.Annotations, k) // only the pod's, as the sandbox has them
		}
	}
	maps.Copy(sp.Annotations, st.Hints)
	if sp.Linux == nil {
		sp.Linux = &specs.Linux{}
	}
	if st.HostNetwork {
		sp.Hostname = ""
	} else if sp.Hostname == "" {
		sp.Hostname = st.Hostname
	}
	podfiles.Mount(sp, st.Dir, st.Shm)
	return nil
}

// checkPropagation refuses shared (Kubernetes' Bidirectional) mount
// propagation, which a gVisor container cannot have: what it mounts, it
// mounts in the sentry's mount table, never the host's, and runsc refuses
// a shared root (containerd makes the root rshared for a Bidirectional
// volume) with a message about its own spec check. FailedPrecondition, as
// runsc's: a task Create answered NotImplemented makes containerd retry it
// on the task v2 API, and the message is lost.
func checkPropagation(sp *specs.Spec) error {
	refuse := func(what string) error {
		return fmt.Errorf("bundle config.json: %s: shared (Bidirectional) mount propagation: mounts made in a gVisor sandbox are its kernel's, they cannot propagate to the host (use HostToContainer or None): %w", what, errdefs.ErrFailedPrecondition)
	}
	if sp.Linux != nil {
		if p := sp.Linux.RootfsPropagation; p == "shared" || p == "rshared" {
			return refuse("linux.rootfsPropagation " + p)
		}
	}
	for _, m := range sp.Mounts {
		if slices.Contains(m.Options, "shared") || slices.Contains(m.Options, "rshared") {
			return refuse("mount " + m.Destination)
		}
	}
	return nil
}

// hintNames lists the names of the mount hints in ann, sorted (for
// Describe).
func hintNames(ann map[string]string) []string {
	set := map[string]bool{}
	for k := range ann {
		if rest, ok := strings.CutPrefix(k, hintPrefix); ok {
			name, _, _ := strings.Cut(rest, ".")
			set[name] = true
		}
	}
	out := slices.Collect(maps.Keys(set))
	sort.Strings(out)
	return out
}
