package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const helperEnv = "MAGNETAR_CGROUPS_TEST_HELPER"

// TestHelperProcess is not a test: run with helperEnv=alloc it waits for a
// byte on stdin, then allocates and touches memory until it is killed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "alloc" {
		t.Skip("helper process for the OOM integration test")
	}
	var b [1]byte
	_, _ = os.Stdin.Read(b[:])
	var hold [][]byte
	for i := 0; i < 4096; i++ {
		chunk := make([]byte, 1<<20)
		for j := range chunk {
			if j%4096 == 0 {
				chunk[j] = 1
			}
		}
		hold = append(hold, chunk)
	}
	fmt.Println(len(hold))
	os.Exit(0)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups (run the tests as root to cover real hierarchies)")
	}
}

// TestRealCgroup creates a cgroup in the host's real hierarchies (v1 on
// legacy and hybrid hosts, v2 on unified ones), reads metrics, applies a
// memory limit, has a process OOM-killed in it, and deletes it.
func TestRealCgroup(t *testing.T) {
	requireRoot(t)
	h, err := currentHost()
	if err != nil {
		t.Skipf("no usable cgroup hierarchy: %v", err)
	}
	parent := fmt.Sprintf("/magnetar-cgtest-%d", os.Getpid())
	path := parent + "/c1"
	t.Cleanup(func() { _ = Delete(parent) })

	if _, err := Load(path); !errdefs.IsNotFound(err) {
		t.Fatalf("Load before New = %v, want NotFound", err)
	}
	if _, err := New(path); err != nil {
		t.Fatal(err)
	}
	cg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cg.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	switch m := decode(t, a).(type) {
	case *v1stats.Metrics:
		if h.unified {
			t.Fatal("v1 metrics on a unified host")
		}
	case *v2stats.Metrics:
		if !h.unified {
			t.Fatal("v2 metrics on a v1 host")
		}
	default:
		t.Fatalf("metrics decode to %T", m)
	}
	if pm, err := PodMetric("pod-1", path); err != nil || pm.ID != "pod-1" || pm.Timestamp == nil || pm.Data.GetTypeUrl() != a.GetTypeUrl() {
		t.Errorf("PodMetric = %v, %v; want pod-1's, timestamped, %s", pm, err, a.GetTypeUrl())
	}
	if _, err := PodMetric("pod-1", parent+"/absent"); !errdefs.IsNotFound(err) {
		t.Errorf("PodMetric of no cgroup = %v, want NotFound", err)
	}

	const limit = 32 << 20
	mem := &specs.LinuxMemory{Limit: i64(limit), Swap: i64(limit)}
	if err := cg.Update(&specs.LinuxResources{Memory: mem, Pids: &specs.LinuxPids{Limit: i64(64)}}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	s, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.MemoryLimit != limit {
		t.Errorf("MemoryLimit = %d, want %d", s.MemoryLimit, limit)
	}
	// Hugepage limits need the hugetlb controller; report, don't fail, when
	// the host lacks it.
	err = cg.Update(&specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 0}}})
	hugetlb := (!h.unified && isDir(filepath.Join(h.v1Root, "hugetlb"))) ||
		(h.unified && exists(filepath.Join(h.v2Root, path, "hugetlb.2MB.max")))
	switch {
	case hugetlb && err != nil:
		t.Errorf("hugepage limit with hugetlb controller: %v", err)
	case !hugetlb && (!errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "hugepageLimits[2MB]")):
		t.Errorf("hugepage limit without hugetlb controller = %v, want NotImplemented naming it", err)
	}

	// A process that outgrows the limit is OOM-killed: one event.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	oom, err := cg.OOMEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"=alloc")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := cg.AddProc(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal(err)
	}
	if s, err := cg.Stats(); err != nil || s.Pids < 1 {
		t.Errorf("Stats with a process inside = %+v, %v", s, err)
	}
	_, _ = io.WriteString(stdin, "go")
	waitErr := cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(waitErr, &exitErr) || exitErr.ExitCode() != -1 {
		t.Fatalf("helper exited with %v, want killed by the OOM killer", waitErr)
	}
	select {
	case <-oom:
	case <-time.After(10 * time.Second):
		t.Fatal("no OOM event")
	}
	if s, err := cg.Stats(); err != nil || s.OOMKills < 1 {
		t.Errorf("Stats after OOM kill = %+v, %v", s, err)
	}
	sum, err := Sum([]Cgroup{cg, cg})
	if err != nil {
		t.Fatal(err)
	}
	if sum.GetTypeUrl() != a.GetTypeUrl() {
		t.Errorf("Sum type %q, Metrics type %q", sum.GetTypeUrl(), a.GetTypeUrl())
	}

	if err := Delete(parent); err != nil {
		t.Fatal(err)
	}
	for _, root := range h.hierarchyRoots() {
		if exists(filepath.Join(root, parent)) {
			t.Errorf("%s left in %s", parent, root)
		}
	}
	if _, err := Load(path); !errdefs.IsNotFound(err) {
		t.Errorf("Load after Delete = %v, want NotFound", err)
	}
	if err := Delete(parent); err != nil {
		t.Errorf("second Delete = %v", err)
	}
	expectClosed(t, oom)
	if _, err := cg.Metrics(); !errdefs.IsNotFound(err) {
		t.Errorf("Metrics after Delete = %v, want NotFound", err)
	}
}

// TestRealDeleteBusy checks that Delete refuses a cgroup with a process in
// it, and leaves it usable.
func TestRealDeleteBusy(t *testing.T) {
	requireRoot(t)
	if _, err := currentHost(); err != nil {
		t.Skipf("no usable cgroup hierarchy: %v", err)
	}
	path := fmt.Sprintf("/magnetar-cgtest-busy-%d", os.Getpid())
	t.Cleanup(func() { _ = Delete(path) })
	cg, err := New(path)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := cg.AddProc(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if pids, err := Procs(path); err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Errorf("Procs = %v, %v; want [%d]", pids, err, cmd.Process.Pid)
	}
	if err := Delete(path); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Delete with a process inside = %v, want FailedPrecondition", err)
	}
	if _, err := Load(path); err != nil {
		t.Errorf("Load after refused Delete = %v", err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := Delete(path); err != nil {
		t.Errorf("Delete after the process exited = %v", err)
	}
}

// TestRealUnifiedHierarchy exercises the v2 code against a real cgroup2
// mount even on a hybrid host, where /sys/fs/cgroup/unified usually offers
// few controllers.
func TestRealUnifiedHierarchy(t *testing.T) {
	requireRoot(t)
	hh, err := currentHost()
	if err != nil || hh.v2Root == "" {
		t.Skip("no cgroup2 mount on this host")
	}
	h := &host{unified: true, v2Root: hh.v2Root}
	path := fmt.Sprintf("/magnetar-cgtest-v2-%d/c1", os.Getpid())
	t.Cleanup(func() { _ = h.delete(filepath.Dir(path)) })
	cg, err := h.create(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cg.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if a.GetTypeUrl() != MetricsV2TypeURL {
		t.Fatalf("type url %q", a.GetTypeUrl())
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := cg.AddProc(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if own, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid)); !strings.Contains(string(own), "0::"+path) {
		t.Errorf("process cgroups:\n%s\nwant 0::%s", own, path)
	}
	// Whatever the host offers, the update either applies or names what it
	// could not.
	err = cg.Update(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20)}})
	controllers, _ := readControl(filepath.Join(h.v2Root, path, "cgroup.controllers"))
	if strings.Contains(controllers, "memory") {
		if err != nil {
			t.Errorf("memory limit with memory controller: %v", err)
		}
	} else if !errdefs.IsNotImplemented(err) {
		t.Errorf("memory limit without memory controller = %v, want NotImplemented", err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := h.delete(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(h.v2Root, filepath.Dir(path))) {
		t.Error("cgroup left behind")
	}
}
