package quarksb

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// FuzzSandboxSpec: the pod spec Quark reads, for any CRI resources and
// network setting, joins the pod's network namespace (and sets its
// hostname) only for a pod that has one, passes on only positive limits,
// exactly as CRI gave them, and survives config.json's JSON unchanged.
func FuzzSandboxSpec(f *testing.F) {
	f.Add("/var/run/netns/cni-1", "pod-1", int64(1<<30), int64(2<<30), int64(100000), int64(50000), int64(1024), "0-1", "0")
	f.Add("", "ignored", int64(-1), int64(-5), int64(0), int64(-1), int64(-2), "", "")
	f.Fuzz(func(t *testing.T, netns, hostname string, mem, swap, period, quota, shares int64, cpus, mems string) {
		if !utf8.ValidString(netns) || !utf8.ValidString(hostname) || !utf8.ValidString(cpus) || !utf8.ValidString(mems) {
			return // CRI's strings are protobuf strings: UTF-8 (JSON would write U+FFFD)
		}
		cfg := &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{
			Sysctls:   map[string]string{"net.ipv4.ip_forward": "1"},
			Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: mem, MemorySwapLimitInBytes: swap, CpuPeriod: period, CpuQuota: quota, CpuShares: shares, CpusetCpus: cpus, CpusetMems: mems},
		}}
		sp := sandboxSpec(cfg, netns, hostname, "/magnetar/pod")
		var netNS *specs.LinuxNamespace
		for i, ns := range sp.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				netNS = &sp.Linux.Namespaces[i]
			}
		}
		if (netns == "") != (netNS == nil) || netNS != nil && netNS.Path != netns || (netns == "") != (sp.Hostname == "") && hostname != "" {
			t.Fatalf("netns %q hostname %q: namespaces %+v hostname %q", netns, hostname, sp.Linux.Namespaces, sp.Hostname)
		}
		r := sp.Linux.Resources
		if r.CPU.Cpus != cpus || r.CPU.Mems != mems ||
			(mem > 0) != (r.Memory != nil) || r.Memory != nil && (*r.Memory.Limit != mem || (swap > 0) != (r.Memory.Swap != nil)) ||
			(period > 0) != (r.CPU.Period != nil) || (quota > 0) != (r.CPU.Quota != nil) || (shares > 0) != (r.CPU.Shares != nil) {
			t.Fatalf("resources %+v became %+v / %+v", cfg.Linux.Resources, r.CPU, r.Memory)
		}
		b, err := json.Marshal(sp)
		if err != nil {
			t.Fatal(err)
		}
		var back specs.Spec
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("config.json %s: %v", b, err)
		}
		if b2, _ := json.Marshal(&back); string(b2) != string(b) {
			t.Fatalf("config.json changes on a round trip:\n%s\n%s", b, b2)
		}
	})
}
