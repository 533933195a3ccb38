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
	if len(g) != 2 || g[10] != "shim" || g[11] != "pause" || n != 2 {
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
	if len(g) != len(want) || n != 2 {
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
	for name, svg := range map[string]string{"start-latency": b.plot(), "memory": b.memPlot()} {
		if !strings.HasPrefix(svg, "<svg") || !strings.HasSuffix(strings.TrimSpace(svg), "</svg>") {
			t.Errorf("bad %s svg", name)
		}
	}
}

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

// A gVisor pod: the sandbox (the container's pid as containerd reports
// it) and a gofer, children of the daemon, a systrap stub below the
// sandbox, a runsc call of the daemon's in flight: the pod's kernel, not
// management; another harness's sandbox is not ours at all.
func TestMgmtProcsKernel(t *testing.T) {
	dir := t.TempDir()
	hp := harnessPaths{Work: dir, Socket: dir + "/run/containerd.sock"}
	if err := writeFile(dir+"/run/magnetar-gvisor.pid", "40\n"); err != nil {
		t.Fatal(err)
	}
	sb, runsc := "/repo/bin/gvisor-sandboxer", "/prefix/bin/runsc"
	root := dir + "/lib/magnetar-gvisor/sandboxes/p1/runsc"
	ps := map[int]*hostproc.Proc{
		40: {Pid: 40, PPid: 1, State: 'S', Exe: sb, Args: []string{sb, "--dir", dir + "/lib/magnetar-gvisor"}},
		41: {Pid: 41, PPid: 40, State: 'S', Exe: runsc, Args: []string{"runsc-sandbox", "--root=" + root, "boot"}},
		42: {Pid: 42, PPid: 41, State: 'S', Exe: runsc, Args: []string{"runsc-sandbox", "--root=" + root, "boot"}},
		43: {Pid: 43, PPid: 40, State: 'S', Exe: runsc, Args: []string{"runsc-gofer", "--root=" + root, "gofer"}},
		44: {Pid: 44, PPid: 40, State: 'S', Exe: runsc, Args: []string{runsc, "--root", root, "state", "p1"}},
		45: {Pid: 45, PPid: 40, State: 'S', Exe: sb, Comm: "x", Args: []string{sb, "__magnetar_pod_init"}},
		50: {Pid: 50, PPid: 1, State: 'S', Exe: runsc, Args: []string{"runsc-sandbox", "--root=/other/lib/x/runsc", "boot"}},
	}
	g, n, err := mgmtProcs(ps, hp, "magnetar-gvisor", []int{41})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{40: "daemon", 41: kernelGroup, 42: kernelGroup, 43: kernelGroup, 44: kernelGroup, 45: "pod-init"}
	if len(g) != len(want) || n != 1 {
		t.Errorf("groups %v, want %v; %d container procs, want 1", g, want, n)
	}
	for pid, grp := range want {
		if g[pid] != grp {
			t.Errorf("pid %d: group %q, want %q", pid, g[pid], grp)
		}
	}
	if k := kernelProcs(ps, root); len(k) != 4 || k[50] || k[40] {
		t.Errorf("kernelProcs(%s) = %v, want 41-44", root, k)
	}
}

// The capture turns what the sandboxer wrote for a pod into specs with
// placeholders only: no id, directory, netns, rootfs or pid of the
// captured pod left; the pod's files the container mounts are kept.
func TestCaptureFloor(t *testing.T) {
	dir := t.TempDir()
	lib, pod, ctr := dir+"/lib", "p0d1d", "c0ffee"
	podDir := lib + "/sandboxes/" + pod
	bundleDir := dir + "/state/" + ctr
	netns := dir + "/state/netns/cni-1"
	for path, content := range map[string]string{
		podDir + "/hosts":                              "127.0.0.1 localhost\n",
		podDir + "/shm/.keep":                          "",
		lib + "/pause/pause":                           "pause",
		bundleDir + "/rootfs/bin/sleep":                "sleep",
		bundleDir + "/rootfs/.gvisor.filestore." + pod: "x",
		bundleDir + "/" + gvisorNote:                   `{"runsc":"/prefix/bin/runsc","root":"` + podDir + `/runsc","flags":"--platform=systrap\n--network=sandbox","dir":"` + lib + `/containers/` + ctr + `"}`,
		podDir + "/root/config.json": `{"root":{"path":"` + lib + `/pause","readonly":true},"annotations":{"io.kubernetes.cri.sandbox-id":"` + pod + `"},
			"linux":{"cgroupsPath":"/magnetar-bench/` + pod + `","namespaces":[{"type":"network","path":"` + netns + `"}]}}`,
		lib + "/containers/" + ctr + "/config.json": `{"root":{"path":"` + bundleDir + `/rootfs"},
			"annotations":{"io.kubernetes.cri.sandbox-id":"` + pod + `","dev.gvisor.spec.mount.magnetar-shm.source":"` + podDir + `/shm"},
			"mounts":[{"destination":"/etc/hosts","type":"bind","source":"` + podDir + `/hosts","options":["rbind"]}],
			"linux":{"namespaces":[{"type":"ipc","path":"/proc/4242/ns/ipc"}]}}`,
	} {
		if err := writeFile(path, content); err != nil {
			t.Fatal(err)
		}
	}
	f, err := captureFloor(dir+"/bare", "run1", lib, podRef{ID: pod, Container: ctr}, 4242)
	if err != nil {
		t.Fatal(err)
	}
	if f.runsc != "/prefix/bin/runsc" || strings.Join(f.flags, " ") != "--platform=systrap --network=sandbox" {
		t.Errorf("runsc %q flags %q", f.runsc, f.flags)
	}
	for _, spec := range []string{string(f.rootSpec), string(f.ctrSpec)} {
		for _, old := range []string{pod, ctr, dir, "4242"} {
			if strings.Contains(spec, old) {
				t.Errorf("captured spec still names %q:\n%s", old, spec)
			}
		}
	}
	for _, ph := range []string{phPause, phPodID, phNetNS} {
		if !strings.Contains(string(f.rootSpec), ph) {
			t.Errorf("root spec lacks %s:\n%s", ph, f.rootSpec)
		}
	}
	for _, ph := range []string{phRootfs, phPodID, phPodDir, phPid} {
		if !strings.Contains(string(f.ctrSpec), ph) {
			t.Errorf("container spec lacks %s:\n%s", ph, f.ctrSpec)
		}
	}
	if string(f.podFiles["hosts"]) != "127.0.0.1 localhost\n" || len(f.podDirs) != 1 || f.podDirs[0] != "shm" {
		t.Errorf("pod files %v, dirs %v", f.podFiles, f.podDirs)
	}
	if _, err := os.Stat(dir + "/bare/template/rootfs/bin/sleep"); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(dir + "/bare/template/rootfs/.gvisor.filestore." + pod); err == nil {
		t.Error("runsc's file store copied into the template")
	}
	// a container spec whose mount source the replay did not map
	if err := checkSources(`{"mounts":[{"destination":"/x","type":"bind","source":"` + dir + `/nowhere"}]}`); err == nil {
		t.Error("checkSources: a missing bind source passed")
	}
}

// The gVisor handler gets a ratio column to the floor, and its targets.
func TestReportFloor(t *testing.T) {
	b := &bench{
		o:        options{n: 2, memPods: []int{1}, bareFrom: "magnetar-gvisor"},
		handlers: []string{"runc", "magnetar-gvisor", bareHandler},
		res:      newResults(),
	}
	for i, v := range []float64{100, 120} {
		b.record("seq", "runc", 2, 0, i, "total_ms", v)
		b.record("seq", "magnetar-gvisor", 2, 0, i, "total_ms", 2*v)
		b.record("seq", bareHandler, 2, 0, i, "total_ms", 2*v/1.1)
		b.record("seq", bareHandler, 2, 0, i, "kernel_procs", 4)
		b.record("seq", bareHandler, 2, 0, i, "kernel_pss_kib", 40*1024)
	}
	for _, h := range []string{"runc", "magnetar-gvisor"} {
		b.record("idle", h, 0, 0, -1, "mgmt_procs", 1)
		b.record("idle", h, 0, 0, -1, "mgmt_pss_kib", 10000)
	}
	b.record("mem", "magnetar-gvisor", 1, 0, -1, "mgmt_procs", 1)
	b.record("mem", "magnetar-gvisor", 1, 0, -1, "mgmt_pss_kib", 10100)
	b.record("mem", "magnetar-gvisor", 1, 0, -1, "kernel_procs", 4)
	b.record("mem", "magnetar-gvisor", 1, 0, -1, "kernel_pss_kib", 41*1024)
	md := b.markdown(b.summary())
	for _, want := range []string{"magnetar-gvisor / bare runsc", "1.10×", "2.00×", "1.2× bare runsc", "0.00 per pod; the pod's kernel: 4.0 processes, PSS 41.0 MiB per pod — met", "| 40.0 MiB |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestCapsAndWorkloads(t *testing.T) {
	caps, err := parseCaps("magnetar-vmm=10x1")
	if err != nil {
		t.Fatal(err)
	}
	o := options{image: "busybox", wasmImage: "wasm-c", wasmCommand: []string{"/hello.wasm", "sleep", "3600"}, caps: caps}
	if !o.capped("magnetar-vmm", 50) || o.capped("magnetar-vmm", 10) || o.capped("runc", 50) {
		t.Errorf("capped: wrong for %v", caps)
	}
	if w := o.workloadOf("magnetar-wasm-wazero"); w.Image != "wasm-c" {
		t.Errorf("wasm handler runs %v", w)
	}
	if w := o.workloadOf("magnetar-runc"); w.Image != "busybox" || w.Command[0] != "sleep" {
		t.Errorf("Linux handler runs %v", w)
	}
	o.parReps = 3
	if o.parRounds("magnetar-vmm") != 1 || o.parRounds("runc") != 3 {
		t.Errorf("parRounds: wrong for %v", caps)
	}
	for _, bad := range []string{"magnetar-vmm=0", "magnetar-vmm=10x0", "magnetar-vmm=x1"} {
		if _, err := parseCaps(bad); err == nil {
			t.Errorf("%s parsed", bad)
		}
	}
}
