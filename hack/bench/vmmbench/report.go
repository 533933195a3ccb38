package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/magnetar-runtime/magnetar/hack/bench/internal/hostproc"
)

// results is everything a run measured (samples.json).
type results struct {
	Handler   string            `json:"handler"`
	Runs      int               `json:"runs"`
	Smoke     bool              `json:"smoke"`
	Accel     string            `json:"accel"`
	GuestMiB  int               `json:"guest_memory_mib"`
	Commit    string            `json:"commit,omitempty"`
	Machine   map[string]string `json:"machine"`
	Image     map[string]string `json:"image"`
	Started   time.Time         `json:"started"`
	Ended     time.Time         `json:"ended"`
	LoadStart [3]float64        `json:"load_start"`
	LoadEnd   [3]float64        `json:"load_end"`
	Error     string            `json:"error,omitempty"`

	Bare []bareSample `json:"bare"`
	Pods []podSample  `json:"pods"`

	Mem             []memPoint `json:"memory"`
	MemStarts       []memStart `json:"memory_pod_starts"`
	MemNote         string     `json:"memory_note,omitempty"`
	MemTeardown     float64    `json:"memory_teardown_ms"`
	MemTeardownPods int        `json:"memory_teardown_pods"`

	Summary string `json:"summary"`
}

// stat is the median, min and max of the values >= 0.
type stat struct {
	Med, Min, Max float64
	N             int
}

func stats(v []float64) stat {
	var x []float64
	for _, f := range v {
		if f >= 0 {
			x = append(x, f)
		}
	}
	if len(x) == 0 {
		return stat{Med: -1, Min: -1, Max: -1}
	}
	slices.Sort(x)
	med := x[len(x)/2]
	if len(x)%2 == 0 {
		med = (x[len(x)/2-1] + x[len(x)/2]) / 2
	}
	return stat{Med: med, Min: x[0], Max: x[len(x)-1], N: len(x)}
}

func (r *results) pods(variant string) []podSample {
	var out []podSample
	for _, p := range r.Pods {
		if p.Variant == variant {
			out = append(out, p)
		}
	}
	return out
}

func pickPod(ps []podSample, f func(podSample) float64) []float64 {
	out := make([]float64, len(ps))
	for i, p := range ps {
		out[i] = f(p)
	}
	return out
}

func pickBare(bs []bareSample, f func(bareSample) float64) []float64 {
	out := make([]float64, len(bs))
	for i, b := range bs {
		out[i] = f(b)
	}
	return out
}

func f0(v float64) string {
	if v < 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func pct(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", v*100)
}

func ratio(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return -1
	}
	return a / b
}

func kib(v float64) string {
	if v < 0 {
		return "-"
	}
	if v >= 10240 || v <= -10240 {
		return fmt.Sprintf("%.1f MiB", v/1024)
	}
	return fmt.Sprintf("%.0f KiB", v)
}

// report writes the table (and fills r.Summary).
func (r *results) report(w io.Writer) {
	fmt.Fprintf(w, "bench-vmm: %s, %d run(s) of each variant interleaved (order rotating); QEMU microvm, accel %s, guest %d MiB / 1 vCPU; kernel %s, %s modules, agent initramfs %s bytes\n",
		r.Handler, r.Runs, r.Accel, r.GuestMiB, r.Image["kernel"], r.Image["modules"], r.Image["initramfs_bytes"])
	fmt.Fprintf(w, "machine: %s; load average at start %.2f %.2f %.2f, at end %.2f %.2f %.2f; %s → %s (%s)\n",
		r.Machine["summary"], r.LoadStart[0], r.LoadStart[1], r.LoadStart[2], r.LoadEnd[0], r.LoadEnd[1], r.LoadEnd[2],
		r.Started.Format("15:04:05"), r.Ended.Format("15:04:05"), r.Ended.Sub(r.Started).Round(time.Second))
	if r.Commit != "" {
		fmt.Fprintf(w, "commit: %s\n", r.Commit)
	}
	fmt.Fprintln(w, "sources: H host-timed (our clock or a host log's timestamps), G guest-measured (the agent's or marker's clock), D derived (host arrival − guest-measured)")
	rp, cc := r.pods("runp"), r.pods("crictl")

	// --- headline
	fmt.Fprintln(w, "\n== Pod start vs the bare guest boot (ms)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tmedian\tmin\tmax\tn\tsrc\t")
	row := func(name, src string, v []float64) stat {
		s := stats(v)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t\n", name, f0(s.Med), f0(s.Min), f0(s.Max), s.N, src)
		return s
	}
	bare := row("bare guest boot: QEMU start → marker /init (vmboot's measure)", "H", pickBare(r.Bare, func(b bareSample) float64 { return b.ToInit }))
	runp := row("RunPodSandbox on "+r.Handler+" (CRI call)", "H", pickPod(rp, func(p podSample) float64 { return p.RunPod }))
	pc := row("pod + container via crictl: runp + create + start → RUNNING", "H", pickPod(cc, func(p podSample) float64 { return p.Total }))
	crunp := row("  of which crictl runp (process)", "H", pickPod(cc, func(p podSample) float64 { return p.RunPod }))
	tw.Flush()
	rRunp, rPC := ratio(runp.Med, bare.Med), ratio(pc.Med, bare.Med)
	fmt.Fprintf(w, "ratio RunPodSandbox / bare boot: %s (DESIGN.md §8 target ≤ 1.3×)%s\n", times(rRunp), verdict(rRunp, 1.3))
	fmt.Fprintf(w, "ratio crictl runp / bare boot: %s; pod + container running / bare boot: %s\n", times(ratio(crunp.Med, bare.Med)), times(rPC))

	// --- bare boot
	fmt.Fprintln(w, "\n== Bare guest boot (marker image, same kernel and modules, trivial /init; ms)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tmedian\tmin\tmax\tn\tsrc\t")
	bVMM := row("VMM start: QEMU start → QMP greeting", "H", pickBare(r.Bare, func(b bareSample) float64 { return b.VMMStart }))
	bK := row("kernel: QMP greeting → /init", "H", pickBare(r.Bare, func(b bareSample) float64 { return b.Kernel }))
	row("guest clock (CLOCK_BOOTTIME) at /init", "G", pickBare(r.Bare, func(b bareSample) float64 { return b.GuestInit }))
	row("the marker loading the same modules", "G", pickBare(r.Bare, func(b bareSample) float64 { return b.Modules }))
	row("QEMU start → modules loaded", "H", pickBare(r.Bare, func(b bareSample) float64 { return b.ToModules }))
	tw.Flush()

	// --- pod start breakdown
	fmt.Fprintln(w, "\n== RunPodSandbox, step by step (ms; the steps add up to the RunPodSandbox row)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\trunp median\tmin\tmax\tcrictl median\tsrc\tfrom\t")
	prow := func(name, src, from string, f func(podSample) float64) (stat, stat) {
		a, b := stats(pickPod(rp, f)), stats(pickPod(cc, f))
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, f0(a.Med), f0(a.Min), f0(a.Max), f0(b.Med), src, from)
		return a, b
	}
	prow("caller → containerd's RunPodSandbox", "H", "our clock → containerd log (crictl: its process start)", func(p podSample) float64 { return p.CallToCRI })
	prow("containerd: netns, CNI, metadata", "H", "containerd log → sandboxer \"pod created\"", func(p podSample) float64 { return p.Before })
	prow("sandboxer: Create, Start up to the network", "H", "sandboxer log", func(p podSample) float64 { return p.SbCreate })
	prow("sandboxer: pod network (taps, tc)", "H", "sandboxer log (stages)", func(p podSample) float64 { return p.Network })
	pVMM, _ := prow("VMM start: virtiofsd + QEMU → QMP greeting", "H", "sandboxer log", func(p podSample) float64 { return p.VMMStart })
	prow("  of which virtiofsd up (before QEMU starts)", "H", "sandboxer log", func(p podSample) float64 { return p.Virtiofsd })
	pK, pKc := prow("kernel: QMP greeting → agent main()", "D", "console arrival − agent elapsed", func(p podSample) float64 { return p.Kernel })
	prow("agent init: mounts + modules + share", "G", "agent \"guest initialised\"", func(p podSample) float64 { return p.AgentInit })
	prow("  of which modules (20)", "G", "t_modules", func(p podSample) float64 { return p.Modules })
	prow("  of which share mount (virtio-fs)", "G", "t_share", func(p podSample) float64 { return p.Share })
	prow("agent: initialised → serving", "H", "console arrivals", func(p podSample) float64 { return p.InitToServing })
	prow("agent serving → sandboxer connected (first Health)", "H", "console → sandboxer \"agent connected\"", func(p podSample) float64 { return p.ServingToReady })
	prow("sandboxer: Setup + clock sync", "H", "sandboxer log", func(p podSample) float64 { return p.Setup })
	prow("  of which until the agent's \"sandbox set up\"", "H", "sandboxer log → console arrival", func(p podSample) float64 { return p.SetupGuest })
	prow("sandboxer: running → \"sandbox started\"", "H", "sandboxer log", func(p podSample) float64 { return p.SbAfter })
	prow("containerd after the sandboxer", "H", "sandboxer → containerd log", func(p podSample) float64 { return p.After })
	prow("containerd → caller", "H", "containerd log → our clock (crictl: its exit)", func(p podSample) float64 { return p.CRIToCaller })
	prow("= sum of the steps", "", "", func(p podSample) float64 { return p.pieceSum() })
	prow("RunPodSandbox as the caller saw it", "H", "our clock", func(p podSample) float64 { return p.RunPod })
	prow("containerd's RunPodSandbox", "H", "containerd log", func(p podSample) float64 { return p.CRIRunPod })
	prow("sandboxer \"pod VM ready\": vmm_ms", "H", "daemon-timed: network + VMM start", func(p podSample) float64 { return p.DVMM })
	prow("sandboxer \"pod VM ready\": agent_ms", "H", "daemon-timed: QMP → first Health", func(p podSample) float64 { return p.DAgent })
	prow("sandboxer \"pod VM ready\": setup_ms", "H", "daemon-timed", func(p podSample) float64 { return p.DSetup })
	prow("sandboxer \"pod VM ready\": total_ms", "H", "daemon-timed: Start", func(p podSample) float64 { return p.DTotal })
	prow("StopPodSandbox (after the start)", "H", "our clock", func(p podSample) float64 { return p.Stop })
	prow("RemovePodSandbox", "H", "our clock", func(p podSample) float64 { return p.Remove })
	tw.Flush()
	if pVMM.Med >= 0 && bVMM.Med >= 0 {
		fmt.Fprintf(w, "VMM start: pod %s ms vs bare %s ms (the pod's includes starting virtiofsd first; the bare boot's clock starts at QEMU's exec)\n", f0(pVMM.Med), f0(bVMM.Med))
	}
	if pK.Med >= 0 && bK.Med >= 0 {
		fmt.Fprintf(w, "kernel to the agent's main() %s ms (crictl pods %s) vs to the marker's /init %s ms: %+.0f ms (a %s-byte initramfs to unpack vs the marker's %s, and the agent's Go package init vs markerinit's)\n",
			f0(pK.Med), f0(pKc.Med), f0(bK.Med), pK.Med-bK.Med, r.Image["initramfs_bytes"], r.Image["marker_initramfs_bytes"])
	}

	// --- container
	if len(cc) > 0 {
		fmt.Fprintln(w, "\n== The container through crictl, step by step (ms)")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\tmedian\tmin\tmax\tn\tsrc\tfrom\t")
		crow := func(name, src, from string, f func(podSample) float64) stat {
			s := stats(pickPod(cc, f))
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n", name, f0(s.Med), f0(s.Min), f0(s.Max), s.N, src, from)
			return s
		}
		crow("crictl runp (the pod, above)", "H", "our clock", func(p podSample) float64 { return p.RunPod })
		crow("crictl create", "H", "our clock", func(p podSample) float64 { return p.CrictlCreate })
		crow("  containerd's CreateContainer", "H", "containerd log", func(p podSample) float64 { return p.CRICreate })
		crow("crictl start", "H", "our clock", func(p podSample) float64 { return p.CrictlStart })
		crow("  crictl start → Task.Create in the sandboxer", "H", "our clock → the container's dir in the share", func(p podSample) float64 { return p.StartToTask })
		crow("  share/rootfs: rootfs + mounts into the share, config.json", "H", "dir → config.json in the share", func(p podSample) float64 { return p.ShareRootfs })
		crow("  runc create in the guest (Task.Create forwarded)", "H", "config.json → sandboxer \"container created in the guest\"", func(p podSample) float64 { return p.GuestCreate })
		crow("  runc start in the guest (Task.Start forwarded)", "H", "→ containerd \"StartContainer … returns\"", func(p podSample) float64 { return p.GuestStart })
		crow("  StartContainer returned → crictl exits", "H", "containerd log → our clock", func(p podSample) float64 { return p.StartToExit })
		crow("  containerd's StartContainer", "H", "containerd log", func(p podSample) float64 { return p.CRIStart })
		crow("crictl start exit → RUNNING", "H", "ContainerStatus", func(p podSample) float64 { return p.UntilRunning })
		crow("our gaps between the crictl processes", "H", "our clock", func(p podSample) float64 {
			if p.CreateGap < 0 || p.StartGap < 0 {
				return -1
			}
			return p.CreateGap + p.StartGap
		})
		crow("  of which the agent starting a pod init (shared PID ns)", "H", "config.json → console \"pod init started\"", func(p podSample) float64 { return p.PodInit })
		tw.Flush()
		var skew []float64
		for _, p := range cc {
			if p.AgentCreated != nil {
				skew = append(skew, *p.AgentCreated)
			}
		}
		if len(skew) > 0 {
			slices.Sort(skew)
			fmt.Fprintf(w, "cross-check: the sandboxer's \"container created in the guest\" − the agent's \"container created\" (guest clock, synced at Setup): %.0f … %.0f ms\n", skew[0], skew[len(skew)-1])
		}
	}

	// --- own share
	fmt.Fprintln(w, "\n== Magnetar's own share of a pod start (DESIGN.md §8: all but kernel boot and runc in the guest ≤ 10%)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tmedian\tmin\tmax\tn\t")
	share := func(name string, ps []podSample, f func(podSample) float64) stat {
		s := stats(pickPod(ps, f))
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t\n", name, pct(s.Med), pct(s.Min), pct(s.Max), s.N)
		return s
	}
	ownR := share("RunPodSandbox: all but kernel boot", rp, func(p podSample) float64 { return p.ownShare() })
	ownC := share("pod + container (crictl): all but kernel boot and runc", cc, func(p podSample) float64 { return p.ownShare() })
	codeR := share("RunPodSandbox: Magnetar's code alone (no containerd/CNI, no QEMU start)", rp, func(p podSample) float64 { return ratio(p.magnetarCode(), p.Total) })
	share("pod + container: Magnetar's code alone", cc, func(p podSample) float64 { return ratio(p.magnetarCode(), p.Total) })
	share("RunPodSandbox: Magnetar's code without module loading", rp, func(p podSample) float64 {
		if p.magnetarCode() < 0 || p.Modules < 0 {
			return -1
		}
		return ratio(p.magnetarCode()-p.Modules, p.Total)
	})
	tw.Flush()
	fmt.Fprintln(w, "kernel boot = QMP greeting → the agent's main() of the same boot (so the agent's initramfs unpack and Go runtime init count as kernel);")
	fmt.Fprintln(w, "runc in the guest = the forwarded Task.Create + Task.Start (an upper bound); Magnetar's code = sandboxer Create/network/Setup/bookkeeping,")
	fmt.Fprintln(w, "the container's share, the agent's init (mounts, module loading, share mount) and its start of serving up to the first Health.")

	// --- memory
	var growth, hostPer, idleCPU float64 = -1, -1, -1
	var topPods int
	if len(r.Mem) > 0 {
		fmt.Fprintln(w, "\n== Sandboxer memory with N running pods (one sleeping busybox container each; medians of 3 snapshots 1 s apart)")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "pods\tdaemon RSS\tdaemon PSS\tkeeper RSS\tkeeper PSS\tdaemon+keeper PSS\tPSS growth/pod\tRSS growth/pod\tdaemon threads\tload1\t")
		base := r.Mem[0]
		baseP := medSnap(base, func(s memSnap) float64 { return float64(s.Daemon.PSS + s.Keeper.PSS) })
		baseR := medSnap(base, func(s memSnap) float64 { return float64(s.Daemon.RSS + s.Keeper.RSS) })
		var vmRows []string
		for _, p := range r.Mem {
			dR := medSnap(p, func(s memSnap) float64 { return float64(s.Daemon.RSS) })
			dP := medSnap(p, func(s memSnap) float64 { return float64(s.Daemon.PSS) })
			kR := medSnap(p, func(s memSnap) float64 { return float64(s.Keeper.RSS) })
			kP := medSnap(p, func(s memSnap) float64 { return float64(s.Keeper.PSS) })
			th := medSnap(p, func(s memSnap) float64 { return float64(s.Daemon.Threads) })
			g, gr := "-", "-"
			if p.Pods > 0 {
				gp := (dP + kP - baseP) / float64(p.Pods)
				g, gr = kib(gp), kib((dR+kR-baseR)/float64(p.Pods))
				qp := medSnap(p, func(s memSnap) float64 { return perVM(s, func(c vmCost) int64 { return c.QEMU.PSS }) })
				vp := medSnap(p, func(s memSnap) float64 { return perVM(s, func(c vmCost) int64 { return c.Virtiofsd.PSS }) })
				qr := medSnap(p, func(s memSnap) float64 { return perVM(s, func(c vmCost) int64 { return c.QEMU.RSS }) })
				gram := medSnap(p, func(s memSnap) float64 { return perVM(s, func(c vmCost) int64 { return c.GuestPSS }) })
				c := medSnap(p, func(s memSnap) float64 {
					sum := 0.0
					for _, x := range s.VMs {
						sum += x.CPUPct
					}
					return sum / float64(max(1, len(s.VMs)))
				})
				vmRows = append(vmRows, fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.1f%%\t", p.Pods, kib(qp+vp), kib(gram), kib(qp+vp-gram),
					kib(qp), kib(vp), kib(qr), (qp+vp)/1024/float64(r.GuestMiB), c))
				growth, hostPer, idleCPU, topPods = gp, qp+vp, c, p.Pods
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.2f\t\n", p.Pods, kib(dR), kib(dP), kib(kR), kib(kP), kib(dP+kP), g, gr, th, p.Load1)
		}
		tw.Flush()
		if top := r.Mem[len(r.Mem)-1]; top.Pods > 0 {
			n := float64(top.Pods)
			d := medSnap(top, func(s memSnap) float64 { return float64(s.Daemon.PSS) }) - medSnap(base, func(s memSnap) float64 { return float64(s.Daemon.PSS) })
			k := medSnap(top, func(s memSnap) float64 { return float64(s.Keeper.PSS) }) - medSnap(base, func(s memSnap) float64 { return float64(s.Keeper.PSS) })
			o := medSnap(top, func(s memSnap) float64 { return float64(s.Other.Procs) })
			fmt.Fprintf(w, "PSS growth per pod at %d pods: daemon %s, keeper %s; other processes below the daemon: %.0f (PSS absolute values move with what else maps the same binary: compare growth, or RSS)\n",
				top.Pods, kib(d/n), kib(k/n), o)
		}
		if len(vmRows) > 0 {
			fmt.Fprintf(w, "\n== Host cost per pod VM (means over the VMs; guest memory %d MiB, 1 vCPU)\n", r.GuestMiB)
			tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "pods\tQEMU+virtiofsd PSS\tof which guest RAM (memfd)\tVMM's own\tQEMU PSS\tvirtiofsd PSS\tQEMU RSS\tPSS ÷ guest size\tidle CPU (% of a core)\t")
			for _, l := range vmRows {
				fmt.Fprintln(tw, l)
			}
			tw.Flush()
		}
		fmt.Fprintf(w, "target: sandboxer (daemon + keeper) memory growth ≤ 256 KiB per pod (DESIGN.md §8)%s. Guest RAM is a memfd (share=on) that QEMU and virtiofsd both map:\n", verdict(ratio(growth, 256), 1))
		fmt.Fprintln(w, "PSS splits what both touched; the VMM's own = QEMU + virtiofsd PSS − guest RAM (TCG code cache, heap, libraries).")
		if len(r.MemStarts) > 0 {
			var parts []string
			for _, s := range r.MemStarts {
				parts = append(parts, fmt.Sprintf("%d:%s+%s", s.Idle, f0(s.RunPod), f0(s.Container)))
			}
			fmt.Fprintf(w, "pod starts in the memory phase (idle pods already running: RunPodSandbox + container ms): %s\n", strings.Join(parts, " "))
		}
		if r.MemTeardownPods > 0 {
			fmt.Fprintf(w, "teardown of the %d pods (StopPodSandbox + RemovePodSandbox, one after the other): %s ms\n", r.MemTeardownPods, f0(r.MemTeardown))
		}
		if r.MemNote != "" {
			fmt.Fprintf(w, "memory phase: %s\n", r.MemNote)
		}
	}
	if r.Error != "" {
		fmt.Fprintf(w, "\nERROR: %s\n", r.Error)
	}

	// --- summary
	var sb strings.Builder
	fmt.Fprintf(&sb, "bench-vmm: ")
	if r.Error != "" {
		fmt.Fprintf(&sb, "FAILED (%s); ", firstLine(r.Error))
	}
	fmt.Fprintf(&sb, "%d run(s), bare boot %s ms, RunPodSandbox %s ms (%s bare, target ≤1.3×), pod+container %s ms (%s)",
		r.Runs, f0(bare.Med), f0(runp.Med), times(rRunp), f0(pc.Med), times(rPC))
	fmt.Fprintf(&sb, ", own share %s runp / %s pod+ctr (target ≤10%%; Magnetar code alone %s)", pct(ownR.Med), pct(ownC.Med), pct(codeR.Med))
	if topPods > 0 {
		fmt.Fprintf(&sb, ", daemon+keeper PSS growth %s/pod at %d pods (target ≤256 KiB), host %s PSS/pod for a %d MiB guest, idle VM CPU %.1f%%", kib(growth), topPods, kib(hostPer), r.GuestMiB, idleCPU)
	}
	fmt.Fprintf(&sb, ", load %.2f→%.2f", r.LoadStart[0], r.LoadEnd[0])
	r.Summary = sb.String()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func times(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", v)
}

// verdict says whether v meets a "≤ target" goal.
func verdict(v, target float64) string {
	switch {
	case v < 0:
		return ""
	case v <= target:
		return ": met"
	default:
		return ": NOT met"
	}
}

func medSnap(p memPoint, f func(memSnap) float64) float64 {
	var v []float64
	for _, s := range p.Snaps {
		v = append(v, f(s))
	}
	return stats(v).Med
}

// perVM is the mean of f over the VMs of a snapshot.
func perVM(s memSnap, f func(vmCost) int64) float64 {
	if len(s.VMs) == 0 {
		return -1
	}
	var sum int64
	for _, c := range s.VMs {
		sum += f(c)
	}
	return float64(sum) / float64(len(s.VMs))
}

// write prints the table and writes table.txt, samples.csv, samples.json
// and summary.txt to dir.
func (r *results) write(dir string) error {
	var b strings.Builder
	r.report(&b)
	fmt.Print(b.String())
	if err := os.WriteFile(filepath.Join(dir, "table.txt"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(r.Summary+"\n"), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "samples.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "samples.csv"), []byte(r.csv()), 0o644)
}

// csv is one row per measured value: kind,run,position,metric,value,unit.
func (r *results) csv() string {
	var b strings.Builder
	b.WriteString("kind,run,position,metric,value,unit\n")
	fields := func(kind string, run, pos int, v any) {
		rv := reflect.ValueOf(v)
		rt := rv.Type()
		for i := 0; i < rt.NumField(); i++ {
			tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			if rv.Field(i).Kind() != reflect.Float64 || tag == "" || tag == "load1" {
				continue
			}
			x := rv.Field(i).Float()
			if x < 0 {
				continue
			}
			unit := "ms"
			tag = strings.TrimSuffix(tag, "_ms")
			fmt.Fprintf(&b, "%s,%d,%d,%s,%.3f,%s\n", kind, run, pos, tag, x, unit)
		}
	}
	for _, s := range r.Bare {
		fields("bare", s.Run, s.Pos, s)
		fmt.Fprintf(&b, "bare,%d,%d,load1,%.2f,\n", s.Run, s.Pos, s.Load1)
	}
	for _, s := range r.Pods {
		fields(s.Variant, s.Run, s.Pos, s)
		if s.AgentCreated != nil {
			fmt.Fprintf(&b, "%s,%d,%d,agent_created_skew,%.3f,ms\n", s.Variant, s.Run, s.Pos, *s.AgentCreated)
		}
		if v := s.ownShare(); v >= 0 {
			fmt.Fprintf(&b, "%s,%d,%d,own_share,%.4f,fraction\n", s.Variant, s.Run, s.Pos, v)
		}
		if v := s.magnetarCode(); v >= 0 {
			fmt.Fprintf(&b, "%s,%d,%d,magnetar_code,%.3f,ms\n", s.Variant, s.Run, s.Pos, v)
		}
		fmt.Fprintf(&b, "%s,%d,%d,load1,%.2f,\n", s.Variant, s.Run, s.Pos, s.Load1)
	}
	for _, p := range r.Mem {
		for i, s := range p.Snaps {
			for _, m := range []struct {
				name string
				m    hostproc.Mem
			}{{"daemon", s.Daemon}, {"keeper", s.Keeper}, {"other", s.Other}} {
				fmt.Fprintf(&b, "mem,%d,%d,%s_rss,%d,KiB\n", p.Pods, i, m.name, m.m.RSS)
				fmt.Fprintf(&b, "mem,%d,%d,%s_pss,%d,KiB\n", p.Pods, i, m.name, m.m.PSS)
			}
			vms := make([]string, 0, len(s.VMs))
			for k := range s.VMs {
				vms = append(vms, k)
			}
			slices.Sort(vms)
			for _, k := range vms {
				c := s.VMs[k]
				fmt.Fprintf(&b, "mem,%d,%d,vm_%s_qemu_pss,%d,KiB\n", p.Pods, i, k, c.QEMU.PSS)
				fmt.Fprintf(&b, "mem,%d,%d,vm_%s_qemu_rss,%d,KiB\n", p.Pods, i, k, c.QEMU.RSS)
				fmt.Fprintf(&b, "mem,%d,%d,vm_%s_virtiofsd_pss,%d,KiB\n", p.Pods, i, k, c.Virtiofsd.PSS)
				fmt.Fprintf(&b, "mem,%d,%d,vm_%s_guest_ram_pss,%d,KiB\n", p.Pods, i, k, c.GuestPSS)
				fmt.Fprintf(&b, "mem,%d,%d,vm_%s_cpu,%.2f,pct\n", p.Pods, i, k, c.CPUPct)
			}
		}
	}
	for _, s := range r.MemStarts {
		fmt.Fprintf(&b, "memstart,%d,0,runpod,%.3f,ms\n", s.Idle, s.RunPod)
		fmt.Fprintf(&b, "memstart,%d,0,container,%.3f,ms\n", s.Idle, s.Container)
	}
	return b.String()
}

// machine describes the host.
func machine() map[string]string {
	m := map[string]string{"cpus": strconv.Itoa(runtime.NumCPU())}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				m["mem_gib"] = fmt.Sprintf("%.0f", float64(n)/1048576)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	m["summary"] = fmt.Sprintf("%s CPUs, %s GiB, kernel %s", m["cpus"], m["mem_gib"], m["kernel"])
	return m
}
