package runcsb

import (
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

func baseSpec(pid string) *specs.Spec {
	return &specs.Spec{
		Root: &specs.Root{Path: "rootfs"},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace, Path: "/proc/" + pid + "/ns/pid"},
			{Type: specs.NetworkNamespace, Path: "/proc/" + pid + "/ns/net"},
			{Type: specs.IPCNamespace, Path: "/proc/" + pid + "/ns/ipc"},
			{Type: specs.UTSNamespace, Path: "/proc/" + pid + "/ns/uts"},
			{Type: specs.MountNamespace},
		}},
		Mounts: []specs.Mount{{Destination: "/dev/shm", Type: "tmpfs", Source: "shm"}, {Destination: "/etc/hosts", Type: "bind", Source: "/mine"}},
	}
}

func nsMap(sp *specs.Spec) map[specs.LinuxNamespaceType]string {
	m := map[specs.LinuxNamespaceType]string{}
	for _, n := range sp.Linux.Namespaces {
		m[n.Type] = n.Path
	}
	return m
}

func TestRewritePodNamespaces(t *testing.T) {
	st := &podState{NetNS: "/run/netns/cni-1", IPC: "/d/ns/ipc", UTS: "/d/ns/uts", Shm: "/d/shm", Dir: "/d", Hostname: "pod1"}
	sp := baseSpec("4294967295")
	if err := rewriteSpec(sp, st, 0); err != nil {
		t.Fatal(err)
	}
	ns := nsMap(sp)
	if ns[specs.NetworkNamespace] != st.NetNS || ns[specs.IPCNamespace] != st.IPC || ns[specs.UTSNamespace] != st.UTS {
		t.Errorf("namespaces %v", ns)
	}
	if p, ok := ns[specs.PIDNamespace]; !ok || p != "" {
		t.Errorf("pid ns = %q, %v: want a new one", p, ok)
	}
	if sp.Hostname != "pod1" {
		t.Errorf("hostname %q", sp.Hostname)
	}
	dst := map[string]specs.Mount{}
	for _, m := range sp.Mounts {
		dst[m.Destination] = m
	}
	if dst["/dev/shm"].Source != "/d/shm" || dst["/etc/hosts"].Source != "/mine" || dst["/etc/resolv.conf"].Source != "/d/resolv.conf" {
		t.Errorf("mounts %+v", dst)
	}
}

func TestRewriteSharedAndHost(t *testing.T) {
	st := &podState{HostNetwork: true, SharedPID: true, InitPid: 4242, Dir: "/d"}
	sp := baseSpec("4242")
	if err := rewriteSpec(sp, st, 4242); err != nil {
		t.Fatal(err)
	}
	ns := nsMap(sp)
	if _, ok := ns[specs.NetworkNamespace]; ok {
		t.Error("host network pod must not get a net namespace")
	}
	if _, ok := ns[specs.IPCNamespace]; ok {
		t.Error("host IPC pod must not get an ipc namespace")
	}
	if ns[specs.PIDNamespace] != "/proc/4242/ns/pid" {
		t.Errorf("pid ns %q", ns[specs.PIDNamespace])
	}
	// a target container's pid namespace is left alone
	sp = baseSpec("0")
	sp.Linux.Namespaces[0].Path = "/proc/777/ns/pid"
	if err := rewriteSpec(sp, &podState{NetNS: "/n", Dir: "/d"}, 0); err != nil {
		t.Fatal(err)
	}
	if nsMap(sp)[specs.PIDNamespace] != "/proc/777/ns/pid" {
		t.Error("target pid namespace rewritten")
	}
	sp = baseSpec("0")
	sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/proc/0/ns/user"})
	if err := rewriteSpec(sp, &podState{Dir: "/d"}, 0); !errdefs.IsInvalidArgument(err) {
		t.Errorf("user ns of a pod without one: %v", err)
	}
}

// TestRewriteUserNamespacePod: a container of a pod with its own user
// namespace joins it; while the pod's IPC and UTS namespaces do not exist
// yet (the first container makes them), the container gets new ones, and
// later ones join what was held.
func TestRewriteUserNamespacePod(t *testing.T) {
	withUser := func() *specs.Spec {
		sp := baseSpec("0")
		sp.Linux.Namespaces = append(sp.Linux.Namespaces,
			specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/proc/0/ns/user"},
			specs.LinuxNamespace{Type: specs.IPCNamespace, Path: "/proc/0/ns/ipc"},
			specs.LinuxNamespace{Type: specs.UTSNamespace, Path: "/proc/0/ns/uts"})
		return sp
	}
	st := &podState{NetNS: "/n", Dir: "/d", UserNS: "/d/ns/user", LateNS: true, Hostname: "h"}
	sp := withUser()
	if err := rewriteSpec(sp, st, 0); err != nil {
		t.Fatal(err)
	}
	ns := nsMap(sp)
	for kind, want := range map[specs.LinuxNamespaceType]string{specs.UserNamespace: "/d/ns/user", specs.IPCNamespace: "", specs.UTSNamespace: "", specs.NetworkNamespace: "/n"} {
		if got, ok := ns[kind]; !ok || got != want {
			t.Errorf("first container: %s namespace %q (present %v), want %q", kind, got, ok, want)
		}
	}
	st.IPC, st.UTS = "/d/ns/ipc", "/d/ns/uts"
	sp = withUser()
	if err := rewriteSpec(sp, st, 0); err != nil {
		t.Fatal(err)
	}
	if ns := nsMap(sp); ns[specs.IPCNamespace] != "/d/ns/ipc" || ns[specs.UTSNamespace] != "/d/ns/uts" {
		t.Errorf("later container: %v", ns)
	}
}

// A container always has a mount namespace of its own: one the spec
// leaves out is added (without it runc mounts the container's rootfs,
// /proc, /dev and /etc/hosts in the host's, where they stay after its
// Delete), and joining another one (the host's) is refused (found by
// hack/rpcfuzz).
func TestRewriteMountNamespace(t *testing.T) {
	sp := baseSpec("0")
	sp.Linux.Namespaces = sp.Linux.Namespaces[:4]
	if err := rewriteSpec(sp, &podState{NetNS: "/n", Dir: "/d"}, 0); err != nil {
		t.Fatal(err)
	}
	if p, ok := nsMap(sp)[specs.MountNamespace]; !ok || p != "" {
		t.Errorf("mount namespace %q (present %v), want one of its own", p, ok)
	}
	sp = baseSpec("0")
	sp.Linux.Namespaces[4].Path = "/proc/1/ns/mnt"
	if err := rewriteSpec(sp, &podState{NetNS: "/n", Dir: "/d"}, 0); !errdefs.IsInvalidArgument(err) {
		t.Errorf("joining the host's mount namespace: %v, want InvalidArgument", err)
	}
}
