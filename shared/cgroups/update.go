package cgroups

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// step is one write of an update: value into an existing control file, or
// run for settings that are not a single file write.
type step struct {
	field string // OCI name of the field, for error messages
	file  string
	value string
	run   func() error
}

// plan is an update resolved against one cgroup: the writes to make, in
// order, and the fields known up front not to be applicable on this version.
type plan struct {
	steps       []step
	unsupported []string
}

func (p *plan) write(field, file, value string) {
	p.steps = append(p.steps, step{field: field, file: file, value: value})
}

func (p *plan) unsupportedField(field string) {
	if !slices.Contains(p.unsupported, field) {
		p.unsupported = append(p.unsupported, field)
	}
}

// apply runs every step, whatever fails, then reports: hard failures first,
// otherwise the fields the host could not take, wrapping ErrNotImplemented.
func (p *plan) apply(cgPath string) error {
	var hard []error
	for _, s := range p.steps {
		var err error
		if s.run != nil {
			err = s.run()
		} else {
			err = writeControl(s.file, s.value)
		}
		switch {
		case err == nil:
		case s.run == nil && notSupported(err):
			p.unsupportedField(s.field)
		default:
			hard = append(hard, fmt.Errorf("%s: %w", s.field, err))
		}
	}
	if len(hard) > 0 {
		err := fmt.Errorf("update cgroup %s: %w", cgPath, errors.Join(hard...))
		if len(p.unsupported) > 0 {
			err = fmt.Errorf("%w (also not supported here: %s)", err, strings.Join(p.unsupported, ", "))
		}
		return err
	}
	if len(p.unsupported) > 0 {
		return fmt.Errorf("cgroup %s: cannot apply %s on this host: %w", cgPath, strings.Join(p.unsupported, ", "), errdefs.ErrNotImplemented)
	}
	return nil
}

var (
	pagesizeRe = regexp.MustCompile(`^[0-9]+[KMGTP]?B$`)
	cpuListRe  = regexp.MustCompile(`^[0-9,\-]*$`)
	unifiedRe  = regexp.MustCompile(`^[a-z][a-z0-9_]*\.[a-z0-9_.]+$`)
	wordRe     = regexp.MustCompile(`^[^\s/\x00]+$`)
)

// validate refuses values that would be written to the wrong file or could
// smuggle extra settings into a control file, before anything is written.
func validate(r *specs.LinuxResources) error {
	var errs []string
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Sprintf(format, args...))
	}
	for _, h := range r.HugepageLimits {
		if !pagesizeRe.MatchString(h.Pagesize) {
			bad("hugepageLimits: invalid page size %q", h.Pagesize)
		}
	}
	if c := r.CPU; c != nil {
		if !cpuListRe.MatchString(c.Cpus) {
			bad("cpu.cpus: invalid list %q", c.Cpus)
		}
		if !cpuListRe.MatchString(c.Mems) {
			bad("cpu.mems: invalid list %q", c.Mems)
		}
	}
	if n := r.Network; n != nil {
		for _, p := range n.Priorities {
			if !wordRe.MatchString(p.Name) {
				bad("network.priorities: invalid interface name %q", p.Name)
			}
		}
	}
	for _, dev := range sortedKeys(r.Rdma) {
		if !wordRe.MatchString(dev) {
			bad("rdma: invalid device name %q", dev)
		}
	}
	for i, d := range r.Devices {
		if d.Type != "" && d.Type != "a" && d.Type != "b" && d.Type != "c" {
			bad("devices[%d]: invalid type %q", i, d.Type)
		}
		if strings.Trim(d.Access, "rwm") != "" {
			bad("devices[%d]: invalid access %q", i, d.Access)
		}
	}
	for _, k := range sortedKeys(r.Unified) {
		v := r.Unified[k]
		if !unifiedRe.MatchString(k) || strings.HasPrefix(k, "cgroup.") {
			bad("unified: invalid key %q", k)
		}
		if strings.ContainsRune(v, 0) {
			bad("unified[%s]: value contains NUL", k)
		}
	}
	if m := r.Memory; m != nil && m.Swap != nil && m.Limit != nil &&
		*m.Swap > 0 && *m.Limit > 0 && *m.Swap < *m.Limit {
		bad("memory.swap (%d) is below memory.limit (%d)", *m.Swap, *m.Limit)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %w", strings.Join(errs, "; "), errdefs.ErrInvalidArgument)
	}
	return nil
}

func itoa(v int64) string  { return strconv.FormatInt(v, 10) }
func utoa(v uint64) string { return strconv.FormatUint(v, 10) }

func boolDigit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// maxOr formats a limit for cgroup v2, where "no limit" is spelled "max".
func maxOr(v int64) string {
	if v < 0 {
		return "max"
	}
	return itoa(v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func rdmaLine(dev string, l specs.LinuxRdma) string {
	s := dev
	if l.HcaHandles != nil {
		s += " hca_handle=" + utoa(uint64(*l.HcaHandles))
	}
	if l.HcaObjects != nil {
		s += " hca_object=" + utoa(uint64(*l.HcaObjects))
	}
	return s
}

func devNum(n *int64) string {
	if n == nil || *n < 0 {
		return "*"
	}
	return itoa(*n)
}

// checkUsage enforces memory.checkBeforeUpdate: refuse a limit below what
// the cgroup already uses.
func checkUsage(m *specs.LinuxMemory, usageFile string) error {
	if m.CheckBeforeUpdate == nil || !*m.CheckBeforeUpdate || m.Limit == nil || *m.Limit <= 0 {
		return nil
	}
	s, err := readControl(usageFile)
	if err != nil {
		return nil // nothing to check against; the write itself will tell
	}
	usage, err := strconv.ParseUint(s, 10, 64)
	if err == nil && uint64(*m.Limit) < usage {
		return fmt.Errorf("memory.limit %d is below current usage %d: %w", *m.Limit, usage, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// planV1 maps r onto the v1 control files; dir returns the cgroup's
// directory in a controller's hierarchy.
func planV1(dir func(controller string) string, r *specs.LinuxResources) (*plan, error) {
	if err := validate(r); err != nil {
		return nil, err
	}
	p := &plan{}
	if m := r.Memory; m != nil {
		md := dir("memory")
		f := func(name string) string { return filepath.Join(md, "memory."+name) }
		if err := checkUsage(m, f("usage_in_bytes")); err != nil {
			return nil, err
		}
		if m.Reservation != nil {
			p.write("memory.reservation", f("soft_limit_in_bytes"), itoa(*m.Reservation))
		}
		limit := func() {
			if m.Limit != nil {
				p.write("memory.limit", f("limit_in_bytes"), itoa(*m.Limit))
			}
		}
		switch {
		case m.Swap == nil:
			limit()
		case !exists(f("memsw.limit_in_bytes")):
			// No swap accounting: a swap limit equal to the memory limit
			// (no swap) or unlimited asks for nothing to enforce.
			limit()
			if *m.Swap != -1 && (m.Limit == nil || *m.Swap != *m.Limit) {
				p.unsupportedField("memory.swap")
			}
		default:
			// memsw.limit must stay >= limit at every step: raise swap
			// first when it grows past the current memory limit.
			swap := func() { p.write("memory.swap", f("memsw.limit_in_bytes"), itoa(*m.Swap)) }
			cur, _ := readControl(f("limit_in_bytes"))
			curLimit, _ := strconv.ParseUint(cur, 10, 64)
			if *m.Swap == -1 || curLimit < uint64(*m.Swap) {
				swap()
				limit()
			} else {
				limit()
				swap()
			}
		}
		if m.Kernel != nil { //nolint:staticcheck // deprecated in the spec, still honoured where the kernel has it
			p.write("memory.kernel", f("kmem.limit_in_bytes"), itoa(*m.Kernel)) //nolint:staticcheck
		}
		if m.KernelTCP != nil {
			p.write("memory.kernelTCP", f("kmem.tcp.limit_in_bytes"), itoa(*m.KernelTCP))
		}
		if m.Swappiness != nil {
			p.write("memory.swappiness", f("swappiness"), utoa(*m.Swappiness))
		}
		if m.DisableOOMKiller != nil {
			p.write("memory.disableOOMKiller", f("oom_control"), boolDigit(*m.DisableOOMKiller))
		}
		if m.UseHierarchy != nil {
			p.write("memory.useHierarchy", f("use_hierarchy"), boolDigit(*m.UseHierarchy))
		}
	}
	if c := r.CPU; c != nil {
		cd := dir("cpu")
		f := func(name string) string { return filepath.Join(cd, "cpu."+name) }
		if c.RealtimePeriod != nil {
			p.write("cpu.realtimePeriod", f("rt_period_us"), utoa(*c.RealtimePeriod))
		}
		if c.RealtimeRuntime != nil {
			p.write("cpu.realtimeRuntime", f("rt_runtime_us"), itoa(*c.RealtimeRuntime))
		}
		if c.Shares != nil && *c.Shares != 0 {
			p.write("cpu.shares", f("shares"), utoa(*c.Shares))
		}
		if c.Period != nil && *c.Period != 0 {
			p.write("cpu.period", f("cfs_period_us"), utoa(*c.Period))
		}
		if c.Quota != nil && *c.Quota != 0 {
			p.write("cpu.quota", f("cfs_quota_us"), itoa(*c.Quota))
		}
		if c.Burst != nil {
			p.write("cpu.burst", f("cfs_burst_us"), utoa(*c.Burst))
		}
		if c.Idle != nil {
			p.write("cpu.idle", f("idle"), itoa(*c.Idle))
		}
		if c.Cpus != "" {
			p.write("cpu.cpus", filepath.Join(dir("cpuset"), "cpuset.cpus"), c.Cpus)
		}
		if c.Mems != "" {
			p.write("cpu.mems", filepath.Join(dir("cpuset"), "cpuset.mems"), c.Mems)
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		v := "max"
		if *r.Pids.Limit > 0 {
			v = itoa(*r.Pids.Limit)
		}
		p.write("pids.limit", filepath.Join(dir("pids"), "pids.max"), v)
	}
	if b := r.BlockIO; b != nil {
		bd := dir("blkio")
		f := func(name string) string { return filepath.Join(bd, "blkio."+name) }
		// Kernels without CFQ only have the BFQ weight files.
		weight, weightDev := f("weight"), f("weight_device")
		if !exists(weight) && exists(f("bfq.weight")) {
			weight, weightDev = f("bfq.weight"), f("bfq.weight_device")
		}
		if b.Weight != nil {
			p.write("blockIO.weight", weight, utoa(uint64(*b.Weight)))
		}
		if b.LeafWeight != nil {
			p.write("blockIO.leafWeight", f("leaf_weight"), utoa(uint64(*b.LeafWeight)))
		}
		for _, d := range b.WeightDevice {
			if d.Weight != nil {
				p.write("blockIO.weightDevice", weightDev, fmt.Sprintf("%d:%d %d", d.Major, d.Minor, *d.Weight))
			}
			if d.LeafWeight != nil {
				p.write("blockIO.weightDevice.leafWeight", f("leaf_weight_device"), fmt.Sprintf("%d:%d %d", d.Major, d.Minor, *d.LeafWeight))
			}
		}
		for _, t := range []struct {
			field, file string
			devs        []specs.LinuxThrottleDevice
		}{
			{"blockIO.throttleReadBpsDevice", "throttle.read_bps_device", b.ThrottleReadBpsDevice},
			{"blockIO.throttleWriteBpsDevice", "throttle.write_bps_device", b.ThrottleWriteBpsDevice},
			{"blockIO.throttleReadIOPSDevice", "throttle.read_iops_device", b.ThrottleReadIOPSDevice},
			{"blockIO.throttleWriteIOPSDevice", "throttle.write_iops_device", b.ThrottleWriteIOPSDevice},
		} {
			for _, d := range t.devs {
				p.write(t.field, f(t.file), fmt.Sprintf("%d:%d %d", d.Major, d.Minor, d.Rate))
			}
		}
	}
	for _, h := range r.HugepageLimits {
		p.write("hugepageLimits["+h.Pagesize+"]", filepath.Join(dir("hugetlb"), "hugetlb."+h.Pagesize+".limit_in_bytes"), utoa(h.Limit))
	}
	if n := r.Network; n != nil {
		if n.ClassID != nil {
			p.write("network.classID", filepath.Join(dir("net_cls"), "net_cls.classid"), utoa(uint64(*n.ClassID)))
		}
		for _, prio := range n.Priorities {
			p.write("network.priorities", filepath.Join(dir("net_prio"), "net_prio.ifpriomap"), fmt.Sprintf("%s %d", prio.Name, prio.Priority))
		}
	}
	for _, dev := range sortedKeys(r.Rdma) {
		p.write("rdma["+dev+"]", filepath.Join(dir("rdma"), "rdma.max"), rdmaLine(dev, r.Rdma[dev]))
	}
	for _, d := range r.Devices {
		file := "devices.deny"
		if d.Allow {
			file = "devices.allow"
		}
		typ := d.Type
		if typ == "" {
			typ = "a"
		}
		access := d.Access
		if access == "" {
			access = "rwm"
		}
		p.write("devices", filepath.Join(dir("devices"), file), fmt.Sprintf("%s %s:%s %s", typ, devNum(d.Major), devNum(d.Minor), access))
	}
	for _, k := range sortedKeys(r.Unified) {
		p.unsupportedField("unified[" + k + "]")
	}
	return p, nil
}

// planV2 maps r onto the unified hierarchy's control files in dir; devices
// installs the device rules (an eBPF program on v2).
func planV2(dir string, r *specs.LinuxResources, devices func([]specs.LinuxDeviceCgroup) error) (*plan, error) {
	if err := validate(r); err != nil {
		return nil, err
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	p := &plan{}
	if m := r.Memory; m != nil {
		if err := checkUsage(m, f("memory.current")); err != nil {
			return nil, err
		}
		if m.Limit != nil {
			p.write("memory.limit", f("memory.max"), maxOr(*m.Limit))
		}
		if m.Swap != nil && *m.Swap != 0 {
			// OCI swap is memory+swap; v2 limits swap alone.
			v, err := swapV2(*m.Swap, m.Limit, f("memory.max"))
			if err != nil {
				return nil, err
			}
			if exists(f("memory.swap.max")) {
				p.write("memory.swap", f("memory.swap.max"), v)
			} else if v != "0" && v != "max" {
				p.unsupportedField("memory.swap")
			}
		}
		if m.Reservation != nil {
			p.write("memory.reservation", f("memory.low"), maxOr(*m.Reservation))
		}
		if m.Kernel != nil { //nolint:staticcheck // deprecated in the spec
			p.unsupportedField("memory.kernel")
		}
		if m.KernelTCP != nil {
			p.unsupportedField("memory.kernelTCP")
		}
		if m.Swappiness != nil {
			p.unsupportedField("memory.swappiness")
		}
		if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
			p.unsupportedField("memory.disableOOMKiller")
		}
		if m.UseHierarchy != nil && !*m.UseHierarchy {
			p.unsupportedField("memory.useHierarchy")
		}
	}
	if c := r.CPU; c != nil {
		if c.Shares != nil && *c.Shares != 0 {
			p.write("cpu.shares", f("cpu.weight"), utoa(cgroup2.ConvertCPUSharesToCgroupV2Value(*c.Shares)))
		}
		quotaSet := c.Quota != nil && *c.Quota != 0
		periodSet := c.Period != nil && *c.Period != 0
		if quotaSet || periodSet {
			quota := ""
			switch {
			case quotaSet && *c.Quota < 0:
				quota = "max"
			case quotaSet:
				quota = itoa(*c.Quota)
			default:
				cur, _ := readControl(f("cpu.max"))
				quota, _, _ = strings.Cut(cur, " ")
				if quota == "" {
					quota = "max"
				}
			}
			v := quota
			if periodSet {
				v += " " + utoa(*c.Period)
			}
			field := "cpu.quota"
			if !quotaSet {
				field = "cpu.period"
			}
			p.write(field, f("cpu.max"), v)
		}
		if c.Burst != nil {
			p.write("cpu.burst", f("cpu.max.burst"), utoa(*c.Burst))
		}
		if c.Idle != nil {
			p.write("cpu.idle", f("cpu.idle"), itoa(*c.Idle))
		}
		if c.RealtimePeriod != nil {
			p.unsupportedField("cpu.realtimePeriod")
		}
		if c.RealtimeRuntime != nil {
			p.unsupportedField("cpu.realtimeRuntime")
		}
		if c.Cpus != "" {
			p.write("cpu.cpus", f("cpuset.cpus"), c.Cpus)
		}
		if c.Mems != "" {
			p.write("cpu.mems", f("cpuset.mems"), c.Mems)
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		v := "max"
		if *r.Pids.Limit > 0 {
			v = itoa(*r.Pids.Limit)
		}
		p.write("pids.limit", f("pids.max"), v)
	}
	if b := r.BlockIO; b != nil {
		// io.bfq.weight takes the v1 scale (1-1000); io.weight is 1-10000.
		weightFile, conv := f("io.bfq.weight"), func(w uint16) uint64 { return uint64(w) }
		if !exists(weightFile) {
			weightFile, conv = f("io.weight"), func(w uint16) uint64 {
				if w < 10 {
					w = 10
				}
				return 1 + (uint64(w)-10)*9999/990
			}
		}
		if b.Weight != nil {
			p.write("blockIO.weight", weightFile, utoa(conv(*b.Weight)))
		}
		if b.LeafWeight != nil {
			p.unsupportedField("blockIO.leafWeight")
		}
		for _, d := range b.WeightDevice {
			if d.Weight != nil {
				p.write("blockIO.weightDevice", weightFile, fmt.Sprintf("%d:%d %d", d.Major, d.Minor, conv(*d.Weight)))
			}
			if d.LeafWeight != nil {
				p.unsupportedField("blockIO.weightDevice.leafWeight")
			}
		}
		for _, t := range []struct {
			field, key string
			devs       []specs.LinuxThrottleDevice
		}{
			{"blockIO.throttleReadBpsDevice", "rbps", b.ThrottleReadBpsDevice},
			{"blockIO.throttleWriteBpsDevice", "wbps", b.ThrottleWriteBpsDevice},
			{"blockIO.throttleReadIOPSDevice", "riops", b.ThrottleReadIOPSDevice},
			{"blockIO.throttleWriteIOPSDevice", "wiops", b.ThrottleWriteIOPSDevice},
		} {
			for _, d := range t.devs {
				p.write(t.field, f("io.max"), fmt.Sprintf("%d:%d %s=%d", d.Major, d.Minor, t.key, d.Rate))
			}
		}
	}
	for _, h := range r.HugepageLimits {
		p.write("hugepageLimits["+h.Pagesize+"]", f("hugetlb."+h.Pagesize+".max"), utoa(h.Limit))
	}
	if n := r.Network; n != nil {
		if n.ClassID != nil {
			p.unsupportedField("network.classID")
		}
		if len(n.Priorities) > 0 {
			p.unsupportedField("network.priorities")
		}
	}
	for _, dev := range sortedKeys(r.Rdma) {
		p.write("rdma["+dev+"]", f("rdma.max"), rdmaLine(dev, r.Rdma[dev]))
	}
	if len(r.Devices) > 0 {
		devs := r.Devices
		p.steps = append(p.steps, step{field: "devices", run: func() error { return devices(devs) }})
	}
	// Unified keys come last so that they override the converted fields,
	// as the runtime spec asks.
	for _, k := range sortedKeys(r.Unified) {
		p.write("unified["+k+"]", f(k), r.Unified[k])
	}
	return p, nil
}

// swapV2 converts an OCI memory+swap limit into memory.swap.max.
func swapV2(swap int64, limit *int64, memoryMax string) (string, error) {
	if swap < 0 {
		return "max", nil
	}
	var mem int64
	if limit != nil {
		mem = *limit
	} else {
		cur, err := readControl(memoryMax)
		if err != nil || cur == "max" {
			return "", fmt.Errorf("memory.swap %d needs a memory limit to be set: %w", swap, errdefs.ErrInvalidArgument)
		}
		if mem, err = strconv.ParseInt(cur, 10, 64); err != nil {
			return "", fmt.Errorf("read %s: %w", memoryMax, err)
		}
	}
	if mem < 0 {
		return "", fmt.Errorf("memory.swap %d with an unlimited memory limit: %w", swap, errdefs.ErrInvalidArgument)
	}
	if swap < mem {
		return "", fmt.Errorf("memory.swap (%d) is below memory.limit (%d): %w", swap, mem, errdefs.ErrInvalidArgument)
	}
	return itoa(swap - mem), nil
}
