package cgroups

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFiles creates files (name → content) below dir, making directories.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// fakeV2 lays out a unified hierarchy in a temporary directory with one
// cgroup at cgPath whose control files hold the given values on top of
// plausible defaults.
func fakeV2(t *testing.T, cgPath string, override map[string]string) *host {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"cgroup.controllers":     "cpu memory pids io",
		"cgroup.subtree_control": "",
		"cpu.stat":               "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
		"cpu.max":                "max 100000",
		"cpu.weight":             "100",
		"memory.current":         "10485760",
		"memory.max":             "max",
		"memory.low":             "0",
		"memory.high":            "max",
		"memory.swap.max":        "max",
		"memory.stat":            "anon 4194304\nfile 6291456\ninactive_file 2097152\nactive_file 4194304\n",
		"memory.events":          "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
		"pids.current":           "3",
		"pids.max":               "max",
		"io.max":                 "",
		"io.weight":              "default 100",
		"cgroup.procs":           "",
		"cgroup.events":          "populated 1\nfrozen 0\n",
	}
	for k, v := range override {
		files[k] = v
	}
	prefixed := map[string]string{}
	for k, v := range files {
		prefixed[filepath.Join(strings.TrimPrefix(cgPath, "/"), k)] = v
	}
	writeFiles(t, root, prefixed)
	return &host{unified: true, v2Root: root}
}

// fakeV1 lays out v1 hierarchies (memory, cpu, cpuacct, pids, cpuset,
// devices, systemd) with one cgroup at cgPath. The hierarchy roots carry the
// memsw files (swap accounting on) but no kmem files, as on a kernel that
// dropped kernel memory accounting.
func fakeV1(t *testing.T, cgPath string, override map[string]string) *host {
	t.Helper()
	root := t.TempDir()
	rel := strings.TrimPrefix(cgPath, "/")
	files := map[string]string{
		"memory/memory.memsw.usage_in_bytes": "0",
		"memory/memory.usage_in_bytes":       "0",
		"cpu/cpu.shares":                     "1024",
		"cpuacct/cpuacct.usage":              "0",
		"pids/pids.max":                      "max",
		"cpuset/cpuset.cpus":                 "0-1",
		"devices/devices.list":               "a *:* rwm",
		"systemd/cgroup.procs":               "",

		"memory/" + rel + "/memory.stat":                     "cache 1048576\nrss 2097152\ntotal_cache 1048576\ntotal_rss 2097152\ntotal_inactive_file 524288\n",
		"memory/" + rel + "/memory.oom_control":              "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
		"memory/" + rel + "/memory.usage_in_bytes":           "3145728",
		"memory/" + rel + "/memory.max_usage_in_bytes":       "4194304",
		"memory/" + rel + "/memory.failcnt":                  "0",
		"memory/" + rel + "/memory.limit_in_bytes":           "9223372036854771712",
		"memory/" + rel + "/memory.soft_limit_in_bytes":      "9223372036854771712",
		"memory/" + rel + "/memory.memsw.usage_in_bytes":     "3145728",
		"memory/" + rel + "/memory.memsw.max_usage_in_bytes": "4194304",
		"memory/" + rel + "/memory.memsw.failcnt":            "0",
		"memory/" + rel + "/memory.memsw.limit_in_bytes":     "9223372036854771712",
		"memory/" + rel + "/memory.swappiness":               "60",
		"memory/" + rel + "/cgroup.event_control":            "",
		"cpu/" + rel + "/cpu.stat":                           "nr_periods 10\nnr_throttled 2\nthrottled_time 3000\n",
		"cpu/" + rel + "/cpu.shares":                         "1024",
		"cpu/" + rel + "/cpu.cfs_period_us":                  "100000",
		"cpu/" + rel + "/cpu.cfs_quota_us":                   "-1",
		"cpuacct/" + rel + "/cpuacct.usage":                  "7000000",
		"cpuacct/" + rel + "/cpuacct.usage_percpu":           "3000000 4000000",
		"cpuacct/" + rel + "/cpuacct.stat":                   "user 1\nsystem 2\n",
		"pids/" + rel + "/pids.current":                      "2",
		"pids/" + rel + "/pids.max":                          "max",
		"cpuset/" + rel + "/cpuset.cpus":                     "0-1",
		"cpuset/" + rel + "/cpuset.mems":                     "0",
		"devices/" + rel + "/devices.allow":                  "",
		"devices/" + rel + "/devices.deny":                   "",
		"systemd/" + rel + "/cgroup.procs":                   "",
	}
	for k, v := range override {
		files[k] = v
	}
	writeFiles(t, root, files)
	return &host{v1Root: root}
}
