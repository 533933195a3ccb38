package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// sample is one raw measurement. Pods is the phase's pod count, Round the
// repetition, Index the pod (-1 for a per-round figure).
type sample struct {
	Phase   string  `json:"phase"`
	Handler string  `json:"handler"`
	Pods    int     `json:"pods"`
	Round   int     `json:"round"`
	Index   int     `json:"index"`
	Metric  string  `json:"metric"`
	Value   float64 `json:"value"`
}

type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

type meta struct {
	Started    string              `json:"started"`
	Finished   string              `json:"finished"`
	DurationS  float64             `json:"duration_s"`
	Host       string              `json:"host"`
	CPUs       int                 `json:"cpus"`
	CPUModel   string              `json:"cpu_model"`
	MemTotal   string              `json:"mem_total"`
	Kernel     string              `json:"kernel"`
	Cgroup     string              `json:"cgroup"`
	Runtime    string              `json:"runtime"`
	Runc       string              `json:"runc"`
	Sandboxers map[string]string   `json:"sandboxers"`
	Label      string              `json:"label"`
	LoadBefore string              `json:"load_before"`
	LoadAfter  string              `json:"load_after"`
	Handlers   []string            `json:"handlers"`
	N          int                 `json:"n"`
	Parallel   []int               `json:"parallel"`
	ParReps    int                 `json:"par_reps"`
	MemPods    []int               `json:"mem_pods"`
	Image      string              `json:"image"`
	Workloads  map[string]string   `json:"workloads"` // handler: image `command`
	Caps       map[string]phaseCap `json:"caps,omitempty"`
	CapNote    string              `json:"cap_note,omitempty"`
	PidMode    string              `json:"pid_mode"`
	CgroupPar  string              `json:"cgroup_parent"`
	Work       string              `json:"work"`
}

type results struct {
	Meta    meta     `json:"meta"`
	Checks  []check  `json:"checks"`
	Summary any      `json:"summary"`
	Samples []sample `json:"samples"`
}

func newResults() *results {
	return &results{Meta: meta{Started: time.Now().Format(time.RFC3339), Sandboxers: map[string]string{}}}
}

// values returns the samples of one phase/handler/pod count/metric, all rounds.
func (r *results) values(phase, h string, pods int, metric string) []float64 {
	var xs []float64
	for _, s := range r.Samples {
		if s.Phase == phase && s.Handler == h && s.Pods == pods && s.Metric == metric {
			xs = append(xs, s.Value)
		}
	}
	return xs
}

// value returns the single sample of a per-round metric (round 0), or NaN-like ok=false.
func (r *results) value(phase, h string, pods int, metric string) (float64, bool) {
	xs := r.values(phase, h, pods, metric)
	if len(xs) == 0 {
		return 0, false
	}
	return xs[0], true
}

func (r *results) counts() (pass, fail int) {
	for _, c := range r.Checks {
		if c.OK {
			pass++
		} else {
			fail++
		}
	}
	return pass, fail
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func cgroupMode() string {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return "?"
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "v2 (unified)"
	}
	if err := unix.Statfs("/sys/fs/cgroup/unified", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "hybrid (v1 controllers + v2)"
	}
	return "v1"
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return fmt.Sprintf("%.1f GiB", kb/1024/1024)
		}
	}
	return "?"
}

func firstLine(cmd string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cmd, args...).Output()
	if err != nil {
		return "?"
	}
	l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return l
}

func (b *bench) fillMeta(ctx context.Context) {
	m := &b.res.Meta
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
		m.Host = unix.ByteSliceToString(u.Nodename[:])
	}
	m.CPUs = runtime.NumCPU()
	m.CPUModel = cpuModel()
	m.MemTotal = memTotal()
	m.Cgroup = cgroupMode()
	m.Runtime = b.c.version(ctx)
	if b.o.runcBin != "" {
		m.Runc = firstLine(b.o.runcBin, "--version")
	}
	for _, h := range b.handlers {
		if h == "runc" {
			continue
		}
		if pid, err := readPidFile(b.hp.daemonPidFile(h)); err == nil {
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
				m.Sandboxers[h] = firstLine(strings.TrimSuffix(exe, " (deleted)"), "--version")
			}
		}
	}
	m.Label = b.o.label
	m.LoadBefore = loadavg()
	m.Handlers = b.handlers
	m.N, m.Parallel, m.ParReps, m.MemPods = b.o.n, b.o.parallel, b.o.parReps, b.o.memPods
	m.Image, m.PidMode, m.CgroupPar, m.Work = b.o.image, b.o.pidMode, b.o.cgroup, b.o.work
	m.Workloads = map[string]string{}
	for _, h := range b.handlers {
		m.Workloads[h] = b.o.workloadOf(h).String()
	}
	m.Caps, m.CapNote = b.o.caps, b.o.capNote
}

// write saves samples.csv, results.json, summary.md, start-latency.svg and
// memory.svg,
// prints the summary, and points WORK/results/latest at the directory.
func (b *bench) write() error {
	dir := b.o.out
	f, err := os.Create(filepath.Join(dir, "samples.csv"))
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"phase", "handler", "pods", "round", "index", "metric", "value"})
	for _, s := range b.res.Samples {
		_ = w.Write([]string{s.Phase, s.Handler, strconv.Itoa(s.Pods), strconv.Itoa(s.Round), strconv.Itoa(s.Index), s.Metric, strconv.FormatFloat(s.Value, 'f', -1, 64)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}

	sum := b.summary()
	b.res.Summary = sum
	js, err := json.MarshalIndent(b.res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	md := b.markdown(sum)
	if err := os.WriteFile(filepath.Join(dir, "summary.md"), []byte(md), 0o644); err != nil {
		return err
	}
	svg := b.plot()
	if err := os.WriteFile(filepath.Join(dir, "start-latency.svg"), []byte(svg), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.svg"), []byte(b.memPlot()), 0o644); err != nil {
		return err
	}
	if !b.o.quiet {
		fmt.Print(md)
	}
	if filepath.Dir(dir) == filepath.Join(b.o.work, "results") {
		latest := filepath.Join(b.o.work, "results", "latest")
		_ = os.Remove(latest)
		_ = os.Symlink(filepath.Base(dir), latest)
	}
	return nil
}
