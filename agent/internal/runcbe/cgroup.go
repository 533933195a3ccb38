package runcbe

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
)

// The guest reads its cgroup v2 files directly instead of linking
// containerd/cgroups' managers (with cilium/ebpf, dbus and go-systemd that
// is ~2 MB of a binary that the VM must unpack at every boot). Debian's
// guest kernels have cgroup2; on a v1-only kernel Stats answers
// NotImplemented and OOM events are not reported.

// cgroupRoot is where cgroup2 is mounted (tests point it elsewhere).
var cgroupRoot = "/sys/fs/cgroup"

func cgroupV2() bool {
	_, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers"))
	return err == nil
}

func readUint(dir, name string) (uint64, bool) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return math.MaxUint64, true
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

// readKV reads a flat keyed file ("key value" lines).
func readKV(dir, name string) map[string]uint64 {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// statV2 reads containerd's cgroup v2 Metrics from a cgroup directory.
func statV2(dir string) (*v2stats.Metrics, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("cgroup %s: %w", dir, errdefs.ErrNotFound)
	}
	m := &v2stats.Metrics{Pids: &v2stats.PidsStat{}, CPU: &v2stats.CPUStat{}, Memory: &v2stats.MemoryStat{}, MemoryEvents: &v2stats.MemoryEvents{}}
	m.Pids.Current, _ = readUint(dir, "pids.current")
	m.Pids.Limit, _ = readUint(dir, "pids.max")
	cpu := readKV(dir, "cpu.stat")
	m.CPU.UsageUsec, m.CPU.UserUsec, m.CPU.SystemUsec = cpu["usage_usec"], cpu["user_usec"], cpu["system_usec"]
	m.CPU.NrPeriods, m.CPU.NrThrottled, m.CPU.ThrottledUsec = cpu["nr_periods"], cpu["nr_throttled"], cpu["throttled_usec"]
	mem := readKV(dir, "memory.stat")
	ms := m.Memory
	ms.Anon, ms.File, ms.KernelStack, ms.Slab, ms.Sock, ms.Shmem = mem["anon"], mem["file"], mem["kernel_stack"], mem["slab"], mem["sock"], mem["shmem"]
	ms.FileMapped, ms.FileDirty, ms.FileWriteback, ms.AnonThp = mem["file_mapped"], mem["file_dirty"], mem["file_writeback"], mem["anon_thp"]
	ms.InactiveAnon, ms.ActiveAnon, ms.InactiveFile, ms.ActiveFile, ms.Unevictable = mem["inactive_anon"], mem["active_anon"], mem["inactive_file"], mem["active_file"], mem["unevictable"]
	ms.SlabReclaimable, ms.SlabUnreclaimable, ms.Pgfault, ms.Pgmajfault = mem["slab_reclaimable"], mem["slab_unreclaimable"], mem["pgfault"], mem["pgmajfault"]
	ms.Usage, _ = readUint(dir, "memory.current")
	ms.UsageLimit, _ = readUint(dir, "memory.max")
	ms.SwapUsage, _ = readUint(dir, "memory.swap.current")
	ms.SwapLimit, _ = readUint(dir, "memory.swap.max")
	ms.MaxUsage, _ = readUint(dir, "memory.peak")
	ev := readKV(dir, "memory.events")
	m.MemoryEvents.Low, m.MemoryEvents.High, m.MemoryEvents.Max = ev["low"], ev["high"], ev["max"]
	m.MemoryEvents.Oom, m.MemoryEvents.OomKill, m.MemoryEvents.OomGroupKill = ev["oom"], ev["oom_kill"], ev["oom_group_kill"]
	return m, nil
}

func metricsV2(cgroupsPath string) (*anypb.Any, error) {
	if !cgroupV2() {
		return nil, fmt.Errorf("stats: the guest has cgroup v1, only v2 is read: %w", errdefs.ErrNotImplemented)
	}
	m, err := statV2(filepath.Join(cgroupRoot, cgroupsPath))
	if err != nil {
		return nil, err
	}
	return typeurl.MarshalAnyToProto(m)
}

// oomPoll is how often memory.events is read for new OOM kills.
var oomPoll = time.Second

// watchOOMv2 sends on out once per new oom_kill in the cgroup until ctx
// ends or the cgroup goes.
func watchOOMv2(ctx context.Context, cgroupsPath string, out chan<- struct{}) {
	if !cgroupV2() {
		return
	}
	dir := filepath.Join(cgroupRoot, cgroupsPath)
	last := readKV(dir, "memory.events")["oom_kill"]
	go func() {
		tk := time.NewTicker(oomPoll)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			ev := readKV(dir, "memory.events")
			if ev == nil {
				return // the cgroup is gone
			}
			for ; last < ev["oom_kill"]; last++ {
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
}
