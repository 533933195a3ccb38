package cgroups

import (
	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
)

// MetricsOf is s as containerd's cgroup v1 metrics (MetricsV1TypeURL), for
// a container without a host cgroup of its own, whose runtime accounts it
// itself (a wasm module in the daemon, a container in a gVisor sandbox).
// It carries what containerd's CRI reads of a container's metrics: the CPU
// usage (total, user, kernel), the memory usage and RSS, the memory limit
// (0: cgroup v1's unlimited value) and the pids; CRI's working set is the
// usage, as no inactive file pages are counted. CRI decodes v1 metrics
// whatever the host's cgroup version.
func MetricsOf(s Stats) (*anypb.Any, error) {
	limit := s.MemoryLimit
	if limit == 0 {
		limit = unlimited
	}
	m := &v1stats.Metrics{
		CPU: &v1stats.CPUStat{Usage: &v1stats.CPUUsage{Total: s.CPUUsageNS, User: s.UserNS, Kernel: s.SystemNS}},
		Memory: &v1stats.MemoryStat{
			RSS:      s.RSS,
			TotalRSS: s.RSS,
			Usage:    &v1stats.MemoryEntry{Usage: s.MemoryUsage, Limit: limit},
		},
		Pids: &v1stats.PidsStat{Current: s.Pids},
	}
	return typeurl.MarshalAnyToProto(m)
}
