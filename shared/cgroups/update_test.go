package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func i64(v int64) *int64   { return &v }
func u64(v uint64) *uint64 { return &v }
func u16(v uint16) *uint16 { return &v }
func u32(v uint32) *uint32 { return &v }
func boolp(v bool) *bool   { return &v }

func TestV2Update(t *testing.T) {
	h := fakeV2(t, "/pod/c1", nil)
	cg, err := h.load("/pod/c1")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(h.v2Root, "pod/c1")
	err = cg.Update(&specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(96 << 20), Reservation: i64(-1), Swappiness: u64(10)},
		CPU: &specs.LinuxCPU{
			Shares: u64(1024), Quota: i64(50000), Period: u64(100000),
			RealtimeRuntime: i64(1000),
		},
		Pids:           &specs.LinuxPids{Limit: i64(-1)},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 21}},
		BlockIO: &specs.LinuxBlockIO{
			Weight:                u16(500),
			ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Rate: 1000}},
		},
		Network: &specs.LinuxNetwork{ClassID: u32(7)},
		Unified: map[string]string{"memory.high": "50331648", "memory.oom.group": "1"},
	})
	if !errdefs.IsNotImplemented(err) {
		t.Fatalf("Update = %v, want NotImplemented", err)
	}
	for _, field := range []string{"hugepageLimits[2MB]", "cpu.realtimeRuntime", "memory.swappiness", "network.classID", "unified[memory.oom.group]"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
	if strings.Contains(err.Error(), "memory.limit") || strings.Contains(err.Error(), "unified[memory.high]") {
		t.Errorf("error %q names an applied field", err)
	}
	for file, want := range map[string]string{
		"memory.max":      "67108864",
		"memory.swap.max": "33554432",
		"memory.low":      "max",
		"cpu.weight":      "100",
		"cpu.max":         "50000 100000",
		"pids.max":        "max",
		"io.weight":       "4950",
		"io.max":          "8:0 rbps=1000",
		"memory.high":     "50331648",
	} {
		if got := readFile(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}

	// Period alone keeps the current quota; quota -1 is "max".
	if err := cg.Update(&specs.LinuxResources{CPU: &specs.LinuxCPU{Period: u64(200000)}}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "cpu.max")); got != "50000 200000" {
		t.Errorf("cpu.max = %q", got)
	}
	if err := cg.Update(&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(-1)}, Memory: &specs.LinuxMemory{Limit: i64(-1)}}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "cpu.max")); got != "max" {
		t.Errorf("cpu.max = %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "memory.max")); got != "max" {
		t.Errorf("memory.max = %q", got)
	}
}

func TestV2UpdateRefusesBeforeWriting(t *testing.T) {
	h := fakeV2(t, "/c", nil)
	cg, err := h.load("/c")
	if err != nil {
		t.Fatal(err)
	}
	bad := []*specs.LinuxResources{
		{Memory: &specs.LinuxMemory{Limit: i64(100 << 20)}, Unified: map[string]string{"../../etc/passwd": "x"}},
		{Memory: &specs.LinuxMemory{Limit: i64(100 << 20)}, Unified: map[string]string{"cgroup.procs": "1"}},
		{Memory: &specs.LinuxMemory{Limit: i64(100 << 20)}, HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB/../x", Limit: 1}}},
		{Memory: &specs.LinuxMemory{Limit: i64(100 << 20), Swap: i64(50 << 20)}},
		{Memory: &specs.LinuxMemory{Limit: i64(100 << 20)}, CPU: &specs.LinuxCPU{Cpus: "0\n1"}},
		{Memory: &specs.LinuxMemory{Limit: i64(100 << 20)}, Devices: []specs.LinuxDeviceCgroup{{Type: "x", Access: "r"}}},
		{Memory: &specs.LinuxMemory{Limit: i64(100 << 20)}, Rdma: map[string]specs.LinuxRdma{"mlx 0": {}}},
	}
	for i, r := range bad {
		if err := cg.Update(r); !errdefs.IsInvalidArgument(err) {
			t.Errorf("case %d: Update = %v, want InvalidArgument", i, err)
		}
		if got := readFile(t, filepath.Join(h.v2Root, "c/memory.max")); got != "max" {
			t.Fatalf("case %d: memory.max written (%q) despite invalid input", i, got)
		}
	}
	// checkBeforeUpdate: limit below usage (10 MiB) is refused.
	err = cg.Update(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 20), CheckBeforeUpdate: boolp(true)}})
	if !errdefs.IsFailedPrecondition(err) {
		t.Errorf("checkBeforeUpdate = %v, want FailedPrecondition", err)
	}
	// Swap without any memory limit cannot be converted.
	err = cg.Update(&specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: i64(1 << 30)}})
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("swap without limit = %v, want InvalidArgument", err)
	}
}

func TestV2UpdateMissingControllerAppliesRest(t *testing.T) {
	h := fakeV2(t, "/c", nil)
	// pids controller not enabled for this cgroup.
	for _, f := range []string{"pids.max", "pids.current"} {
		if err := os.Remove(filepath.Join(h.v2Root, "c", f)); err != nil {
			t.Fatal(err)
		}
	}
	cg, _ := h.load("/c")
	err := cg.Update(&specs.LinuxResources{
		Pids:   &specs.LinuxPids{Limit: i64(100)},
		Memory: &specs.LinuxMemory{Limit: i64(200 << 20)},
	})
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "pids.limit") {
		t.Fatalf("Update = %v, want NotImplemented naming pids.limit", err)
	}
	if got := readFile(t, filepath.Join(h.v2Root, "c/memory.max")); got != "209715200" {
		t.Errorf("memory.max = %q", got)
	}
	if exists(filepath.Join(h.v2Root, "c/pids.max")) {
		t.Error("Update created a control file")
	}
	// A removed cgroup is NotFound, and Update does not recreate it.
	if err := os.RemoveAll(filepath.Join(h.v2Root, "c")); err != nil {
		t.Fatal(err)
	}
	if err := cg.Update(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 20)}}); !errdefs.IsNotFound(err) {
		t.Errorf("Update on removed cgroup = %v", err)
	}
	if exists(filepath.Join(h.v2Root, "c")) {
		t.Error("Update recreated the cgroup")
	}
}

func TestV1Update(t *testing.T) {
	h := fakeV1(t, "/pod/c1", map[string]string{
		"memory/pod/c1/memory.limit_in_bytes":       "104857600",
		"memory/pod/c1/memory.memsw.limit_in_bytes": "104857600",
	})
	cg, err := h.load("/pod/c1")
	if err != nil {
		t.Fatal(err)
	}
	mem := func(f string) string { return readFile(t, filepath.Join(h.v1Root, "memory/pod/c1", f)) }

	err = cg.Update(&specs.LinuxResources{
		Memory:         &specs.LinuxMemory{Limit: i64(200 << 20), Swap: i64(300 << 20), Kernel: i64(1 << 20), Swappiness: u64(0), DisableOOMKiller: boolp(false)},
		CPU:            &specs.LinuxCPU{Shares: u64(512), Quota: i64(20000), Period: u64(100000), Cpus: "1", RealtimeRuntime: i64(5)},
		Pids:           &specs.LinuxPids{Limit: i64(64)},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 21}},
		Devices:        []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rw"}},
		Unified:        map[string]string{"memory.high": "1"},
	})
	if !errdefs.IsNotImplemented(err) {
		t.Fatalf("Update = %v, want NotImplemented", err)
	}
	for _, field := range []string{"hugepageLimits[2MB]", "unified[memory.high]", "memory.kernel", "cpu.realtimeRuntime"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
	for _, applied := range []string{"memory.limit", "memory.swap,", "cpu.shares", "pids.limit", "devices"} {
		if strings.Contains(err.Error(), applied) {
			t.Errorf("error %q names applied field %s", err, applied)
		}
	}
	if got := mem("memory.limit_in_bytes"); got != "209715200" {
		t.Errorf("limit = %q", got)
	}
	if got := mem("memory.memsw.limit_in_bytes"); got != "314572800" {
		t.Errorf("memsw = %q", got)
	}
	if got := mem("memory.swappiness"); got != "0" {
		t.Errorf("swappiness = %q", got)
	}
	for file, want := range map[string]string{
		"cpu/pod/c1/cpu.shares":        "512",
		"cpu/pod/c1/cpu.cfs_quota_us":  "20000",
		"cpu/pod/c1/cpu.cfs_period_us": "100000",
		"cpuset/pod/c1/cpuset.cpus":    "1",
		"pids/pod/c1/pids.max":         "64",
		"devices/pod/c1/devices.deny":  "a *:* rwm",
		"devices/pod/c1/devices.allow": "c 1:3 rw",
	} {
		if got := readFile(t, filepath.Join(h.v1Root, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if exists(filepath.Join(h.v1Root, "hugetlb")) {
		t.Error("Update created the hugetlb hierarchy")
	}
}

// TestV1SwapOrder checks that memsw.limit stays >= limit at each write, the
// kernel's rule, by recording the order of writes.
func TestV1SwapOrder(t *testing.T) {
	for _, tc := range []struct {
		name        string
		cur         string
		limit, swap int64
		wantFirst   string
	}{
		{"grow", "104857600", 200 << 20, 400 << 20, "memory.swap"},
		{"shrink", "104857600", 50 << 20, 60 << 20, "memory.limit"},
		{"unlimited swap", "104857600", 50 << 20, -1, "memory.swap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := fakeV1(t, "/c", map[string]string{"memory/c/memory.limit_in_bytes": tc.cur})
			dir := func(ctrl string) string { return filepath.Join(h.v1Root, ctrl, "c") }
			p, err := planV1(dir, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(tc.limit), Swap: i64(tc.swap)}})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.steps) != 2 || p.steps[0].field != tc.wantFirst {
				t.Errorf("steps = %+v, want %s first", p.steps, tc.wantFirst)
			}
		})
	}
}

func TestV1SwapWithoutAccounting(t *testing.T) {
	h := fakeV1(t, "/c", nil)
	for _, f := range []string{"memory/memory.memsw.usage_in_bytes", "memory/c/memory.memsw.limit_in_bytes", "memory/c/memory.memsw.usage_in_bytes", "memory/c/memory.memsw.max_usage_in_bytes", "memory/c/memory.memsw.failcnt"} {
		if err := os.Remove(filepath.Join(h.v1Root, f)); err != nil {
			t.Fatal(err)
		}
	}
	cg, err := h.load("/c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cg.Metrics(); err != nil {
		t.Fatalf("Metrics without swap accounting: %v", err)
	}
	// swap == limit means "no swap": nothing to enforce, not an error.
	if err := cg.Update(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(64 << 20)}}); err != nil {
		t.Errorf("swap == limit: %v", err)
	}
	err = cg.Update(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(128 << 20)}})
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "memory.swap") {
		t.Errorf("swap > limit: %v", err)
	}
	if exists(filepath.Join(h.v1Root, "memory/c/memory.memsw.limit_in_bytes")) {
		t.Error("memsw file created")
	}
}

func TestHardErrorIsNotNotImplemented(t *testing.T) {
	p := &plan{}
	p.unsupportedField("cpu.realtimeRuntime")
	p.steps = append(p.steps, step{field: "devices", run: func() error { return errors.New("bpf refused") }})
	err := p.apply("/c")
	if err == nil || errdefs.IsNotImplemented(err) {
		t.Fatalf("apply = %v: a hard failure must not read as NotImplemented", err)
	}
	if !strings.Contains(err.Error(), "devices: bpf refused") || !strings.Contains(err.Error(), "cpu.realtimeRuntime") {
		t.Errorf("apply = %v", err)
	}
}
