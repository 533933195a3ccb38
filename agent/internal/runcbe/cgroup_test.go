package runcbe

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
)

func fakeCgroup(t *testing.T, files map[string]string) string {
	root := t.TempDir()
	old := cgroupRoot
	cgroupRoot = root
	t.Cleanup(func() { cgroupRoot = old })
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "magnetar", "c1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, v := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestMetricsV2(t *testing.T) {
	fakeCgroup(t, map[string]string{
		"pids.current":   "3\n",
		"pids.max":       "max\n",
		"cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
		"memory.current": "4096000\n",
		"memory.max":     "67108864\n",
		"memory.stat":    "anon 1000\nfile 2000\nactive_file 1500\npgfault 77\n",
		"memory.events":  "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
	})
	a, err := metricsV2("/magnetar/c1")
	if err != nil {
		t.Fatal(err)
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		t.Fatal(err)
	}
	m := v.(*v2stats.Metrics)
	if m.GetPids().GetCurrent() != 3 || m.GetPids().GetLimit() != math.MaxUint64 || m.GetCPU().GetUsageUsec() != 1500 ||
		m.GetMemory().GetUsage() != 4096000 || m.GetMemory().GetUsageLimit() != 67108864 || m.GetMemory().GetAnon() != 1000 ||
		m.GetMemory().GetActiveFile() != 1500 || m.GetMemory().GetPgfault() != 77 || m.GetMemoryEvents().GetOomKill() != 1 {
		t.Fatalf("metrics %v", m)
	}
	if _, err := metricsV2("/magnetar/gone"); !errdefs.IsNotFound(err) {
		t.Fatalf("missing cgroup: %v", err)
	}
}

func TestWatchOOMv2(t *testing.T) {
	dir := fakeCgroup(t, map[string]string{"memory.events": "oom 0\noom_kill 0\n"})
	old := oomPoll
	oomPoll = 10 * time.Millisecond
	defer func() { oomPoll = old }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan struct{}, 1)
	watchOOMv2(ctx, "/magnetar/c1", ch)
	select {
	case <-ch:
		t.Fatal("OOM before any kill")
	case <-time.After(50 * time.Millisecond):
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.events"), []byte("oom 1\noom_kill 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("no OOM event after oom_kill rose")
	}
}
