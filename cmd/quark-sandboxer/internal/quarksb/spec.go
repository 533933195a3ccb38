package quarksb

import (
	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// sandboxSpec is the pod's spec Quark reads from its bundle's config.json
// (`quark -r <bundle> sandbox`), as Kuasar's quark-sandboxer builds it from
// the PodSandboxConfig: the pod's resources, its network namespace (none
// for a host-network pod), a default process and root.path "rootfs"; and,
// beyond Kuasar's, the pod's hostname (with UTS and IPC namespaces of its
// own), its sysctls and the pod's cgroup, for a Quark that honours them
// (the stand-in does).
func sandboxSpec(cfg *runtime.PodSandboxConfig, netns, hostname, cgroup string) *specs.Spec {
	sp := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: []string{"/pause"}, Cwd: "/", User: specs.User{}},
		Root:    &specs.Root{Path: "rootfs"},
		Linux:   &specs.Linux{CgroupsPath: cgroup, Sysctl: cfg.GetLinux().GetSysctls()},
	}
	sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: specs.IPCNamespace})
	if netns != "" {
		sp.Hostname = hostname
		sp.Linux.Namespaces = append(sp.Linux.Namespaces,
			specs.LinuxNamespace{Type: specs.UTSNamespace},
			specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: netns})
	}
	if r := cfg.GetLinux().GetResources(); r != nil {
		sp.Linux.Resources = resources(r)
	}
	return sp
}

// resources are the pod's CRI resources as OCI resources (Kuasar's mapping:
// memory limit and swap, CPU period, quota, shares, cpuset, hugepages).
func resources(r *runtime.LinuxContainerResources) *specs.LinuxResources {
	res := &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()}}
	if v := r.GetMemoryLimitInBytes(); v > 0 {
		res.Memory = &specs.LinuxMemory{Limit: &v}
		if s := r.GetMemorySwapLimitInBytes(); s > 0 {
			res.Memory.Swap = &s
		}
	}
	if v := r.GetCpuPeriod(); v > 0 {
		p := uint64(v)
		res.CPU.Period = &p
	}
	if v := r.GetCpuQuota(); v > 0 {
		res.CPU.Quota = &v
	}
	if v := r.GetCpuShares(); v > 0 {
		s := uint64(v)
		res.CPU.Shares = &s
	}
	for _, h := range r.GetHugepageLimits() {
		res.HugepageLimits = append(res.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	return res
}
