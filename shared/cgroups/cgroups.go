package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cgroupsv3 "github.com/containerd/cgroups/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/magnetar-runtime/magnetar/shared/mount"
)

// Type URLs of the Any returned by [Cgroup.Metrics] and [Sum]: the full
// protobuf names of containerd's cgroup metrics messages, which is what
// typeurl gives them and what containerd's CRI plugin decodes.
const (
	MetricsV1TypeURL = "io.containerd.cgroups.v1.Metrics"
	MetricsV2TypeURL = "io.containerd.cgroups.v2.Metrics"
)

// Cgroup is one cgroup, in every v1 hierarchy or in the unified one.
type Cgroup interface {
	// Path is the resolved cgroupfs path, e.g. "/kubepods/pod1/abcd".
	Path() string
	// Metrics returns containerd-compatible metrics: *cgroup1/stats.Metrics
	// (MetricsV1TypeURL) on v1 and hybrid hosts, *cgroup2/stats.Metrics
	// (MetricsV2TypeURL) on unified hosts.
	Metrics() (*anypb.Any, error)
	// Stats returns a version-independent summary.
	Stats() (*Stats, error)
	// Update applies what the host can of r. Fields it cannot apply are
	// named in an error wrapping errdefs.ErrNotImplemented, returned after
	// every other field has been written. Invalid values are refused with
	// errdefs.ErrInvalidArgument before anything is written.
	Update(r *specs.LinuxResources) error
	// AddProc moves the process pid into the cgroup (all hierarchies on v1).
	AddProc(pid int) error
	// OOMEvents sends one value per OOM kill in the cgroup (8 unread at
	// most: more coalesce). The channel is closed when ctx ends or the
	// cgroup is removed.
	OOMEvents(ctx context.Context) (<-chan struct{}, error)
	// OnOOM calls kill once per OOM kill in the cgroup until ctx ends or
	// the cgroup is removed, on a goroutine kill must not hold; the watch
	// itself holds none (shared/poll).
	OnOOM(ctx context.Context, kill func()) error
}

// Stats is a version-independent summary of a cgroup's usage.
type Stats struct {
	// CPUUsageNS is the total CPU time consumed, in nanoseconds; UserNS and
	// SystemNS split it by mode.
	CPUUsageNS uint64
	UserNS     uint64
	SystemNS   uint64
	// MemoryUsage is the memory charged to the cgroup in bytes (page cache
	// included); MemoryLimit is its limit, 0 when unlimited.
	MemoryUsage uint64
	MemoryLimit uint64
	// WorkingSet is MemoryUsage less inactive file pages, as kubelet and
	// containerd's CRI compute it.
	WorkingSet uint64
	// RSS is anonymous memory (v1 total_rss, v2 anon).
	RSS uint64
	// Pids is the number of tasks in the cgroup.
	Pids uint64
	// OOMKills counts the processes killed by the OOM killer in the cgroup.
	OOMKills uint64
}

// Mode reports how the host mounts cgroups: unified when only cgroup v2 is
// mounted at /sys/fs/cgroup, hybrid when v1 controllers are mounted there
// along with a v2 hierarchy at /sys/fs/cgroup/unified. Both false means
// legacy v1 only (or no cgroups at all).
func Mode() (unified bool, hybrid bool) {
	switch cgroupsv3.Mode() {
	case cgroupsv3.Unified:
		return true, false
	case cgroupsv3.Hybrid:
		return false, true
	default:
		return false, false
	}
}

// Load opens the existing cgroup named by cgroupsPath (see ResolvePath). It
// fails with an error wrapping errdefs.ErrNotFound when the cgroup does not
// exist.
func Load(cgroupsPath string) (Cgroup, error) {
	h, err := currentHost()
	if err != nil {
		return nil, err
	}
	return h.load(cgroupsPath)
}

// MetricsAt is the metrics of the existing cgroup named by cgroupsPath
// (Load, then Metrics): what a pod whose processes all live in one host
// cgroup (a VM, an application kernel) costs the node.
func MetricsAt(cgroupsPath string) (*anypb.Any, error) {
	cg, err := Load(cgroupsPath)
	if err != nil {
		return nil, err
	}
	return cg.Metrics()
}

// PodMetric is MetricsAt as the sandbox metric of pod id (the Sandbox
// API's Metrics), timestamped now.
func PodMetric(id, cgroupsPath string) (*types.Metric, error) {
	a, err := MetricsAt(cgroupsPath)
	if err != nil {
		return nil, err
	}
	return &types.Metric{Timestamp: timestamppb.Now(), ID: id, Data: a}, nil
}

// New creates the cgroup named by cgroupsPath, with its parents, in every
// hierarchy (v1) or in the unified hierarchy with the host's controllers
// enabled down to it (v2), and opens it. An existing cgroup is opened as is.
// Resources are set afterwards with Update.
func New(cgroupsPath string) (Cgroup, error) {
	h, err := currentHost()
	if err != nil {
		return nil, err
	}
	return h.create(cgroupsPath)
}

// Delete removes the cgroup named by cgroupsPath from every mounted hierarchy
// (v1 controllers, named hierarchies, and the unified one), removing empty
// child cgroups first. It is idempotent: a cgroup already gone is not an
// error. A cgroup that still holds processes is left in place and reported
// with an error wrapping errdefs.ErrFailedPrecondition.
func Delete(cgroupsPath string) error {
	h, err := currentHost()
	if err != nil {
		return err
	}
	return h.delete(cgroupsPath)
}

// Destroy ends a cgroup that is its owner's alone (a container's, a
// pod's): it SIGKILLs every process left in it or below it, then removes
// it from every hierarchy, retrying until wait has passed while the killed
// processes leave. A cgroup already gone is not an error. It is what a
// sandboxer does when the runtime that made the cgroup cannot clean it up
// any more (a `runc create` killed half-way leaves its init process in the
// container's cgroup, and no state for `runc delete` to find).
func Destroy(cgroupsPath string, wait time.Duration) error {
	var err error
	for deadline := time.Now().Add(wait); ; time.Sleep(20 * time.Millisecond) {
		var pids []int
		if pids, err = Procs(cgroupsPath); err != nil {
			return err
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		if err = Delete(cgroupsPath); err == nil || errdefs.IsNotFound(err) {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}

// Procs lists the processes in the cgroup named by cgroupsPath and in its
// descendants, in every mounted hierarchy: each pid once, ascending. A
// cgroup that does not exist has none. It is how a sandboxer finds every
// process of a pod's cgroup to end, whoever started them.
func Procs(cgroupsPath string) ([]int, error) {
	h, err := currentHost()
	if err != nil {
		return nil, err
	}
	return h.procs(cgroupsPath)
}

func (h *host) procs(cgroupsPath string) ([]int, error) {
	p, err := ResolvePath(cgroupsPath)
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	for _, root := range h.hierarchyRoots() {
		err := filepath.WalkDir(filepath.Join(root, p), func(dir string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // gone meanwhile, or never there
				}
				return err
			}
			if !d.IsDir() {
				return nil
			}
			procs, err := readControl(filepath.Join(dir, "cgroup.procs"))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			for _, f := range strings.Fields(procs) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
					seen[pid] = true
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("processes of cgroup %s: %w", p, err)
		}
	}
	out := make([]int, 0, len(seen))
	for pid := range seen {
		out = append(out, pid)
	}
	slices.Sort(out)
	return out, nil
}

// host describes where the hierarchies are mounted. Tests build one over a
// temporary directory.
type host struct {
	// unified selects the v2 implementation for Load and New.
	unified bool
	// v1Root holds one directory per v1 controller ("memory", "cpu", ...,
	// "systemd" for name=systemd), as /sys/fs/cgroup does.
	v1Root string
	// v2Root is the cgroup2 mountpoint ("" when none).
	v2Root string
	// hierarchies lists every mounted hierarchy root, for Delete.
	hierarchies []string

	v1Once sync.Once
	v1Subs v1Subsystems
}

var currentHost = sync.OnceValues(detectHost)

func detectHost() (*host, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	mounts, err := parseCgroupMounts(f)
	if err != nil {
		return nil, err
	}
	unified, _ := Mode()
	h := &host{unified: unified}
	for _, m := range mounts {
		h.hierarchies = append(h.hierarchies, m.mountpoint)
		switch {
		case m.v2:
			// In hybrid mode the unified hierarchy sits below the v1 tmpfs;
			// in unified mode it is the only one.
			if h.v2Root == "" || unified {
				h.v2Root = m.mountpoint
			}
		case h.v1Root == "":
			h.v1Root = filepath.Dir(m.mountpoint)
		}
	}
	if unified && h.v2Root == "" {
		return nil, fmt.Errorf("cgroup v2 is not mounted: %w", errdefs.ErrUnavailable)
	}
	if !unified && h.v1Root == "" {
		return nil, fmt.Errorf("no cgroup hierarchy is mounted: %w", errdefs.ErrUnavailable)
	}
	return h, nil
}

type cgroupMount struct {
	mountpoint string
	v2         bool
}

// parseCgroupMounts returns the cgroup and cgroup2 mounts of a mountinfo
// table, each mountpoint once.
func parseCgroupMounts(r io.Reader) ([]cgroupMount, error) {
	table, err := mount.ParseMountinfo(r)
	if err != nil {
		return nil, err
	}
	var out []cgroupMount
	seen := map[string]bool{}
	for _, m := range table {
		if (m.FSType != "cgroup" && m.FSType != "cgroup2") || seen[m.Mountpoint] {
			continue
		}
		seen[m.Mountpoint] = true
		out = append(out, cgroupMount{mountpoint: m.Mountpoint, v2: m.FSType == "cgroup2"})
	}
	return out, nil
}

func (h *host) load(cgroupsPath string) (Cgroup, error) {
	p, err := ResolvePath(cgroupsPath)
	if err != nil {
		return nil, err
	}
	if h.unified {
		return h.loadV2(p)
	}
	return h.loadV1(p)
}

func (h *host) create(cgroupsPath string) (Cgroup, error) {
	p, err := ResolvePath(cgroupsPath)
	if err != nil {
		return nil, err
	}
	if h.unified {
		return h.newV2(p)
	}
	return h.newV1(p)
}

func (h *host) delete(cgroupsPath string) error {
	p, err := ResolvePath(cgroupsPath)
	if err != nil {
		return err
	}
	var errs []error
	for _, root := range h.hierarchyRoots() {
		if err := removeTree(filepath.Join(root, p)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("delete cgroup %s: %w", p, errors.Join(errs...))
	}
	return nil
}

// hierarchyRoots returns the mounted hierarchies, or for a host built by
// hand, the v1 controller directories and the v2 root.
func (h *host) hierarchyRoots() []string {
	if len(h.hierarchies) > 0 {
		return h.hierarchies
	}
	var roots []string
	if h.v1Root != "" {
		entries, _ := os.ReadDir(h.v1Root)
		for _, e := range entries {
			if e.IsDir() && filepath.Join(h.v1Root, e.Name()) != h.v2Root {
				roots = append(roots, filepath.Join(h.v1Root, e.Name()))
			}
		}
	}
	if h.v2Root != "" {
		roots = append(roots, h.v2Root)
	}
	return roots
}
