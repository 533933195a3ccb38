package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/magnetar-runtime/magnetar/hack/bench/internal/hostproc"
)

func TestQuantile(t *testing.T) {
	s := []float64{1, 2, 3, 4}
	for _, c := range []struct{ q, want float64 }{{0, 1}, {0.5, 2.5}, {0.9, 3.7}, {1, 4}} {
		if got := quantile(s, c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("quantile(%v, %v) = %v, want %v", s, c.q, got, c.want)
		}
	}
	d := summarize([]float64{5, 1, 3})
	if d.N != 3 || d.Min != 1 || d.Max != 5 || d.P50 != 3 || d.Mean != 3 {
		t.Errorf("summarize: %+v", d)
	}
	if d := summarize(nil); d.N != 0 {
		t.Errorf("summarize(nil): %+v", d)
	}
}

func TestNiceTicks(t *testing.T) {
	ts := niceTicks(287, 6)
	if ts[0] != 0 || ts[len(ts)-1] < 287 || len(ts) > 9 {
		t.Errorf("niceTicks(287) = %v", ts)
	}
}

// A synthetic process table: our shim with pause and a container, another
// harness's shim, our sandboxer with keeper, pod init and a container.
func TestMgmtProcs(t *testing.T) {
	hp := harnessPaths{Work: "/w", Socket: "/w/run/containerd.sock"}
	sb := "/repo/bin/runc-sandboxer"
	ps := map[int]*hostproc.Proc{
		10: {Pid: 10, PPid: 1, State: 'S', Args: []string{"/x/containerd-shim-runc-v2", "-address", "/w/run/containerd.sock"}},
		11: {Pid: 11, PPid: 10, State: 'S', Comm: "pause", Args: []string{"/pause"}},
		12: {Pid: 12, PPid: 10, State: 'S', Comm: "sleep", Args: []string{"sleep", "3600"}},
		13: {Pid: 13, PPid: 12, State: 'S', Comm: "sh", Args: []string{"sh"}},
		20: {Pid: 20, PPid: 1, State: 'S', Args: []string{"/x/containerd-shim-runc-v2", "-address", "/other/run/containerd.sock"}},
		21: {Pid: 21, PPid: 1, State: 'Z', Comm: "containerd-shim"},
		30: {Pid: 30, PPid: 1, State: 'S', Exe: sb, Args: []string{sb, "--listen", "/w/run/magnetar-runc.sock"}},
		31: {Pid: 31, PPid: 30, State: 'S', Exe: sb, Args: []string{sb, "__magnetar_task_keeper", "/w/run/t.sock"}},
		32: {Pid: 32, PPid: 30, State: 'S', Exe: sb, Args: []string{sb, "__magnetar_pod_init"}},
		33: {Pid: 33, PPid: 30, State: 'S', Comm: "sleep", Args: []string{"sleep", "3600"}},
		34: {Pid: 34, PPid: 1, State: 'S', Exe: sb, Args: []string{sb, "__magnetar_task_keeper", "/w/run/old.sock"}},
		35: {Pid: 35, PPid: 1, State: 'S', Exe: sb, Args: []string{sb, "__magnetar_task_keeper", "/other/run/t.sock"}},
	}
	g, n, err := mgmtProcs(ps, hp, "runc", []int{12, 33})
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != 2 || g[10] != "shim" || g[11] != "pause" || n != 3 {
		t.Errorf("runc: groups %v, %d container procs", g, n)
	}
	// the daemon's pid file is read from WORK/run: fake it through a temp WORK
	dir := t.TempDir()
	hp.Work = dir
	if err := writeFile(dir+"/run/magnetar-runc.pid", "30\n"); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		for i, a := range p.Args {
			p.Args[i] = strings.ReplaceAll(a, "/w/", dir+"/")
		}
	}
	g, n, err = mgmtProcs(ps, hp, "magnetar-runc", []int{12, 33})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{30: "daemon", 31: "keeper", 32: "pod-init", 34: "keeper"}
	if len(g) != len(want) || n != 3 {
		t.Errorf("magnetar: groups %v, want %v; %d container procs", g, want, n)
	}
	for pid, grp := range want {
		if g[pid] != grp {
			t.Errorf("pid %d: group %q, want %q", pid, g[pid], grp)
		}
	}
}

func TestReportRendersPartialResults(t *testing.T) {
	b := &bench{
		o:        options{n: 2, parallel: []int{2}, parReps: 1, memPods: []int{1}},
		handlers: []string{"runc", "magnetar-runc"},
		res:      newResults(),
	}
	for i, v := range []float64{100, 120} {
		b.record("seq", "runc", 2, 0, i, "total_ms", v)
		b.record("seq", "magnetar-runc", 2, 0, i, "total_ms", v/2)
	}
	b.record("mem", "runc", 1, 0, -1, "mgmt_pss_kib", 10000)
	s := b.summary()
	md := b.markdown(s)
	if !strings.Contains(md, "0.50×") || !strings.Contains(md, "| — |") {
		t.Errorf("markdown lacks the ratio or a dash for missing data:\n%s", md)
	}
	if svg := b.plot(); !strings.HasPrefix(svg, "<svg") || !strings.HasSuffix(strings.TrimSpace(svg), "</svg>") {
		t.Errorf("bad svg")
	}
}

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}
