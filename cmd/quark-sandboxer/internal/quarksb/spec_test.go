package quarksb

import (
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestSandboxSpec(t *testing.T) {
	cfg := &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{
		Sysctls: map[string]string{"net.ipv4.ip_forward": "1"},
		Resources: &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 1 << 28,
			CpusetCpus: "0", HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}}},
	}}
	sp := sandboxSpec(cfg, "/var/run/netns/cni-1", "web", "/pods/magnetar-quark-p1")
	if sp.Root.Path != "rootfs" || sp.Hostname != "web" || sp.Linux.CgroupsPath != "/pods/magnetar-quark-p1" || sp.Linux.Sysctl["net.ipv4.ip_forward"] != "1" {
		t.Errorf("spec: %+v %+v", sp, sp.Linux)
	}
	want := []specs.LinuxNamespace{{Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"}}
	if len(sp.Linux.Namespaces) != len(want) {
		t.Fatalf("namespaces %v", sp.Linux.Namespaces)
	}
	for i := range want {
		if sp.Linux.Namespaces[i] != want[i] {
			t.Errorf("namespace %d: %v, want %v", i, sp.Linux.Namespaces[i], want[i])
		}
	}
	r := sp.Linux.Resources
	if *r.CPU.Period != 100000 || *r.CPU.Quota != 50000 || *r.CPU.Shares != 512 || r.CPU.Cpus != "0" || *r.Memory.Limit != 1<<28 || r.HugepageLimits[0].Pagesize != "2MB" {
		t.Errorf("resources %+v %+v", r.CPU, r.Memory)
	}
	// a host-network pod: the host's network and UTS namespaces, no hostname
	sp = sandboxSpec(&runtime.PodSandboxConfig{}, "", "web", "/c")
	if sp.Hostname != "" || len(sp.Linux.Namespaces) != 1 || sp.Linux.Namespaces[0].Type != specs.IPCNamespace || sp.Linux.Resources != nil {
		t.Errorf("host network: %+v", sp.Linux)
	}
}
