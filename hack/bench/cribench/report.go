package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// memRow is the management footprint of one handler at one pod count.
type memRow struct {
	Pods          int     `json:"pods"`
	PSSKiB        float64 `json:"pss_kib"`
	RSSKiB        float64 `json:"rss_kib"`
	USSKiB        float64 `json:"uss_kib"`
	Procs         float64 `json:"procs"`
	Threads       float64 `json:"threads"`
	ContainerdRSS float64 `json:"containerd_rss_kib"`
	ContainerdPSS float64 `json:"containerd_pss_kib"`
	TeardownMs    float64 `json:"teardown_ms"`
	// the pods' kernels (gVisor: runsc's sandbox, gofers, stubs), not in
	// the figures above
	KernelProcs  float64 `json:"kernel_procs"`
	KernelPSSKiB float64 `json:"kernel_pss_kib"`
	// beyond the idle footprint, per pod
	ProcsPerPod   float64 `json:"procs_per_pod"`
	ThreadsPerPod float64 `json:"threads_per_pod"`
	PSSPerPodKiB  float64 `json:"pss_per_pod_kib"`
	Breakdown     string  `json:"breakdown"` // PSS per process group
	OK            bool    `json:"ok"`
}

type parRow struct {
	Wall     dist `json:"wall_ms"`
	PerPod   dist `json:"pod_total_ms"`
	Teardown dist `json:"teardown_total_ms"`
}

type handlerSummary struct {
	Seq           map[string]dist `json:"seq_ms"` // run, create, start, total, teardown
	SeqSum        float64         `json:"seq_sum_ms"`
	SeqTeardown   float64         `json:"seq_teardown_total_ms"`
	Par           map[int]parRow  `json:"par"`
	Idle          memRow          `json:"idle"`
	IdleAfter     memRow          `json:"idle_after"`
	Mem           map[int]memRow  `json:"mem"`
	MemTopPods    int             `json:"mem_top_pods"`
	ProcsPerPod   float64         `json:"procs_per_pod"`
	ThreadsPerPod float64         `json:"threads_per_pod"`
	// a pod's kernel (gVisor: runsc's sandbox, gofers, stubs), per pod: the
	// median over the sequential rounds (right after each start), else at
	// the top memory pod count
	Kernel kernelRow `json:"kernel"`
}

type kernelRow struct {
	Known     bool    `json:"known"`
	Procs     float64 `json:"procs_per_pod"`
	PSSKiB    float64 `json:"pss_per_pod_kib"`
	RSSKiB    float64 `json:"rss_per_pod_kib"`
	FromPods  int     `json:"from_pods"`
	FromRound string  `json:"from"`
}

type target struct {
	Handler string  `json:"handler"`
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Limit   float64 `json:"limit"`
	Text    string  `json:"text"`
	Met     bool    `json:"met"`
	Known   bool    `json:"known"`
}

type summaryT struct {
	Handlers map[string]*handlerSummary `json:"handlers"`
	Targets  []target                   `json:"targets"`
}

var seqSteps = []struct{ key, metric, label string }{
	{"run", "run_ms", "RunPodSandbox"},
	{"create", "create_ms", "CreateContainer"},
	{"start", "start_ms", "StartContainer"},
	{"total", "total_ms", "pod start (sum of the three)"},
	{"teardown", "teardown_ms", "teardown (Stop + RemovePodSandbox)"},
}

func (b *bench) memRow(phase, h string, pods int) memRow {
	r := b.res
	row := memRow{Pods: pods}
	v, ok := r.value(phase, h, pods, "mgmt_pss_kib")
	if !ok {
		return row
	}
	row.OK = true
	row.PSSKiB = v
	row.RSSKiB, _ = r.value(phase, h, pods, "mgmt_rss_kib")
	row.USSKiB, _ = r.value(phase, h, pods, "mgmt_uss_kib")
	row.Procs, _ = r.value(phase, h, pods, "mgmt_procs")
	row.Threads, _ = r.value(phase, h, pods, "mgmt_threads")
	row.ContainerdRSS, _ = r.value(phase, h, pods, "containerd_rss_kib")
	row.ContainerdPSS, _ = r.value(phase, h, pods, "containerd_pss_kib")
	row.TeardownMs, _ = r.value(phase, h, pods, "teardown_total_ms")
	row.KernelProcs, _ = r.value(phase, h, pods, "kernel_procs")
	row.KernelPSSKiB, _ = r.value(phase, h, pods, "kernel_pss_kib")
	var parts []string
	for _, g := range []string{"shim", "pause", "daemon", "keeper", "pod-init"} {
		if v, ok := r.value(phase, h, pods, "group_"+g+"_pss_kib"); ok {
			n, _ := r.value(phase, h, pods, "group_"+g+"_procs")
			parts = append(parts, fmt.Sprintf("%s %.1f (%.0f)", g, v/1024, n))
		}
	}
	seen := map[string]bool{}
	for _, smp := range r.Samples {
		if smp.Phase == phase && smp.Handler == h && smp.Pods == pods && strings.HasPrefix(smp.Metric, "group_other") && strings.HasSuffix(smp.Metric, "_pss_kib") && !seen[smp.Metric] {
			seen[smp.Metric] = true
			name := strings.TrimSuffix(strings.TrimPrefix(smp.Metric, "group_"), "_pss_kib")
			parts = append(parts, fmt.Sprintf("%s %.1f", name, smp.Value/1024))
		}
	}
	row.Breakdown = strings.Join(parts, " + ")
	return row
}

func (b *bench) summary() *summaryT {
	s := &summaryT{Handlers: map[string]*handlerSummary{}}
	for _, h := range b.handlers {
		hs := &handlerSummary{Seq: map[string]dist{}, Par: map[int]parRow{}, Mem: map[int]memRow{}}
		for _, st := range seqSteps {
			hs.Seq[st.key] = summarize(b.res.values("seq", h, b.o.n, st.metric))
		}
		for _, x := range b.res.values("seq", h, b.o.n, "total_ms") {
			hs.SeqSum += x
		}
		hs.SeqTeardown, _ = b.res.value("seq", h, b.o.n, "teardown_total_ms")
		for _, p := range b.o.parallel {
			hs.Par[p] = parRow{
				Wall:     summarize(b.res.values("par", h, p, "wall_ms")),
				PerPod:   summarize(b.res.values("par", h, p, "pod_total_ms")),
				Teardown: summarize(b.res.values("par", h, p, "teardown_total_ms")),
			}
		}
		hs.Idle = b.memRow("idle", h, 0)
		hs.IdleAfter = b.memRow("idle-after", h, 0)
		for _, m := range b.o.memPods {
			row := b.memRow("mem", h, m)
			if row.OK && hs.Idle.OK {
				row.ProcsPerPod = (row.Procs - hs.Idle.Procs) / float64(m)
				row.ThreadsPerPod = (row.Threads - hs.Idle.Threads) / float64(m)
				row.PSSPerPodKiB = (row.PSSKiB - hs.Idle.PSSKiB) / float64(m)
			}
			hs.Mem[m] = row
			if row.OK && m >= hs.MemTopPods {
				hs.MemTopPods = m
				hs.ProcsPerPod, hs.ThreadsPerPod = row.ProcsPerPod, row.ThreadsPerPod
				if row.KernelProcs > 0 {
					rss, _ := b.res.value("mem", h, m, "kernel_rss_kib")
					hs.Kernel = kernelRow{Known: true, Procs: row.KernelProcs / float64(m), PSSKiB: row.KernelPSSKiB / float64(m),
						RSSKiB: rss / float64(m), FromPods: m, FromRound: fmt.Sprintf("%d pods running", m)}
				}
			}
		}
		if ps := b.res.values("seq", h, b.o.n, "kernel_pss_kib"); len(ps) > 0 {
			hs.Kernel = kernelRow{Known: true, Procs: summarize(b.res.values("seq", h, b.o.n, "kernel_procs")).P50,
				PSSKiB: summarize(ps).P50, RSSKiB: summarize(b.res.values("seq", h, b.o.n, "kernel_rss_kib")).P50,
				FromPods: 1, FromRound: fmt.Sprintf("median of %d rounds, each pod alone", len(ps))}
		}
		s.Handlers[h] = hs
	}
	// DESIGN.md §8 targets for the runc sandboxer, against the runc shim
	base := s.Handlers["runc"]
	if mr, ok := s.Handlers["magnetar-runc"]; ok && base != nil {
		s.Targets = append(s.Targets, startTarget("magnetar-runc", "start p50 ≤ 0.5× the runc shim", mr, base, 0.5))
		top := maxInt(b.o.memPods)
		var t target
		t = target{Handler: "magnetar-runc", Name: fmt.Sprintf("management PSS at %d pods ≤ 3%% of the shims' + pauses'", top), Limit: 0.03}
		if a, c := mr.Mem[top], base.Mem[top]; a.OK && c.OK && c.PSSKiB > 0 {
			t.Known = true
			t.Value = a.PSSKiB / c.PSSKiB
			t.Met = t.Value <= t.Limit
			t.Text = fmt.Sprintf("%.1f%% (%.1f MiB vs %.1f MiB)", 100*t.Value, a.PSSKiB/1024, c.PSSKiB/1024)
		}
		s.Targets = append(s.Targets, t)
		t = target{Handler: "magnetar-runc", Name: "zero long-lived processes per pod beyond the containers", Limit: 0}
		if mr.MemTopPods > 0 {
			t.Known = true
			t.Value = mr.ProcsPerPod
			t.Met = t.Value <= 0
			t.Text = fmt.Sprintf("%.2f per pod (runc shim: %.2f)", mr.ProcsPerPod, base.ProcsPerPod)
		}
		s.Targets = append(s.Targets, t)
	}
	// issue 14: the gVisor sandboxer against bare runsc (the floor)
	if gv, ok := s.Handlers[b.o.bareFrom]; ok {
		if bare, ok := s.Handlers[bareHandler]; ok {
			s.Targets = append(s.Targets, startTarget(b.o.bareFrom, "pod + container start p50 ≤ 1.2× bare runsc create/start of the same two containers", gv, bare, 1.2))
		}
		t := target{Handler: b.o.bareFrom, Name: "no process of ours per pod (runsc's sandbox, gofers and stubs are the pod's kernel, counted apart)", Limit: 0}
		if gv.MemTopPods > 0 {
			t.Known = true
			t.Value = gv.ProcsPerPod
			t.Met = t.Value <= 0
			t.Text = fmt.Sprintf("%.2f per pod; the pod's kernel: %.1f processes, PSS %.1f MiB per pod", gv.ProcsPerPod, gv.Kernel.Procs, gv.Kernel.PSSKiB/1024)
		}
		s.Targets = append(s.Targets, t)
	}
	return s
}

// startTarget is "h's sequential start p50 ≤ limit × base's".
func startTarget(h, name string, hs, base *handlerSummary, limit float64) target {
	t := target{Handler: h, Name: name, Limit: limit}
	if hs.Seq["total"].N > 0 && base.Seq["total"].N > 0 {
		t.Known = true
		t.Value = hs.Seq["total"].P50 / base.Seq["total"].P50
		t.Met = t.Value <= t.Limit
		t.Text = fmt.Sprintf("%.2f× (%.0f ms vs %.0f ms)", t.Value, hs.Seq["total"].P50, base.Seq["total"].P50)
	}
	return t
}

func fmtMs(x float64) string {
	switch {
	case math.IsNaN(x):
		return "—"
	case x >= 100:
		return fmt.Sprintf("%.0f ms", x)
	default:
		return fmt.Sprintf("%.1f ms", x)
	}
}

func fmtMiB(kib float64) string { return fmt.Sprintf("%.1f MiB", kib/1024) }

func ratio(a, base float64) string {
	if base == 0 || math.IsNaN(a) || math.IsNaN(base) {
		return "—"
	}
	r := a / base
	if r < 0.1 {
		return fmt.Sprintf("%.3f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}

// markdown renders the summary tables (also printed at the end of a run).
func (b *bench) markdown(s *summaryT) string {
	var w strings.Builder
	m := b.res.Meta
	others := []string{}
	for _, h := range b.handlers {
		if h != "runc" {
			others = append(others, h)
		}
	}
	hasBase := slices.Contains(b.handlers, "runc")
	// the ratio columns after a handler's: to the runc shim, and for the
	// gVisor handler to its floor
	bases := func(h string) []string {
		var bs []string
		if h != "runc" && h != bareHandler && hasBase {
			bs = append(bs, "runc")
		}
		if h == b.o.bareFrom && slices.Contains(b.handlers, bareHandler) {
			bs = append(bs, bareHandler)
		}
		return bs
	}
	fmt.Fprintf(&w, "### cribench %s: %s\n\n", m.Started, strings.Join(b.handlers, " vs "))
	fmt.Fprintf(&w, "Machine: %d CPUs (%s), %s RAM, kernel %s, cgroup %s; %s, %s", m.CPUs, m.CPUModel, m.MemTotal, m.Kernel, m.Cgroup, m.Runtime, m.Runc)
	for _, h := range others {
		if v := m.Sandboxers[h]; v != "" {
			fmt.Fprintf(&w, ", %s %s", h, v)
		}
	}
	fmt.Fprintf(&w, ". Load average before %s, after %s.\n\n", m.LoadBefore, m.LoadAfter)
	fmt.Fprintf(&w, "Settings: %d pods per handler one after another; %s pods at once (%d rounds each); management memory at %s pods; one container per pod, PID namespace per %s; handlers interleaved in every phase. Workloads:\n\n",
		b.o.n, joinInts(b.o.parallel, " and "), b.o.parReps, joinInts(b.o.memPods, "/"), m.PidMode)
	w.WriteString(b.workloadNotes())

	w.WriteString(b.handlerTable(s))

	// headline table
	w.WriteString("| metric |")
	for _, h := range b.handlers {
		fmt.Fprintf(&w, " %s |", handlerTitle(h))
		for _, base := range bases(h) {
			fmt.Fprintf(&w, " %s / %s |", h, handlerTitle(base))
		}
	}
	w.WriteString("\n|---|")
	for _, h := range b.handlers {
		w.WriteString(strings.Repeat("--:|", 1+len(bases(h))))
	}
	w.WriteString("\n")
	row := func(label string, get func(hs *handlerSummary) (float64, bool), format func(float64) string) {
		fmt.Fprintf(&w, "| %s |", label)
		for _, h := range b.handlers {
			v, ok := get(s.Handlers[h])
			if !ok {
				w.WriteString(" — |")
			} else {
				fmt.Fprintf(&w, " %s |", format(v))
			}
			for _, bh := range bases(h) {
				var base float64
				baseOK := false
				if hs := s.Handlers[bh]; hs != nil {
					base, baseOK = get(hs)
				}
				if ok && baseOK {
					fmt.Fprintf(&w, " %s |", ratio(v, base))
				} else {
					w.WriteString(" — |")
				}
			}
		}
		w.WriteString("\n")
	}
	seq := func(step string, f func(d dist) float64) func(hs *handlerSummary) (float64, bool) {
		return func(hs *handlerSummary) (float64, bool) { d := hs.Seq[step]; return f(d), d.N > 0 }
	}
	p50 := func(d dist) float64 { return d.P50 }
	p90 := func(d dist) float64 { return d.P90 }
	row("**pod start p50** (RunPodSandbox + CreateContainer + StartContainer, sequential)", seq("total", p50), fmtMs)
	row("pod start p90 (sequential)", seq("total", p90), fmtMs)
	row("RunPodSandbox p50", seq("run", p50), fmtMs)
	row("CreateContainer p50", seq("create", p50), fmtMs)
	row("StartContainer p50", seq("start", p50), fmtMs)
	row(fmt.Sprintf("%d pods one after another (sum of starts)", b.o.n), func(hs *handlerSummary) (float64, bool) { return hs.SeqSum, hs.Seq["total"].N > 0 }, fmtMs)
	for _, p := range b.o.parallel {
		row(fmt.Sprintf("%d pods at once: all running (wall, p50 of rounds)", p), func(hs *handlerSummary) (float64, bool) {
			d := hs.Par[p].Wall
			return d.P50, d.N > 0
		}, fmtMs)
	}
	memGet := func(pods int, f func(r memRow) float64) func(hs *handlerSummary) (float64, bool) {
		return func(hs *handlerSummary) (float64, bool) {
			r := hs.Mem[pods]
			switch pods {
			case 0:
				r = hs.Idle
			case -1:
				r = hs.IdleAfter
			}
			return f(r), r.OK
		}
	}
	pss := func(r memRow) float64 { return r.PSSKiB }
	top := maxInt(b.o.memPods)
	count := func(x float64) string { return fmt.Sprintf("%.0f", x) }
	per := func(x float64) string { return fmt.Sprintf("%.2f", x) }
	row("management PSS, no pod (fixed cost)", memGet(0, pss), fmtMiB)
	for _, p := range b.o.memPods {
		row(fmt.Sprintf("**management PSS, %d pods**", p), memGet(p, pss), fmtMiB)
	}
	if top > 0 {
		row(fmt.Sprintf("management PSS growth per pod (%d pods vs none)", top), memGet(top, func(r memRow) float64 { return r.PSSPerPodKiB }), func(x float64) string { return fmt.Sprintf("%.0f KiB", x) })
		row(fmt.Sprintf("management RSS, %d pods", top), memGet(top, func(r memRow) float64 { return r.RSSKiB }), fmtMiB)
		row(fmt.Sprintf("management USS (private), %d pods", top), memGet(top, func(r memRow) float64 { return r.USSKiB }), fmtMiB)
		row(fmt.Sprintf("management processes, %d pods", top), memGet(top, func(r memRow) float64 { return r.Procs }), count)
		row(fmt.Sprintf("management threads, %d pods", top), memGet(top, func(r memRow) float64 { return r.Threads }), count)
		// at the largest pod count each handler measured (a capped one's is lower)
		perPod := func(f func(hs *handlerSummary) float64) func(hs *handlerSummary) (float64, bool) {
			return func(hs *handlerSummary) (float64, bool) { return f(hs), hs.MemTopPods > 0 }
		}
		row("**processes per pod** beyond the containers' own (at the most pods measured)", perPod(func(hs *handlerSummary) float64 { return hs.ProcsPerPod }), per)
		row("threads per pod beyond the containers' own", perPod(func(hs *handlerSummary) float64 { return hs.ThreadsPerPod }), per)
	}
	kernel := func(f func(k kernelRow) float64) func(hs *handlerSummary) (float64, bool) {
		return func(hs *handlerSummary) (float64, bool) { return f(hs.Kernel), hs.Kernel.Known }
	}
	for _, p := range b.o.memPods {
		row(fmt.Sprintf("pod kernels PSS, %d pods (gVisor: runsc; VM: QEMU + virtiofsd)", p), func(hs *handlerSummary) (float64, bool) {
			r := hs.Mem[p]
			return r.KernelPSSKiB, r.OK && r.KernelProcs > 0
		}, fmtMiB)
	}
	row("**pod kernel per pod** (gVisor: runsc sandbox + gofers + stubs; VM: QEMU + virtiofsd), processes", kernel(func(k kernelRow) float64 { return k.Procs }), per)
	row("pod kernel PSS per pod", kernel(func(k kernelRow) float64 { return k.PSSKiB }), fmtMiB)
	row("management PSS, no pod, after all phases (heap kept)", memGet(-1, pss), fmtMiB)
	row("management threads, no pod, after all phases", memGet(-1, func(r memRow) float64 { return r.Threads }), count)
	row(fmt.Sprintf("teardown of %d pods (Stop + Remove, one by one)", b.o.n), func(hs *handlerSummary) (float64, bool) { return hs.SeqTeardown, hs.Seq["teardown"].N > 0 }, fmtMs)
	if top > 0 {
		row(fmt.Sprintf("teardown of %d pods", top), memGet(top, func(r memRow) float64 { return r.TeardownMs }), fmtMs)
		row(fmt.Sprintf("containerd RSS with %d pods (context)", top), memGet(top, func(r memRow) float64 { return r.ContainerdRSS }), fmtMiB)
	}
	w.WriteString("\nManagement processes: runc = every containerd-shim-runc-v2 of this containerd + the pause processes; a magnetar handler = its sandboxer daemon + task keeper + per-pod inits (none unless the pod shares one PID namespace). Containers' own processes are excluded, and so is a pod's kernel: a gVisor pod's runsc sandbox, its gofers and systrap stubs, a VM pod's QEMU and virtiofsd (the pod kernel rows: the median over the sequential rounds, measured right after each start, for " + bareHandler + " and the gVisor handler alike, and for the VM handler; the memory phase's figure where there are none). PSS/RSS/USS from /proc/<pid>/smaps_rollup.\n\n")
	if slices.Contains(b.handlers, bareHandler) {
		fmt.Fprintf(&w, "%s: the floor of %s: the two containers its sandboxer gives runsc for a pod (root container: the pause; application container: busybox `sleep 3600`), their specs captured from a pod of this run and replayed with `runsc create` + `runsc start` each, the same runsc binary and global flags, the same --root layout, in an empty network namespace made beforehand (untimed), no containerd, no CNI. Its \"RunPodSandbox\" is the root container's create + start, \"CreateContainer\" and \"StartContainer\" the application container's; teardown is `runsc delete --force` of both. Sequential phase only, interleaved with the CRI handlers.\n\n", bareHandler, b.o.bareFrom)
	}

	// distributions
	fmt.Fprintf(&w, "Sequential start, per step (%d pods per handler):\n\n", b.o.n)
	w.WriteString("| handler | step | p50 | p90 | min | max | mean |\n|---|---|--:|--:|--:|--:|--:|\n")
	for _, h := range b.handlers {
		for _, st := range seqSteps {
			d := s.Handlers[h].Seq[st.key]
			if d.N == 0 {
				continue
			}
			fmt.Fprintf(&w, "| %s | %s | %s | %s | %s | %s | %s |\n", h, st.label, fmtMs(d.P50), fmtMs(d.P90), fmtMs(d.Min), fmtMs(d.Max), fmtMs(d.Mean))
		}
	}
	w.WriteString("\nParallel start:\n\n| handler | pods | wall p50 | wall min | wall max | per-pod start p50 | per-pod p90 | teardown p50 |\n|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, p := range b.o.parallel {
		for _, h := range b.handlers {
			r := s.Handlers[h].Par[p]
			if r.Wall.N == 0 {
				continue
			}
			fmt.Fprintf(&w, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", h, p, fmtMs(r.Wall.P50), fmtMs(r.Wall.Min), fmtMs(r.Wall.Max), fmtMs(r.PerPod.P50), fmtMs(r.PerPod.P90), fmtMs(r.Teardown.P50))
		}
	}
	w.WriteString("\nManagement memory (pods 0 = before the first pod; \"after\" = no pod, after all phases):\n\n| handler | pods | processes | threads | PSS | RSS | USS | PSS MiB by group (processes) | containerd RSS |\n|---|--:|--:|--:|--:|--:|--:|---|--:|\n")
	for _, h := range b.handlers {
		hs := s.Handlers[h]
		rows := []memRow{hs.Idle}
		for _, p := range b.o.memPods {
			rows = append(rows, hs.Mem[p])
		}
		after := hs.IdleAfter
		after.Pods = -1
		rows = append(rows, after)
		for _, r := range rows {
			if !r.OK {
				continue
			}
			pods := fmt.Sprint(r.Pods)
			if r.Pods < 0 {
				pods = "after"
			}
			fmt.Fprintf(&w, "| %s | %s | %.0f | %.0f | %s | %s | %s | %s | %s |\n", h, pods, r.Procs, r.Threads, fmtMiB(r.PSSKiB), fmtMiB(r.RSSKiB), fmtMiB(r.USSKiB), r.Breakdown, fmtMiB(r.ContainerdRSS))
		}
	}
	if len(s.Targets) > 0 {
		w.WriteString("\nTargets (DESIGN.md §8; issue 14 for gVisor):\n\n")
		for _, t := range s.Targets {
			state := "not measured"
			if t.Known {
				state = "**missed**"
				if t.Met {
					state = "met"
				}
			}
			fmt.Fprintf(&w, "- %s, %s: %s — %s\n", t.Handler, t.Name, t.Text, state)
		}
	}
	pass, fail := b.res.counts()
	fmt.Fprintf(&w, "\nChecks: %d passed, %d failed", pass, fail)
	for _, c := range b.res.Checks {
		if !c.OK {
			fmt.Fprintf(&w, "; FAIL %s: %s", c.Name, c.Detail)
		}
	}
	w.WriteString(".\n")
	return w.String()
}

func maxInt(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func handlerTitle(h string) string {
	switch h {
	case "runc":
		return "runc shim (+pause)"
	case bareHandler:
		return "bare runsc"
	case "magnetar-wasm":
		return "magnetar-wasm (wasmtime)"
	case "magnetar-wasm-wazero":
		return "magnetar-wasm-wazero (wazero)"
	case "magnetar-vmm":
		return "magnetar-vmm (QEMU)"
	}
	return h
}

func joinInts(xs []int, sep string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, sep)
}

// workloadNotes says what each handler's pods run and which phase steps a
// handler left out (-cap), one list item each.
func (b *bench) workloadNotes() string {
	var w strings.Builder
	m := b.res.Meta
	for _, h := range b.handlers {
		wl := m.Workloads[h]
		if wl == "" {
			wl = b.o.workloadOf(h).String()
		}
		fmt.Fprintf(&w, "- %s: %s", h, wl)
		if c, ok := b.o.caps[h]; ok {
			var out []string
			if c.Rounds > 0 && c.Rounds < b.o.parReps && len(b.o.parallel) > 0 {
				out = append(out, fmt.Sprintf("%d round(s) of the parallel phase instead of %d", c.Rounds, b.o.parReps))
			}
			for _, p := range b.o.parallel {
				if p > c.Pods {
					out = append(out, fmt.Sprintf("%d at once left out", p))
				}
			}
			for _, p := range b.o.memPods {
				if p > c.Pods {
					out = append(out, fmt.Sprintf("memory at %d pods left out", p))
				}
			}
			if len(out) > 0 {
				fmt.Fprintf(&w, "; **capped at %d pods at once: %s**", c.Pods, strings.Join(out, "; "))
				if b.o.capNote != "" {
					fmt.Fprintf(&w, " (%s)", b.o.capNote)
				}
			}
		}
		w.WriteString("\n")
	}
	w.WriteString("\n")
	return w.String()
}

// handlerTable is the run in one row per handler (README's table): its
// workload, sequential start p50 and its ratio to the runc shim's, p90 /
// min / max, the parallel walls, management PSS at each memory pod count,
// processes per pod and the pod kernel per pod.
func (b *bench) handlerTable(s *summaryT) string {
	var w strings.Builder
	base := s.Handlers["runc"]
	w.WriteString("| handler | workload | pod start p50 | ÷ runc shim | p90 / min / max |")
	for _, p := range b.o.parallel {
		fmt.Fprintf(&w, " %d at once |", p)
	}
	for _, p := range b.o.memPods {
		fmt.Fprintf(&w, " PSS %d pod(s) |", p)
	}
	w.WriteString(" processes per pod | pod kernel per pod |\n|---|---|--:|--:|--:|")
	w.WriteString(strings.Repeat("--:|", len(b.o.parallel)+len(b.o.memPods)+2))
	w.WriteString("\n")
	ms0 := func(x float64) string { return fmt.Sprintf("%.0f", x) }
	for _, h := range b.handlers {
		hs := s.Handlers[h]
		wl := "busybox `sleep 3600`"
		if wasmHandler(h) {
			wl = "wasm C module `sleep 3600`"
		}
		d := hs.Seq["total"]
		if d.N == 0 {
			fmt.Fprintf(&w, "| %s | %s | — | — | — |", handlerTitle(h), wl)
		} else {
			r := "1×"
			if h != "runc" && base != nil {
				r = ratio(d.P50, base.Seq["total"].P50)
			}
			fmt.Fprintf(&w, "| %s | %s | %s | %s | %s / %s / %s ms |", handlerTitle(h), wl, fmtMs(d.P50), r, ms0(d.P90), ms0(d.Min), ms0(d.Max))
		}
		for _, p := range b.o.parallel {
			switch pr := hs.Par[p]; {
			case b.o.capped(h, p):
				w.WriteString(" capped |")
			case pr.Wall.N > 0:
				fmt.Fprintf(&w, " %s |", fmtMs(pr.Wall.P50))
			default:
				w.WriteString(" — |")
			}
		}
		for _, p := range b.o.memPods {
			switch r := hs.Mem[p]; {
			case b.o.capped(h, p):
				w.WriteString(" capped |")
			case r.OK:
				fmt.Fprintf(&w, " %s |", fmtMiB(r.PSSKiB))
			default:
				w.WriteString(" — |")
			}
		}
		if hs.MemTopPods > 0 {
			fmt.Fprintf(&w, " %.2f |", hs.ProcsPerPod)
		} else {
			w.WriteString(" — |")
		}
		if hs.Kernel.Known {
			fmt.Fprintf(&w, " %.0f processes, %s |", hs.Kernel.Procs, fmtMiB(hs.Kernel.PSSKiB))
		} else {
			w.WriteString(" — |")
		}
		w.WriteString("\n")
	}
	w.WriteString("\n")
	return w.String()
}
