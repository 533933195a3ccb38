package cgroups

import (
	"context"
	"errors"
	"fmt"
	"testing"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// fixedCgroup returns canned metrics.
type fixedCgroup struct {
	m   proto.Message
	err error
}

func (f *fixedCgroup) Path() string { return "/fixed" }
func (f *fixedCgroup) Metrics() (*anypb.Any, error) {
	if f.err != nil {
		return nil, f.err
	}
	return typeurl.MarshalAnyToProto(f.m)
}
func (f *fixedCgroup) Stats() (*Stats, error)             { return nil, errdefs.ErrNotImplemented }
func (f *fixedCgroup) Update(*specs.LinuxResources) error { return errdefs.ErrNotImplemented }
func (f *fixedCgroup) AddProc(int) error                  { return errdefs.ErrNotImplemented }
func (f *fixedCgroup) OOMEvents(context.Context) (<-chan struct{}, error) {
	return nil, errdefs.ErrNotImplemented
}
func (f *fixedCgroup) OnOOM(context.Context, func()) error { return errdefs.ErrNotImplemented }

func decode(t *testing.T, a *anypb.Any) any {
	t.Helper()
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSumZero(t *testing.T) {
	a, err := Sum(nil)
	if err != nil {
		t.Fatal(err)
	}
	unified, _ := Mode()
	switch m := decode(t, a).(type) {
	case *v1stats.Metrics:
		if unified || a.GetTypeUrl() != MetricsV1TypeURL {
			t.Fatalf("v1 metrics (%s) on a unified host", a.GetTypeUrl())
		}
		if m.GetCPU().GetUsage() == nil || m.GetMemory().GetUsage() == nil || m.GetPids() == nil || m.GetCPU().GetUsage().GetTotal() != 0 {
			t.Errorf("zero v1 metrics not well formed: %v", m)
		}
	case *v2stats.Metrics:
		if !unified || a.GetTypeUrl() != MetricsV2TypeURL {
			t.Fatalf("v2 metrics (%s) on a v1 host", a.GetTypeUrl())
		}
		if m.GetCPU() == nil || m.GetMemory() == nil || m.GetPids() == nil {
			t.Errorf("zero v2 metrics not well formed: %v", m)
		}
	default:
		t.Fatalf("decoded %T", m)
	}
}

func TestSumOne(t *testing.T) {
	h := fakeV2(t, "/c", nil)
	cg, err := h.load("/c")
	if err != nil {
		t.Fatal(err)
	}
	direct, err := cg.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Sum([]Cgroup{cg})
	if err != nil {
		t.Fatal(err)
	}
	if sum.GetTypeUrl() != MetricsV2TypeURL {
		t.Fatalf("type url %q", sum.GetTypeUrl())
	}
	if !proto.Equal(decode(t, direct).(proto.Message), decode(t, sum).(proto.Message)) {
		t.Error("sum of one cgroup differs from its metrics")
	}

	h1 := fakeV1(t, "/c", nil)
	cg1, err := h1.load("/c")
	if err != nil {
		t.Fatal(err)
	}
	direct, _ = cg1.Metrics()
	sum, err = Sum([]Cgroup{cg1})
	if err != nil {
		t.Fatal(err)
	}
	if sum.GetTypeUrl() != MetricsV1TypeURL || !proto.Equal(decode(t, direct).(proto.Message), decode(t, sum).(proto.Message)) {
		t.Error("v1 sum of one cgroup differs from its metrics")
	}
}

const v1Unlimited = 9223372036854771712

func TestSumTwoV1(t *testing.T) {
	a := &v1stats.Metrics{
		CPU: &v1stats.CPUStat{Usage: &v1stats.CPUUsage{Total: 100, User: 60, Kernel: 40, PerCPU: []uint64{50, 50}}, Throttling: &v1stats.Throttle{Periods: 3}},
		Memory: &v1stats.MemoryStat{
			TotalRSS: 10, TotalInactiveFile: 1,
			Usage: &v1stats.MemoryEntry{Usage: 100, Limit: 1000, Max: 150},
			Swap:  &v1stats.MemoryEntry{Usage: 100, Limit: v1Unlimited},
		},
		Pids:             &v1stats.PidsStat{Current: 2, Limit: 10},
		MemoryOomControl: &v1stats.MemoryOomControl{OomKill: 1, UnderOom: 0},
		Hugetlb:          []*v1stats.HugetlbStat{{Pagesize: "2MB", Usage: 5}},
		Blkio: &v1stats.BlkIOStat{IoServiceBytesRecursive: []*v1stats.BlkIOEntry{
			{Op: "Read", Major: 8, Minor: 0, Value: 100},
			{Op: "Write", Major: 8, Minor: 0, Value: 7},
		}},
	}
	b := &v1stats.Metrics{
		CPU: &v1stats.CPUStat{Usage: &v1stats.CPUUsage{Total: 10, User: 6, Kernel: 4, PerCPU: []uint64{1, 2, 7}}, Throttling: &v1stats.Throttle{Periods: 1}},
		Memory: &v1stats.MemoryStat{
			TotalRSS: 5,
			Usage:    &v1stats.MemoryEntry{Usage: 20, Limit: 500, Max: 30},
			Swap:     &v1stats.MemoryEntry{Usage: 20, Limit: 500},
		},
		Pids:             &v1stats.PidsStat{Current: 1, Limit: 0},
		MemoryOomControl: &v1stats.MemoryOomControl{OomKill: 2, UnderOom: 1},
		Hugetlb:          []*v1stats.HugetlbStat{{Pagesize: "2MB", Usage: 1}, {Pagesize: "1GB", Usage: 1}},
		Blkio: &v1stats.BlkIOStat{IoServiceBytesRecursive: []*v1stats.BlkIOEntry{
			{Op: "Read", Major: 8, Minor: 0, Value: 1},
			{Op: "Read", Major: 8, Minor: 16, Value: 9},
		}},
	}
	before := proto.Clone(a)
	any, err := Sum([]Cgroup{&fixedCgroup{m: a}, &fixedCgroup{err: fmt.Errorf("gone: %w", errdefs.ErrNotFound)}, &fixedCgroup{m: b}})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(a, before) {
		t.Error("Sum modified its input")
	}
	want := &v1stats.Metrics{
		CPU: &v1stats.CPUStat{Usage: &v1stats.CPUUsage{Total: 110, User: 66, Kernel: 44, PerCPU: []uint64{51, 52, 7}}, Throttling: &v1stats.Throttle{Periods: 4}},
		Memory: &v1stats.MemoryStat{
			TotalRSS: 15, TotalInactiveFile: 1,
			Usage: &v1stats.MemoryEntry{Usage: 120, Limit: 1500, Max: 180},
			Swap:  &v1stats.MemoryEntry{Usage: 120, Limit: v1Unlimited},
		},
		Pids:             &v1stats.PidsStat{Current: 3, Limit: 0},
		MemoryOomControl: &v1stats.MemoryOomControl{OomKill: 3, UnderOom: 1},
		Hugetlb:          []*v1stats.HugetlbStat{{Pagesize: "2MB", Usage: 6}, {Pagesize: "1GB", Usage: 1}},
		Blkio: &v1stats.BlkIOStat{IoServiceBytesRecursive: []*v1stats.BlkIOEntry{
			{Op: "Read", Major: 8, Minor: 0, Value: 101},
			{Op: "Write", Major: 8, Minor: 0, Value: 7},
			{Op: "Read", Major: 8, Minor: 16, Value: 9},
		}},
	}
	got := decode(t, any).(*v1stats.Metrics)
	if !proto.Equal(got, want) {
		t.Errorf("sum =\n%v\nwant\n%v", got, want)
	}
	s := statsFromV1(got)
	if s.CPUUsageNS != 110 || s.MemoryUsage != 120 || s.MemoryLimit != 1500 || s.OOMKills != 3 || s.Pids != 3 {
		t.Errorf("stats of sum = %+v", s)
	}
}

func TestSumTwoV2(t *testing.T) {
	psi := func(avg float64, total uint64) *v2stats.PSIStats {
		return &v2stats.PSIStats{Some: &v2stats.PSIData{Avg10: avg, Total: total}}
	}
	a := &v2stats.Metrics{
		CPU:          &v2stats.CPUStat{UsageUsec: 5, PSI: psi(1.5, 100)},
		Memory:       &v2stats.MemoryStat{Usage: 100, UsageLimit: 1000, Anon: 10},
		MemoryEvents: &v2stats.MemoryEvents{OomKill: 1},
		Io:           &v2stats.IOStat{Usage: []*v2stats.IOEntry{{Major: 8, Minor: 0, Rbytes: 10}}},
	}
	b := &v2stats.Metrics{
		CPU:          &v2stats.CPUStat{UsageUsec: 7, PSI: psi(0.5, 300)},
		Memory:       &v2stats.MemoryStat{Usage: 50, UsageLimit: ^uint64(0), Anon: 5},
		MemoryEvents: &v2stats.MemoryEvents{OomKill: 1},
		Io:           &v2stats.IOStat{Usage: []*v2stats.IOEntry{{Major: 8, Minor: 0, Rbytes: 5, Wbytes: 1}}},
	}
	any, err := Sum([]Cgroup{&fixedCgroup{m: a}, &fixedCgroup{m: b}})
	if err != nil {
		t.Fatal(err)
	}
	if any.GetTypeUrl() != MetricsV2TypeURL {
		t.Fatalf("type url %q", any.GetTypeUrl())
	}
	want := &v2stats.Metrics{
		CPU:          &v2stats.CPUStat{UsageUsec: 12, PSI: psi(1.5, 300)},
		Memory:       &v2stats.MemoryStat{Usage: 150, UsageLimit: ^uint64(0), Anon: 15},
		MemoryEvents: &v2stats.MemoryEvents{OomKill: 2},
		Io:           &v2stats.IOStat{Usage: []*v2stats.IOEntry{{Major: 8, Minor: 0, Rbytes: 15, Wbytes: 1}}},
	}
	if got := decode(t, any).(*v2stats.Metrics); !proto.Equal(got, want) {
		t.Errorf("sum =\n%v\nwant\n%v", got, want)
	}
}

func TestSumErrors(t *testing.T) {
	boom := errors.New("boom")
	if _, err := Sum([]Cgroup{&fixedCgroup{m: &v1stats.Metrics{}}, &fixedCgroup{err: boom}}); !errors.Is(err, boom) {
		t.Errorf("Sum with failing cgroup = %v", err)
	}
	if _, err := Sum([]Cgroup{&fixedCgroup{m: &v1stats.Metrics{}}, &fixedCgroup{m: &v2stats.Metrics{}}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Sum of v1 and v2 = %v", err)
	}
	if _, err := Sum([]Cgroup{&fixedCgroup{m: &anypb.Any{}}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Sum of foreign metrics = %v", err)
	}
}

func TestMetricsOf(t *testing.T) {
	a, err := MetricsOf(Stats{CPUUsageNS: 30, UserNS: 20, SystemNS: 10, MemoryUsage: 4096, RSS: 2048, Pids: 3})
	if err != nil || a.GetTypeUrl() != MetricsV1TypeURL {
		t.Fatalf("MetricsOf: %v %v", a.GetTypeUrl(), err)
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		t.Fatal(err)
	}
	m := v.(*v1stats.Metrics)
	if got := statsFromV1(m); *got != (Stats{CPUUsageNS: 30, UserNS: 20, SystemNS: 10, MemoryUsage: 4096, WorkingSet: 4096, RSS: 2048, Pids: 3}) {
		t.Errorf("read back %+v", got)
	}
	if m.GetMemory().GetUsage().GetLimit() != unlimited {
		t.Errorf("no limit given: %d", m.GetMemory().GetUsage().GetLimit())
	}
	a, _ = MetricsOf(Stats{MemoryLimit: 1 << 20})
	v, _ = typeurl.UnmarshalAny(a)
	if l := v.(*v1stats.Metrics).GetMemory().GetUsage().GetLimit(); l != 1<<20 {
		t.Errorf("limit %d", l)
	}
}
