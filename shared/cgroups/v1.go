package cgroups

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"

	"github.com/containerd/cgroups/v3/cgroup1"
	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/moby/sys/userns"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
)

// unlimited is the threshold above which a limit read from a control file
// means "no limit" (v1 reports PAGE_COUNTER_MAX pages, v2 "max").
const unlimited = uint64(1) << 62

// v1Subsystems is the controller list handed to cgroup1, built once per host.
type v1Subsystems []cgroup1.Subsystem

type pather interface {
	Path(path string) string
}

// v1Hierarchy returns the controllers mounted below h.v1Root. Unlike
// cgroup1.Default it configures the memory controller to skip the swap and
// kernel-memory files this kernel does not have, so that Stat does not fail
// on hosts without swap accounting or on kernels that dropped kmem.
func (h *host) v1Hierarchy() cgroup1.Hierarchy {
	h.v1Once.Do(func() { h.v1Subs = buildV1Subsystems(h.v1Root) })
	subs := h.v1Subs
	return func() ([]cgroup1.Subsystem, error) { return subs, nil }
}

func buildV1Subsystems(root string) v1Subsystems {
	var ignored []string
	for _, module := range []string{"memsw", "kmem", "kmem.tcp"} {
		if !exists(filepath.Join(root, "memory", "memory."+module+".usage_in_bytes")) {
			ignored = append(ignored, module)
		}
	}
	candidates := []cgroup1.Subsystem{
		cgroup1.NewNamed(root, "systemd"),
		cgroup1.NewFreezer(root),
		cgroup1.NewPids(root),
		cgroup1.NewNetCls(root),
		cgroup1.NewNetPrio(root),
		cgroup1.NewPerfEvent(root),
		cgroup1.NewCpuset(root),
		cgroup1.NewCpu(root),
		cgroup1.NewCpuacct(root),
		cgroup1.NewMemory(root, cgroup1.IgnoreModules(ignored...)),
		cgroup1.NewBlkio(root),
		cgroup1.NewRdma(root),
	}
	if !userns.RunningInUserNS() {
		candidates = append(candidates, cgroup1.NewDevices(root))
	}
	if ht, err := cgroup1.NewHugetlb(root); err == nil {
		candidates = append(candidates, ht)
	}
	var subs v1Subsystems
	for _, s := range candidates {
		if isDir(filepath.Join(root, string(s.Name()))) {
			subs = append(subs, s)
		}
	}
	return subs
}

type v1Cgroup struct {
	h    *host
	path string
	cg   cgroup1.Cgroup
}

var _ Cgroup = (*v1Cgroup)(nil)

func (h *host) loadV1(p string) (Cgroup, error) {
	cg, err := cgroup1.Load(cgroup1.StaticPath(p), cgroup1.WithHierarchy(h.v1Hierarchy()))
	if err != nil {
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return nil, fmt.Errorf("cgroup %s: %w", p, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("load cgroup %s: %w", p, err)
	}
	return &v1Cgroup{h: h, path: p, cg: cg}, nil
}

func (h *host) newV1(p string) (Cgroup, error) {
	subs, _ := h.v1Hierarchy()()
	if len(subs) == 0 {
		return nil, fmt.Errorf("create cgroup %s: no v1 controller mounted: %w", p, errdefs.ErrUnavailable)
	}
	// Note the first directory each hierarchy lacks, to undo exactly what
	// this call creates if it fails half way.
	var created []string
	for _, s := range subs {
		if ps, ok := s.(pather); ok {
			if first := firstMissing(ps.Path("/"), p); first != "" {
				created = append(created, first)
			}
		}
	}
	allowAny := func(c *cgroup1.InitConfig) error {
		c.InitCheck = cgroup1.AllowAny
		return nil
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(p), &specs.LinuxResources{}, cgroup1.WithHierarchy(h.v1Hierarchy()), allowAny)
	if err != nil {
		for _, dir := range created {
			_ = removeTree(dir)
		}
		return nil, fmt.Errorf("create cgroup %s: %w", p, err)
	}
	return &v1Cgroup{h: h, path: p, cg: cg}, nil
}

// firstMissing returns the shallowest directory of root+p that does not
// exist yet, or "" when root+p exists.
func firstMissing(root, p string) string {
	dir := root
	for _, comp := range splitPath(p) {
		dir = filepath.Join(dir, comp)
		if !exists(dir) {
			return dir
		}
	}
	return ""
}

func (c *v1Cgroup) Path() string { return c.path }

// dir is the cgroup's directory in the hierarchy of controller.
func (c *v1Cgroup) dir(controller string) string {
	return filepath.Join(c.h.v1Root, controller, c.path)
}

// exists reports whether the cgroup is still present in any hierarchy.
func (c *v1Cgroup) exists() bool {
	for _, s := range c.cg.Subsystems() {
		if ps, ok := s.(pather); ok && exists(ps.Path(c.path)) {
			return true
		}
	}
	return false
}

func (c *v1Cgroup) stat() (*v1stats.Metrics, error) {
	if !c.exists() {
		return nil, fmt.Errorf("cgroup %s: %w", c.path, errdefs.ErrNotFound)
	}
	m, err := c.cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return nil, fmt.Errorf("cgroup %s: %w", c.path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("read cgroup %s: %w", c.path, err)
	}
	return m, nil
}

func (c *v1Cgroup) Metrics() (*anypb.Any, error) {
	m, err := c.stat()
	if err != nil {
		return nil, err
	}
	return typeurl.MarshalAnyToProto(m)
}

func (c *v1Cgroup) Stats() (*Stats, error) {
	m, err := c.stat()
	if err != nil {
		return nil, err
	}
	return statsFromV1(m), nil
}

func statsFromV1(m *v1stats.Metrics) *Stats {
	var s Stats
	if u := m.GetCPU().GetUsage(); u != nil {
		s.CPUUsageNS, s.UserNS, s.SystemNS = u.GetTotal(), u.GetUser(), u.GetKernel()
	}
	if mem := m.GetMemory(); mem != nil {
		s.MemoryUsage = mem.GetUsage().GetUsage()
		s.MemoryLimit = limitOrZero(mem.GetUsage().GetLimit())
		s.WorkingSet = subFloor(s.MemoryUsage, mem.GetTotalInactiveFile())
		s.RSS = mem.GetTotalRSS()
	}
	s.Pids = m.GetPids().GetCurrent()
	s.OOMKills = m.GetMemoryOomControl().GetOomKill()
	return &s
}

func limitOrZero(v uint64) uint64 {
	if v >= unlimited {
		return 0
	}
	return v
}

func subFloor(a, b uint64) uint64 {
	if b >= a {
		return 0
	}
	return a - b
}

func (c *v1Cgroup) AddProc(pid int) error {
	if pid <= 0 || pid > math.MaxInt32 {
		return fmt.Errorf("invalid pid %d: %w", pid, errdefs.ErrInvalidArgument)
	}
	if err := c.cg.AddProc(uint64(pid)); err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, c.path, err)
	}
	return nil
}

func (c *v1Cgroup) Update(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	if !c.exists() {
		return fmt.Errorf("cgroup %s: %w", c.path, errdefs.ErrNotFound)
	}
	plan, err := planV1(c.dir, r)
	if err != nil {
		return fmt.Errorf("update cgroup %s: %w", c.path, err)
	}
	if err := plan.apply(c.path); err != nil {
		if !c.exists() {
			return fmt.Errorf("cgroup %s: %w", c.path, errdefs.ErrNotFound)
		}
		return err
	}
	return nil
}

func (c *v1Cgroup) OOMEvents(ctx context.Context) (<-chan struct{}, error) {
	return oomChannel(func(kill, end func()) error { return c.oomWatch(ctx, kill, end) })
}

func (c *v1Cgroup) OnOOM(ctx context.Context, kill func()) error { return c.oomWatch(ctx, kill, nil) }

func (c *v1Cgroup) oomWatch(ctx context.Context, kill, end func()) error {
	return oomEventsV1(ctx, c.path, filepath.Join(c.h.v1Root, "memory"), c.dir("memory"), kill, end)
}
