package runcbe

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestRewriteSpec(t *testing.T) {
	sp := &specs.Spec{
		Process: &specs.Process{ApparmorProfile: "cri-containerd.apparmor.d", SelinuxLabel: "x"},
		Hooks:   &specs.Hooks{Prestart: []specs.Hook{{Path: "/usr/bin/host-hook"}}},
		Linux: &specs.Linux{
			CgroupsPath: "kubepods-besteffort.slice:cri-containerd:abc",
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace, Path: "/proc/12345/ns/ipc"},
				{Type: specs.UTSNamespace, Path: "/proc/12345/ns/uts"},
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1234"},
			},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/etc/hosts", Type: "bind", Source: "/run/magnetar/share/c1/hosts", Options: []string{"rbind", "ro"}},
			{Destination: "/dev/shm", Source: "/dev/shm", Options: []string{"rbind"}},
		},
	}
	if err := RewriteSpec(sp, "c1", "/run/magnetar/share", nil, nil); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, ns := range sp.Linux.Namespaces {
		kinds = append(kinds, string(ns.Type)+":"+ns.Path)
	}
	// a cgroup namespace of its own (the k8s e2e on magnetar-vmm: the
	// container saw the guest's root cgroup, not its limits)
	if got := strings.Join(kinds, " "); got != "pid: mount: cgroup:" {
		t.Fatalf("namespaces %q", got)
	}
	if sp.Linux.CgroupsPath != "/magnetar/c1" || sp.Process.ApparmorProfile != "" || sp.Process.SelinuxLabel != "" || sp.Hooks != nil {
		t.Fatalf("not rewritten: %+v", sp)
	}
}

func TestRewriteSpecKeepsATargetContainersPidNamespace(t *testing.T) {
	sp := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace, Path: "/proc/77/ns/pid"}}}}
	if err := RewriteSpec(sp, "c2", "/run/magnetar/share", func(pid int) bool { return pid == 77 }, nil); err != nil {
		t.Fatal(err)
	}
	if len(sp.Linux.Namespaces) != 2 || sp.Linux.Namespaces[0].Path != "/proc/77/ns/pid" {
		t.Fatalf("%+v", sp.Linux.Namespaces)
	}
}

func TestRewriteSpecRejects(t *testing.T) {
	for name, sp := range map[string]*specs.Spec{
		"host bind":     {Mounts: []specs.Mount{{Destination: "/data", Type: "bind", Source: "/var/lib/kubelet/pods/x/volumes/v"}}},
		"escaping bind": {Mounts: []specs.Mount{{Destination: "/data", Type: "bind", Source: "/run/magnetar/share/../../etc"}}},
		"prefix trick":  {Mounts: []specs.Mount{{Destination: "/data", Options: []string{"bind"}, Source: "/run/magnetar/share-other/x"}}},
		"user ns path":  {Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.UserNamespace, Path: "/proc/9/ns/user"}}}},
	} {
		if err := RewriteSpec(sp, "c3", "/run/magnetar/share", nil, nil); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A container joining the pod's PID namespace on the host joins the pod's
// one in the guest, never the VM's own (where the agent is).
func TestRewriteSpecPodPIDNamespace(t *testing.T) {
	mk := func() *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace, Path: "/proc/4294967295/ns/pid"}}}}
	}
	sp := mk()
	if err := RewriteSpec(sp, "c4", "/run/magnetar/share", nil, func() (string, error) { return "/proc/42/ns/pid", nil }); err != nil {
		t.Fatal(err)
	}
	if ns := sp.Linux.Namespaces; len(ns) != 2 || ns[0].Type != specs.PIDNamespace || ns[0].Path != "/proc/42/ns/pid" {
		t.Fatalf("namespaces %+v, want the pod's pid namespace", ns)
	}
	sp = mk()
	if err := RewriteSpec(sp, "c5", "/run/magnetar/share", nil, nil); err != nil {
		t.Fatal(err)
	}
	if ns := sp.Linux.Namespaces; len(ns) != 2 || ns[0].Type != specs.PIDNamespace || ns[0].Path != "" {
		t.Fatalf("namespaces %+v, want a pid namespace of its own", ns)
	}
}
