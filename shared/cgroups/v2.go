package cgroups

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup2"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
)

type v2Cgroup struct {
	path string
	dir  string
	mgr  *cgroup2.Manager
}

var _ Cgroup = (*v2Cgroup)(nil)

func (h *host) loadV2(p string) (Cgroup, error) {
	dir := filepath.Join(h.v2Root, p)
	if !isDir(dir) {
		return nil, fmt.Errorf("cgroup %s: %w", p, errdefs.ErrNotFound)
	}
	mgr, err := cgroup2.Load(p, cgroup2.WithMountpoint(h.v2Root))
	if err != nil {
		return nil, fmt.Errorf("load cgroup %s: %w", p, err)
	}
	return &v2Cgroup{path: p, dir: dir, mgr: mgr}, nil
}

// newV2 creates the cgroup and enables, in each ancestor, every controller
// the ancestor offers, so that the new cgroup has its control files.
// cgroup2.NewManager only enables the controllers named by the resources it
// is given, all in one write that fails as a whole.
func (h *host) newV2(p string) (Cgroup, error) {
	dir := filepath.Join(h.v2Root, p)
	created := firstMissing(h.v2Root, p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", p, err)
	}
	enableControllers(h.v2Root, p)
	cg, err := h.loadV2(p)
	if err != nil && created != "" {
		_ = removeTree(created)
	}
	return cg, err
}

// enableControllers writes "+name" into cgroup.subtree_control of the root
// and of each ancestor of p, one controller at a time, so that one refused
// controller (an ancestor with processes, a threaded subtree) does not keep
// the others off. Failures are only logged: the cgroup is usable without
// them, and Update reports what it then cannot apply.
func enableControllers(root, p string) {
	dir := root
	comps := splitPath(p)
	for i := 0; i < len(comps); i++ {
		available, err := readControl(filepath.Join(dir, "cgroup.controllers"))
		if err != nil {
			return
		}
		enabled, _ := readControl(filepath.Join(dir, "cgroup.subtree_control"))
		on := strings.Fields(enabled)
		for _, c := range strings.Fields(available) {
			if slices.Contains(on, c) {
				continue
			}
			if err := writeControl(filepath.Join(dir, "cgroup.subtree_control"), "+"+c); err != nil {
				log.L.WithError(err).WithField("cgroup", dir).Debugf("cannot enable controller %s", c)
			}
		}
		dir = filepath.Join(dir, comps[i])
	}
}

func (c *v2Cgroup) Path() string { return c.path }

func (c *v2Cgroup) stat() (*v2stats.Metrics, error) {
	if !isDir(c.dir) {
		return nil, fmt.Errorf("cgroup %s: %w", c.path, errdefs.ErrNotFound)
	}
	m, err := c.mgr.Stat()
	if err != nil {
		if !isDir(c.dir) {
			return nil, fmt.Errorf("cgroup %s: %w", c.path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("read cgroup %s: %w", c.path, err)
	}
	return m, nil
}

func (c *v2Cgroup) Metrics() (*anypb.Any, error) {
	m, err := c.stat()
	if err != nil {
		return nil, err
	}
	return typeurl.MarshalAnyToProto(m)
}

func (c *v2Cgroup) Stats() (*Stats, error) {
	m, err := c.stat()
	if err != nil {
		return nil, err
	}
	return statsFromV2(m), nil
}

func statsFromV2(m *v2stats.Metrics) *Stats {
	var s Stats
	if cpu := m.GetCPU(); cpu != nil {
		s.CPUUsageNS = cpu.GetUsageUsec() * 1000
		s.UserNS = cpu.GetUserUsec() * 1000
		s.SystemNS = cpu.GetSystemUsec() * 1000
	}
	if mem := m.GetMemory(); mem != nil {
		s.MemoryUsage = mem.GetUsage()
		s.MemoryLimit = limitOrZero(mem.GetUsageLimit())
		s.WorkingSet = subFloor(s.MemoryUsage, mem.GetInactiveFile())
		s.RSS = mem.GetAnon()
	}
	s.Pids = m.GetPids().GetCurrent()
	s.OOMKills = m.GetMemoryEvents().GetOomKill()
	return &s
}

func (c *v2Cgroup) AddProc(pid int) error {
	if pid <= 0 || pid > math.MaxInt32 {
		return fmt.Errorf("invalid pid %d: %w", pid, errdefs.ErrInvalidArgument)
	}
	if err := c.mgr.AddProc(uint64(pid)); err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, c.path, err)
	}
	return nil
}

func (c *v2Cgroup) Update(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	if !isDir(c.dir) {
		return fmt.Errorf("cgroup %s: %w", c.path, errdefs.ErrNotFound)
	}
	devices := func(d []specs.LinuxDeviceCgroup) error {
		return c.mgr.Update(&cgroup2.Resources{Devices: d})
	}
	plan, err := planV2(c.dir, r, devices)
	if err != nil {
		return fmt.Errorf("update cgroup %s: %w", c.path, err)
	}
	if err := plan.apply(c.path); err != nil {
		if !isDir(c.dir) {
			return fmt.Errorf("cgroup %s: %w", c.path, errdefs.ErrNotFound)
		}
		return err
	}
	return nil
}

func (c *v2Cgroup) OOMEvents(ctx context.Context) (<-chan struct{}, error) {
	return oomChannel(func(kill, end func()) error { return oomEventsV2(ctx, c.path, c.dir, kill, end) })
}

func (c *v2Cgroup) OnOOM(ctx context.Context, kill func()) error {
	return oomEventsV2(ctx, c.path, c.dir, kill, nil)
}
