package wasmsb

import (
	"math"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
)

// usage is what a container (or a pod, summed) uses.
type usage struct {
	mem   uint64
	limit uint64 // 0: none
	cpu   time.Duration
}

func (u *usage) add(o usage) {
	u.mem += o.mem
	u.cpu += o.cpu
	if o.limit > 0 {
		u.limit += o.limit
	}
}

// noLimit is what cgroup v1 reports for an unlimited memory.limit_in_bytes.
const noLimit = math.MaxInt64 &^ 4095

// metrics is the usage as containerd's cgroup v1 metrics (what CRI's stats
// read: memory usage and CPU usage total), as the runc sandboxer reports.
func (u usage) metrics() (*anypb.Any, error) {
	limit := u.limit
	if limit == 0 {
		limit = noLimit
	}
	cpu := uint64(u.cpu.Nanoseconds())
	m := &v1.Metrics{
		Memory: &v1.MemoryStat{
			RSS:      u.mem,
			TotalRSS: u.mem,
			Usage:    &v1.MemoryEntry{Usage: u.mem, Limit: limit},
		},
		CPU: &v1.CPUStat{Usage: &v1.CPUUsage{Total: cpu, User: cpu}},
	}
	return typeurl.MarshalAnyToProto(m)
}
