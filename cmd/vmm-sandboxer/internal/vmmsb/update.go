package vmmsb

import (
	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cpuResources is the CPU part of CRI resources as OCI resources for the
// VM's host cgroup, nil when it sets none.
func cpuResources(r *runtime.LinuxContainerResources) *specs.LinuxResources {
	cpu := &specs.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()}
	set := cpu.Cpus != "" || cpu.Mems != ""
	if v := r.GetCpuShares(); v > 0 {
		s := uint64(v)
		cpu.Shares, set = &s, true
	}
	if v := r.GetCpuQuota(); v != 0 {
		cpu.Quota, set = &v, true
	}
	if v := r.GetCpuPeriod(); v > 0 {
		p := uint64(v)
		cpu.Period, set = &p, true
	}
	if !set {
		return nil
	}
	return &specs.LinuxResources{CPU: cpu}
}
