package gvisorsb

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/cmd/gvisor-sandboxer/internal/gvisortest"
)

func TestPodHints(t *testing.T) {
	ann := map[string]string{
		"dev.gvisor.spec.mount.data.source": "/var/lib/kubelet/pods/x/volumes/data",
		"dev.gvisor.spec.mount.data.type":   "tmpfs",
		"dev.gvisor.spec.mount.data.share":  "pod",
		"other":                             "kept out",
	}
	got, err := podHints(ann, "/pod/shm")
	if err != nil {
		t.Fatal(err)
	}
	if got["dev.gvisor.spec.mount.data.share"] != "pod" || got["other"] != "" {
		t.Errorf("hints %v", got)
	}
	if got[hintPrefix+shmHint+".source"] != "/pod/shm" || got[hintPrefix+shmHint+".type"] != "tmpfs" || got[hintPrefix+shmHint+".share"] != "pod" {
		t.Errorf("no /dev/shm hint: %v", got)
	}
	if n := hintNames(got); strings.Join(n, ",") != "data,magnetar-shm" {
		t.Errorf("names %v", n)
	}
	for name, bad := range map[string]map[string]string{
		"no field":     {"dev.gvisor.spec.mount.data": "x"},
		"deep field":   {"dev.gvisor.spec.mount.data.source.x": "/x"},
		"bad type":     {"dev.gvisor.spec.mount.data.type": "nfs"},
		"bad share":    {"dev.gvisor.spec.mount.data.share": "node"},
		"unknown":      {"dev.gvisor.spec.mount.data.size": "1"},
		"relative":     {"dev.gvisor.spec.mount.data.source": "data"},
		"own name":     {"dev.gvisor.spec.mount.magnetar-shm.type": "tmpfs"},
		"missing type": {"dev.gvisor.spec.mount.data.source": "/d", "dev.gvisor.spec.mount.data.share": "pod"},
		"same source": {
			"dev.gvisor.spec.mount.a.source": "/d", "dev.gvisor.spec.mount.a.type": "tmpfs", "dev.gvisor.spec.mount.a.share": "pod",
			"dev.gvisor.spec.mount.b.source": "/d", "dev.gvisor.spec.mount.b.type": "bind", "dev.gvisor.spec.mount.b.share": "shared",
		},
		"the shm source":         {"dev.gvisor.spec.mount.a.source": "/pod/shm", "dev.gvisor.spec.mount.a.type": "tmpfs", "dev.gvisor.spec.mount.a.share": "pod"},
		"bind shared by the pod": {"dev.gvisor.spec.mount.a.source": "/d", "dev.gvisor.spec.mount.a.type": "bind", "dev.gvisor.spec.mount.a.share": "pod"},
	} {
		if _, err := podHints(bad, "/pod/shm"); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "annotations") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestRootSpec(t *testing.T) {
	st := &podState{NetNS: "/run/netns/x", Hostname: "pod1", Cgroup: "/kubepods/pod1", Hints: map[string]string{"dev.gvisor.spec.mount.a.type": "bind"}}
	cfg := &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{
		Sysctls:   map[string]string{"net.ipv4.ip_forward": "1"},
		Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 100 << 20, CpuQuota: 50000, CpuPeriod: 100000},
		Overhead:  &runtime.LinuxContainerResources{MemoryLimitInBytes: 28 << 20},
	}}
	sp := rootSpec("pod1", st, "/state/pause", cfg)
	if sp.Annotations[annContainerType] != typeSandbox || sp.Annotations["dev.gvisor.spec.mount.a.type"] != "bind" {
		t.Errorf("annotations %v", sp.Annotations)
	}
	if sp.Root.Path != "/state/pause" || !sp.Root.Readonly || sp.Process.Args[0] != pauseBinary || sp.Process.User.UID != 65535 || !sp.Process.NoNewPrivileges {
		t.Errorf("root and process %+v %+v", sp.Root, sp.Process)
	}
	var netns string
	for _, n := range sp.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace {
			netns = n.Path
		}
	}
	if netns != "/run/netns/x" || sp.Hostname != "pod1" || sp.Linux.CgroupsPath != "/kubepods/pod1" || sp.Linux.Sysctl["net.ipv4.ip_forward"] != "1" {
		t.Errorf("netns %q hostname %q cgroup %q sysctl %v", netns, sp.Hostname, sp.Linux.CgroupsPath, sp.Linux.Sysctl)
	}
	if r := sp.Linux.Resources; r == nil || *r.Memory.Limit != 128<<20 || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 {
		t.Errorf("resources %+v", sp.Linux.Resources)
	}
	st.HostNetwork = true
	sp = rootSpec("pod1", st, "/state/pause", &runtime.PodSandboxConfig{})
	for _, n := range sp.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace {
			t.Errorf("a host-network pod's root has a network namespace: %+v", n)
		}
	}
	if sp.Hostname != "" || sp.Linux.Resources != nil {
		t.Errorf("host network: hostname %q resources %+v", sp.Hostname, sp.Linux.Resources)
	}
}

func TestRewriteSpec(t *testing.T) {
	st := &podState{Dir: "/state/sandboxes/p", Hostname: "p", Shm: "/state/sandboxes/p/shm", Hints: map[string]string{"dev.gvisor.spec.mount.a.type": "bind"}}
	sp := gvisortest.ContainerSpec("p", "/cg/c1")
	sp.Annotations["dev.gvisor.spec.mount.own.type"] = "tmpfs"
	if err := rewriteSpec(sp, "p", st); err != nil {
		t.Fatal(err)
	}
	if sp.Annotations[annSandboxID] != "p" || sp.Annotations[annContainerType] != typeContainer {
		t.Errorf("annotations %v", sp.Annotations)
	}
	if sp.Annotations["dev.gvisor.spec.mount.own.type"] != "" || sp.Annotations["dev.gvisor.spec.mount.a.type"] != "bind" {
		t.Errorf("hints %v", sp.Annotations)
	}
	mounts := map[string]specs.Mount{}
	for _, m := range sp.Mounts {
		mounts[m.Destination] = m
	}
	if m := mounts["/dev/shm"]; m.Type != "bind" || m.Source != st.Shm {
		t.Errorf("/dev/shm %+v", m)
	}
	if m := mounts["/etc/resolv.conf"]; m.Source != "/state/sandboxes/p/resolv.conf" {
		t.Errorf("/etc/resolv.conf %+v", m)
	}
	if sp.Hostname != "p" {
		t.Errorf("hostname %q", sp.Hostname)
	}
	// Bidirectional propagation: refused at create, naming it (runsc
	// refused the rshared root only at start)
	for name, mod := range map[string]func(*specs.Spec){
		"rshared root": func(sp *specs.Spec) { sp.Linux.RootfsPropagation = "rshared" },
		"rshared mount": func(sp *specs.Spec) {
			sp.Mounts = append(sp.Mounts, specs.Mount{Destination: "/v", Type: "bind", Source: "/v", Options: []string{"rbind", "rshared"}})
		},
	} {
		sp = gvisortest.ContainerSpec("p", "/cg/c3")
		mod(sp)
		if err := rewriteSpec(sp, "p", st); !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "Bidirectional") {
			t.Errorf("%s: %v", name, err)
		}
	}
	sp = gvisortest.ContainerSpec("p", "/cg/c4")
	sp.Linux.RootfsPropagation = "rslave"
	if err := rewriteSpec(sp, "p", st); err != nil {
		t.Errorf("rslave root: %v", err)
	}
	sp = gvisortest.ContainerSpec("p", "/cg/c2")
	sp.Annotations[annContainerType] = typeSandbox
	if err := rewriteSpec(sp, "p", st); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), annContainerType) {
		t.Errorf("a second sandbox container: %v", err)
	}
}

func TestCgroupPath(t *testing.T) {
	for parent, want := range map[string]string{
		"/kubepods/besteffort/pod1":      "/kubepods/besteffort/pod1/id",
		"kubepods-besteffort-pod1.slice": "kubepods-besteffort-pod1.slice:magnetar-gvisor:id",
		"/magnetar-gvisor":               "/magnetar-gvisor/id",
	} {
		if got := cgroupPath(parent, "id"); got != want {
			t.Errorf("cgroupPath(%q) = %q, want %q", parent, got, want)
		}
	}
}
