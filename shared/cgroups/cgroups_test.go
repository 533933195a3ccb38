package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
)

func TestResolvePath(t *testing.T) {
	good := map[string]string{
		"/kubepods/besteffort/pod1/abc":   "/kubepods/besteffort/pod1/abc",
		"/a":                              "/a",
		"system.slice:cri-containerd:abc": "/system.slice/cri-containerd-abc.scope",
		":cri-containerd:abc":             "/system.slice/cri-containerd-abc.scope",
		"system.slice::abc":               "/system.slice/abc.scope",
		"-.slice:docker:abc":              "/docker-abc.scope",
		"kubepods-besteffort-pod1.slice:cri-containerd:abc": "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope",
		"kubepods.slice:x:kubepods-pod2.slice":              "/kubepods.slice/kubepods-pod2.slice",
	}
	for in, want := range good {
		got, err := ResolvePath(in)
		if err != nil || got != want {
			t.Errorf("ResolvePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "/", "relative/path", "/a/../b", "/a//b", "/a/", "/a/./b",
		"a:b", "a:b:c:d", "system.slice:p:", "notaslice:p:n", ".slice:p:n",
		"a--b.slice:p:n", "a-.slice:p:n", "system.slice:p/x:n", "system.slice:p:../n", "system.slice:p:..",
	} {
		if got, err := ResolvePath(in); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ResolvePath(%q) = %q, %v; want InvalidArgument", in, got, err)
		}
	}
}

func TestParseCgroupMounts(t *testing.T) {
	table := `22 1 0:20 / /sys rw - sysfs sysfs rw
31 22 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:38 / /sys/fs/cgroup/with\040space rw - cgroup cgroup rw,pids
`
	got, err := parseCgroupMounts(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	want := []cgroupMount{
		{"/sys/fs/cgroup/cpu,cpuacct", false},
		{"/sys/fs/cgroup/memory", false},
		{"/sys/fs/cgroup/systemd", false},
		{"/sys/fs/cgroup/unified", true},
		{"/sys/fs/cgroup/with space", false},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mount %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestV2LoadMetricsStats(t *testing.T) {
	h := fakeV2(t, "/pod/c1", map[string]string{"memory.max": "67108864", "pids.current": "5"})
	if _, err := h.load("/pod/missing"); !errdefs.IsNotFound(err) {
		t.Fatalf("load missing = %v, want NotFound", err)
	}
	if _, err := h.load("pod/c1"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("load relative = %v, want InvalidArgument", err)
	}
	cg, err := h.load("/pod/c1")
	if err != nil {
		t.Fatal(err)
	}
	if cg.Path() != "/pod/c1" {
		t.Errorf("Path = %q", cg.Path())
	}
	a, err := cg.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if a.GetTypeUrl() != MetricsV2TypeURL {
		t.Fatalf("type url %q, want %q", a.GetTypeUrl(), MetricsV2TypeURL)
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(*v2stats.Metrics)
	if !ok {
		t.Fatalf("decoded %T, want *v2stats.Metrics", v)
	}
	if m.GetCPU().GetUsageUsec() != 1500 || m.GetMemory().GetUsage() != 10485760 || m.GetPids().GetCurrent() != 5 {
		t.Errorf("metrics = %v", m)
	}
	s, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{
		CPUUsageNS: 1500000, UserNS: 1000000, SystemNS: 500000,
		MemoryUsage: 10485760, MemoryLimit: 67108864,
		WorkingSet: 10485760 - 2097152, RSS: 4194304, Pids: 5,
	}
	if *s != want {
		t.Errorf("Stats = %+v\nwant    %+v", *s, want)
	}

	// Unlimited memory reads as 0; a removed cgroup is NotFound.
	writeFiles(t, h.v2Root, map[string]string{"pod/c1/memory.max": "max"})
	if s, _ := cg.Stats(); s.MemoryLimit != 0 {
		t.Errorf("unlimited MemoryLimit = %d, want 0", s.MemoryLimit)
	}
	if err := os.RemoveAll(filepath.Join(h.v2Root, "pod/c1")); err != nil {
		t.Fatal(err)
	}
	if _, err := cg.Metrics(); !errdefs.IsNotFound(err) {
		t.Errorf("Metrics after removal = %v, want NotFound", err)
	}
	if _, err := cg.Stats(); !errdefs.IsNotFound(err) {
		t.Errorf("Stats after removal = %v, want NotFound", err)
	}
}

func TestV1LoadMetricsStats(t *testing.T) {
	h := fakeV1(t, "/pod/c1", nil)
	if _, err := h.load("/pod/missing"); !errdefs.IsNotFound(err) {
		t.Fatalf("load missing = %v, want NotFound", err)
	}
	cg, err := h.load("/pod/c1")
	if err != nil {
		t.Fatal(err)
	}
	a, err := cg.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if a.GetTypeUrl() != MetricsV1TypeURL {
		t.Fatalf("type url %q, want %q", a.GetTypeUrl(), MetricsV1TypeURL)
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(*v1stats.Metrics)
	if !ok {
		t.Fatalf("decoded %T, want *v1stats.Metrics", v)
	}
	if got := m.GetCPU().GetUsage().GetPerCPU(); len(got) != 2 || got[1] != 4000000 {
		t.Errorf("per-cpu = %v", got)
	}
	if m.GetCPU().GetThrottling().GetThrottledPeriods() != 2 {
		t.Errorf("throttling = %v", m.GetCPU().GetThrottling())
	}
	if m.GetMemory().GetSwap().GetUsage() != 3145728 {
		t.Errorf("memsw not read: %v", m.GetMemory().GetSwap())
	}
	s, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{
		CPUUsageNS: 7000000, UserNS: 10000000, SystemNS: 20000000,
		MemoryUsage: 3145728, MemoryLimit: 0,
		WorkingSet: 3145728 - 524288, RSS: 2097152, Pids: 2,
	}
	if *s != want {
		t.Errorf("Stats = %+v\nwant    %+v", *s, want)
	}
	for _, ctrl := range []string{"memory", "cpu", "cpuacct", "pids", "cpuset", "devices", "systemd"} {
		if err := os.RemoveAll(filepath.Join(h.v1Root, ctrl, "pod")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cg.Metrics(); !errdefs.IsNotFound(err) {
		t.Errorf("Metrics after removal = %v, want NotFound", err)
	}
	if err := cg.Update(nil); err != nil {
		t.Errorf("Update(nil) = %v", err)
	}
}

func TestProcsFake(t *testing.T) {
	root := t.TempDir()
	for f, procs := range map[string]string{
		"memory/pod/cgroup.procs":     "12\n7\n",
		"memory/pod/c1/cgroup.procs":  "30\n",
		"pids/pod/cgroup.procs":       "7\n12\n",
		"pids/pod/c1/x/cgroup.procs":  "31\n",
		"memory/other/cgroup.procs":   "99\n",
		"unified/pod/c2/cgroup.procs": "",
		"unified/pod/cgroup.procs":    "40\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f), []byte(procs), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := &host{hierarchies: []string{filepath.Join(root, "memory"), filepath.Join(root, "pids"), filepath.Join(root, "unified"), filepath.Join(root, "cpu")}}
	got, err := h.procs("/pod")
	if err != nil || fmt.Sprint(got) != "[7 12 30 31 40]" {
		t.Errorf("procs of /pod: %v, %v", got, err)
	}
	if got, err := h.procs("/missing"); err != nil || len(got) != 0 {
		t.Errorf("procs of a cgroup that does not exist: %v, %v", got, err)
	}
	if _, err := h.procs("relative"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a bad path: %v", err)
	}
}

func TestDeleteFake(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"memory/pod/c1/child", "memory/pod/c2", "cpu/pod/c1", "unified/pod/c1"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h := &host{v1Root: root, v2Root: filepath.Join(root, "unified")}
	if err := h.delete("/pod/c1"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"memory/pod/c1", "cpu/pod/c1", "unified/pod/c1"} {
		if exists(filepath.Join(root, d)) {
			t.Errorf("%s left behind", d)
		}
	}
	if !exists(filepath.Join(root, "memory/pod/c2")) {
		t.Error("sibling removed")
	}
	if err := h.delete("/pod/c1"); err != nil {
		t.Errorf("second delete = %v", err)
	}
	if err := h.delete("/"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("delete root = %v", err)
	}
}

func TestPodPath(t *testing.T) {
	for _, c := range []struct{ parent, want string }{
		{"", "/magnetar-x/p1"},
		{"/kubepods/besteffort/pod1", "/kubepods/besteffort/pod1/magnetar-x-p1"},
		{"kubepods-besteffort-pod1.slice", "kubepods-besteffort-pod1.slice:magnetar-x:p1"},
	} {
		if got := PodPath("magnetar-x", c.parent, "p1"); got != c.want {
			t.Errorf("PodPath(%q) = %q, want %q", c.parent, got, c.want)
		}
	}
}
