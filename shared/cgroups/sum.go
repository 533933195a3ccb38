package cgroups

import (
	"errors"
	"fmt"
	"math"
	"strings"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Sum adds up the metrics of cgs into one Metrics Any of the same kind
// (v1 or v2), for pod-level metrics built from container cgroups; see
// SumMetrics. A cgroup that has disappeared meanwhile (ErrNotFound) is
// skipped.
func Sum(cgs []Cgroup) (*anypb.Any, error) {
	var ms []*anypb.Any
	for _, cg := range cgs {
		a, err := cg.Metrics()
		if errors.Is(err, errdefs.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		ms = append(ms, a)
	}
	return SumMetrics(ms)
}

// SumMetrics adds up metrics Anys (containerd's cgroup v1 or v2 Metrics, all
// of one kind) into one of the same kind.
//
// Counters and usages are added; per-CPU usage element by element; entries
// keyed by device, page size or interface are matched and added; limits are
// added unless one of them is unlimited, which makes the sum unlimited;
// pressure (PSI) and state flags take the maximum. With none, SumMetrics
// returns zero-valued metrics of the host's version, with the CPU, memory,
// pids and OOM sections present.
func SumMetrics(ms []*anypb.Any) (*anypb.Any, error) {
	var total proto.Message
	for i, a := range ms {
		if a.GetTypeUrl() != MetricsV1TypeURL && a.GetTypeUrl() != MetricsV2TypeURL {
			return nil, fmt.Errorf("metrics %d: unexpected type %q: %w", i, a.GetTypeUrl(), errdefs.ErrInvalidArgument)
		}
		v, err := typeurl.UnmarshalAny(a)
		if err != nil {
			return nil, fmt.Errorf("decode metrics %d: %w", i, err)
		}
		m, ok := v.(proto.Message)
		if !ok {
			return nil, fmt.Errorf("metrics %d decode to %T: %w", i, v, errdefs.ErrInvalidArgument)
		}
		if total == nil {
			total = m
			continue
		}
		if total.ProtoReflect().Descriptor() != m.ProtoReflect().Descriptor() {
			return nil, fmt.Errorf("cannot sum %s with %s: %w", a.GetTypeUrl(),
				total.ProtoReflect().Descriptor().FullName(), errdefs.ErrInvalidArgument)
		}
		mergeMessage(total.ProtoReflect(), m.ProtoReflect(), false)
	}
	if total == nil {
		unified, _ := Mode()
		total = zeroMetrics(unified)
	}
	return typeurl.MarshalAnyToProto(total)
}

func zeroMetrics(v2 bool) proto.Message {
	if v2 {
		return &v2stats.Metrics{
			CPU:          &v2stats.CPUStat{},
			Memory:       &v2stats.MemoryStat{},
			Pids:         &v2stats.PidsStat{},
			MemoryEvents: &v2stats.MemoryEvents{},
		}
	}
	return &v1stats.Metrics{
		CPU: &v1stats.CPUStat{Usage: &v1stats.CPUUsage{}, Throttling: &v1stats.Throttle{}},
		Memory: &v1stats.MemoryStat{
			Usage: &v1stats.MemoryEntry{}, Swap: &v1stats.MemoryEntry{},
			Kernel: &v1stats.MemoryEntry{}, KernelTCP: &v1stats.MemoryEntry{},
		},
		Pids:             &v1stats.PidsStat{},
		MemoryOomControl: &v1stats.MemoryOomControl{},
	}
}

// limitFields are the scalar fields holding limits rather than usage.
var limitFields = map[protoreflect.FullName]bool{
	"io.containerd.cgroups.v1.PidsStat.limit":                       true,
	"io.containerd.cgroups.v1.MemoryEntry.limit":                    true,
	"io.containerd.cgroups.v1.MemoryStat.hierarchical_memory_limit": true,
	"io.containerd.cgroups.v1.MemoryStat.hierarchical_swap_limit":   true,
	"io.containerd.cgroups.v2.PidsStat.limit":                       true,
	"io.containerd.cgroups.v2.MemoryStat.usage_limit":               true,
	"io.containerd.cgroups.v2.MemoryStat.swap_limit":                true,
	"io.containerd.cgroups.v2.HugeTlbStat.max":                      true,
}

// limitLists are repeated fields whose entries are all limits.
var limitLists = map[protoreflect.FullName]bool{
	"io.containerd.cgroups.v1.RdmaStat.limit": true,
	"io.containerd.cgroups.v2.RdmaStat.limit": true,
}

// maxFields are states, not amounts: the sum takes the largest.
var maxFields = map[protoreflect.FullName]bool{
	"io.containerd.cgroups.v1.MemoryOomControl.oom_kill_disable": true,
	"io.containerd.cgroups.v1.MemoryOomControl.under_oom":        true,
}

// mergeMessage adds src into dst field by field; limits says every scalar
// below is a limit.
func mergeMessage(dst, src protoreflect.Message, limits bool) {
	desc := src.Descriptor()
	// Pressure averages and stall totals do not add across cgroups.
	maxAll := strings.HasSuffix(string(desc.FullName()), ".PSIData")
	fields := desc.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			// none in the metrics messages
		case fd.IsList():
			sl := src.Get(fd).List()
			if sl.Len() == 0 {
				continue
			}
			dl := dst.Mutable(fd).List()
			if fd.Message() != nil {
				mergeEntries(dl, sl, limits || limitLists[fd.FullName()])
			} else {
				for j := 0; j < sl.Len(); j++ {
					if j < dl.Len() {
						dl.Set(j, addScalar(fd, dl.Get(j), sl.Get(j)))
					} else {
						dl.Append(sl.Get(j))
					}
				}
			}
		case fd.Message() != nil:
			if !src.Has(fd) {
				continue
			}
			if !dst.Has(fd) {
				dst.Set(fd, protoreflect.ValueOfMessage(proto.Clone(src.Get(fd).Message().Interface()).ProtoReflect()))
				continue
			}
			mergeMessage(dst.Mutable(fd).Message(), src.Get(fd).Message(), limits)
		default:
			a, b := dst.Get(fd), src.Get(fd)
			switch {
			case isKeyField(fd):
				// equal by construction (matched entries) or absent
			case maxAll || maxFields[fd.FullName()]:
				dst.Set(fd, maxScalar(fd, a, b))
			case limits || limitFields[fd.FullName()]:
				dst.Set(fd, addLimit(fd, a, b))
			default:
				dst.Set(fd, addScalar(fd, a, b))
			}
		}
	}
}

// mergeEntries adds each entry of src to the dst entry with the same key
// (device, page size, interface...), appending the ones dst lacks.
func mergeEntries(dst, src protoreflect.List, limits bool) {
	index := make(map[string]int, dst.Len())
	for i := 0; i < dst.Len(); i++ {
		index[entryKey(dst.Get(i).Message())] = i
	}
	for i := 0; i < src.Len(); i++ {
		e := src.Get(i).Message()
		k := entryKey(e)
		if j, ok := index[k]; ok {
			mergeMessage(dst.Get(j).Message(), e, limits)
			continue
		}
		index[k] = dst.Len()
		dst.Append(protoreflect.ValueOfMessage(proto.Clone(e.Interface()).ProtoReflect()))
	}
}

// isKeyField reports whether fd identifies a list entry rather than
// measuring something: strings (device, op, pagesize, name) and device
// numbers.
func isKeyField(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.StringKind || fd.Name() == "major" || fd.Name() == "minor"
}

func entryKey(m protoreflect.Message) string {
	var b strings.Builder
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); isKeyField(fd) && !fd.IsList() {
			fmt.Fprintf(&b, "%s=%v;", fd.Name(), m.Get(fd).Interface())
		}
	}
	return b.String()
}

func addScalar(fd protoreflect.FieldDescriptor, a, b protoreflect.Value) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		x, y := a.Uint(), b.Uint()
		if x > math.MaxUint64-y {
			return protoreflect.ValueOfUint64(math.MaxUint64)
		}
		return protoreflect.ValueOfUint64(x + y)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		s := a.Uint() + b.Uint()
		if s > math.MaxUint32 {
			s = math.MaxUint32
		}
		return protoreflect.ValueOfUint32(uint32(s))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(a.Int() + b.Int())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(a.Int() + b.Int()))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(a.Float() + b.Float())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(a.Float() + b.Float()))
	default:
		return a
	}
}

func maxScalar(fd protoreflect.FieldDescriptor, a, b protoreflect.Value) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind, protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		if b.Uint() > a.Uint() {
			return b
		}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		if b.Int() > a.Int() {
			return b
		}
	case protoreflect.DoubleKind, protoreflect.FloatKind:
		if b.Float() > a.Float() {
			return b
		}
	}
	return a
}

// addLimit adds two limits; 0 (unknown) or a huge value (unlimited) on
// either side makes the result unlimited.
func addLimit(fd protoreflect.FieldDescriptor, a, b protoreflect.Value) protoreflect.Value {
	isUnlimited := func(v protoreflect.Value) bool {
		switch fd.Kind() {
		case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
			return v.Uint() == 0 || v.Uint() == math.MaxUint32
		case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
			return v.Uint() == 0 || v.Uint() >= unlimited
		}
		return false
	}
	switch {
	case isUnlimited(a):
		return a
	case isUnlimited(b):
		return b
	}
	return addScalar(fd, a, b)
}
