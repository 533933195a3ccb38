package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/hack/bench/internal/hostproc"
)

// The warm pool benchmark (-pool N: the harness's magnetar-vmm keeps N VMs
// of the default shape, hack/bench/vmm.sh BENCH_POOL=1), interleaved and
// rotating like the latency phase:
//
//   - "bare": the marker image's boot (bootBare), the VM shape of the pool;
//   - "warm": RunPodSandbox of a pod without limits, which takes a pool VM,
//     then the sleep container until it runs;
//   - "cold": the same with a pod-level memory limit of coldLimitMiB (its VM
//     is vm.memory_overhead_mib larger, so no pool VM fits it): a boot.
//
// Before each sample the pool is full again (no refill runs beside a
// measurement); the refill after each warm pod (a pool VM's boot to its
// agent's answer, idle host otherwise) is read from the sandboxer's log
// ("pool: VM ready", boot_ms). Then the memory of the idle pool (N ready
// VMs: QEMU + virtiofsd RSS/PSS each) against N idle cold pods' VMs.

// coldLimitMiB is the cold pods' memory limit: 160 MiB + 128 MiB of
// vm.memory_overhead_mib = 288 MiB, not the pool's 256.
const coldLimitMiB = 160

// poolSample is one warm or cold pod start, in ms.
type poolSample struct {
	Run     int     `json:"run"`
	Pos     int     `json:"position"`
	Variant string  `json:"variant"`
	RunPod  float64 `json:"runpod_ms"`  // H: RunPodSandbox
	Total   float64 `json:"pod_ctr_ms"` // H: RunPodSandbox → container running
	PoolVM  string  `json:"pool_vm"`    // the pool VM the pod took ("" cold)
	Load1   float64 `json:"load1"`
	Refill  float64 `json:"refill_ms"`    // H (sandboxer log): the refill's boot after a warm pod
	WaitFor float64 `json:"wait_pool_ms"` // H: from the warm pod's removal until the pool was full again
}

// poolMem is the host memory of VMs: ready pool VMs, or idle cold pods'.
type poolMem struct {
	What  string `json:"what"`
	VMs   int    `json:"vms"`
	RSS   int64  `json:"rss_kib"` // per VM (QEMU + virtiofsd), mean
	PSS   int64  `json:"pss_kib"`
	Procs int    `json:"procs"` // per VM
}

type poolResults struct {
	Commit   string       `json:"commit"`
	Machine  string       `json:"machine"`
	Accel    string       `json:"accel"`
	PoolSize int          `json:"pool_size"`
	GuestMiB int          `json:"guest_mib"`
	Bare     []bareSample `json:"bare"`
	Pods     []poolSample `json:"pods"`
	Memory   []poolMem    `json:"memory"`
	Started  time.Time    `json:"started"`
	Ended    time.Time    `json:"ended"`
	Error    string       `json:"error,omitempty"`
}

// readyPoolVMs are the pool VMs whose agent answered and no pod took.
func (b *bench) readyPoolVMs() []string {
	var out []string
	ds, _ := filepath.Glob(filepath.Join(b.vmRunDir, "pool-*"))
	for _, d := range ds {
		if exists(filepath.Join(d, "ready")) && !exists(filepath.Join(d, "claim")) {
			out = append(out, d)
		}
	}
	return out
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// waitPoolFull waits until the pool holds o.pool ready VMs.
func (b *bench) waitPoolFull(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	deadline := t0.Add(5 * time.Minute)
	for len(b.readyPoolVMs()) < b.o.pool {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the pool did not fill (%d of %d ready after 5 min)", len(b.readyPoolVMs()), b.o.pool)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return time.Since(t0), nil
}

// poolBench runs the pool benchmark and writes pool.json and pool.txt.
func (b *bench) poolBench(ctx context.Context) error {
	r := &poolResults{Commit: b.o.commit, Machine: machine()["summary"], PoolSize: b.o.pool, GuestMiB: b.o.memMiB, Started: time.Now()}
	err := b.poolRounds(ctx, r)
	if err == nil {
		err = b.poolMemory(ctx, r)
	}
	r.Ended = time.Now()
	if err != nil {
		r.Error = err.Error()
	}
	if werr := r.write(b.o.out); werr != nil && err == nil {
		err = werr
	}
	return err
}

func (b *bench) poolRounds(ctx context.Context, r *poolResults) error {
	variants := []string{"bare", "warm", "cold"}
	fmt.Fprintf(os.Stderr, "vmmbench: pool of %d: %d rounds of %s (interleaved, rotating)\n", b.o.pool, b.o.runs, strings.Join(variants, ", "))
	for i := 0; i < b.o.runs; i++ {
		for pos := range variants {
			v := variants[(i+pos)%len(variants)]
			if _, err := b.waitPoolFull(ctx); err != nil {
				return err
			}
			load := loadavg()[0]
			if v == "bare" {
				s, accel, err := bootBare(ctx, b.o.image, b.share, b.o.memMiB)
				if err != nil {
					return fmt.Errorf("round %d, bare boot: %w", i+1, err)
				}
				s.Run, s.Pos, s.Load1 = i+1, pos, load
				r.Accel = accel
				r.Bare = append(r.Bare, s)
				b.logf("round %d bare: QEMU start → /init %.0f ms", i+1, s.ToInit)
				continue
			}
			if err := b.sbLog.mark(); err != nil {
				return err
			}
			s, err := b.poolPod(ctx, v)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", i+1, v, err)
			}
			s.Run, s.Pos, s.Load1 = i+1, pos, load
			if v == "warm" {
				if s.PoolVM == "" {
					return fmt.Errorf("round %d: the warm pod did not take a pool VM", i+1)
				}
				w, err := b.waitPoolFull(ctx)
				if err != nil {
					return err
				}
				s.WaitFor = ms(w)
				lines, err := b.sbLog.read()
				if err != nil {
					return err
				}
				s.Refill = -1
				for _, l := range lines {
					if l.Msg == "pool: VM ready" {
						if v, err := strconv.ParseFloat(l.F["boot_ms"], 64); err == nil {
							s.Refill = v
						}
					}
				}
			} else if s.PoolVM != "" {
				return fmt.Errorf("round %d: the cold pod took pool VM %s", i+1, s.PoolVM)
			}
			r.Pods = append(r.Pods, s)
			b.logf("round %d %s: RunPodSandbox %.0f ms, pod + container %.0f ms%s", i+1, v, s.RunPod, s.Total,
				map[bool]string{true: fmt.Sprintf(", refill %.0f ms", s.Refill), false: ""}[v == "warm"])
		}
	}
	return nil
}

// poolPod starts a pod (warm: no limits; cold: a memory limit) and its
// container, and removes it.
func (b *bench) poolPod(ctx context.Context, variant string) (poolSample, error) {
	s := poolSample{Variant: variant}
	b.seq++
	cfg, err := b.cri.podConfig(fmt.Sprintf("vmmbench-%s-%d", variant, b.seq))
	if err != nil {
		return s, err
	}
	if variant == "cold" {
		cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: coldLimitMiB << 20}
	}
	t0 := time.Now()
	id, err := b.cri.runPod(ctx, cfg)
	s.RunPod = ms(time.Since(t0))
	if err != nil {
		return s, err
	}
	defer func() { _, _, _ = b.cri.removePod(context.WithoutCancel(ctx), id) }()
	s.PoolVM = b.poolVMOf(ctx, id)
	c, err := b.cri.startContainer(ctx, id, cfg)
	if err == nil {
		err = b.cri.waitRunning(ctx, c)
	}
	s.Total = ms(time.Since(t0))
	return s, err
}

// poolVMOf is the pool VM of pod id (PodSandboxStatus's verbose info).
func (b *bench) poolVMOf(ctx context.Context, id string) string {
	rctx, cancel := b.cri.RPC(ctx)
	defer cancel()
	st, err := b.cri.Runtime.PodSandboxStatus(rctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		return ""
	}
	for _, v := range st.GetInfo() {
		if m := regexp.MustCompile(`pool-[0-9a-f]{11}`).FindString(v); m != "" {
			return m
		}
	}
	return ""
}

// poolMemory measures the idle pool's VMs and as many idle cold pods'.
func (b *bench) poolMemory(ctx context.Context, r *poolResults) error {
	if _, err := b.waitPoolFull(ctx); err != nil {
		return err
	}
	time.Sleep(5 * time.Second) // settle
	var dirs []string
	for _, d := range b.readyPoolVMs() {
		dirs = append(dirs, filepath.Base(d))
	}
	r.Memory = append(r.Memory, vmMem("ready pool VMs", dirs, b.vmRunDir))
	var pods []string
	for i := 0; i < b.o.pool; i++ {
		cfg, err := b.cri.podConfig(fmt.Sprintf("vmmbench-idle-%d", i))
		if err != nil {
			return err
		}
		cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: coldLimitMiB << 20}
		id, err := b.cri.runPod(ctx, cfg)
		if err != nil {
			return err
		}
		pods = append(pods, id)
	}
	defer func() {
		for _, id := range pods {
			_, _, _ = b.cri.removePod(context.WithoutCancel(ctx), id)
		}
	}()
	time.Sleep(5 * time.Second)
	var podDirs []string
	ds, _ := filepath.Glob(filepath.Join(b.vmRunDir, "*"))
	for _, d := range ds {
		if n := filepath.Base(d); !strings.HasPrefix(n, "pool") {
			podDirs = append(podDirs, n)
		}
	}
	r.Memory = append(r.Memory, vmMem("idle cold pods' VMs ("+strconv.Itoa(b.o.memMiB+32)+" MiB)", podDirs, b.vmRunDir))
	return nil
}

// vmMem is the mean memory of the VMs whose run directories (below runDir)
// are named dirs: every process naming one.
func vmMem(what string, dirs []string, runDir string) poolMem {
	m := poolMem{What: what, VMs: len(dirs)}
	if len(dirs) == 0 {
		return m
	}
	ps := scanProcs()
	var sum hostproc.Mem
	for _, d := range dirs {
		var pids []int
		for pid, p := range ps {
			if strings.Contains(p.Cmdline(), filepath.Join(runDir, d)+"/") {
				pids = append(pids, pid)
			}
		}
		sum.Add(hostproc.SumMem(pids))
	}
	n := int64(len(dirs))
	m.RSS, m.PSS, m.Procs = sum.RSS/n, sum.PSS/n, sum.Procs/len(dirs)
	return m
}

// median is stats' median (-1 for none).
func median(v []float64) float64 { return stats(v).Med }

// write saves pool.json, pool.txt and summary.txt.
func (r *poolResults) write(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "pool.json"), b, 0o644); err != nil {
		return err
	}
	pick := func(v string, f func(poolSample) float64) []float64 {
		var out []float64
		for _, s := range r.Pods {
			if s.Variant == v && f(s) >= 0 {
				out = append(out, f(s))
			}
		}
		return out
	}
	var bare []float64
	for _, s := range r.Bare {
		bare = append(bare, s.ToInit)
	}
	mb := median(bare)
	rp := func(s poolSample) float64 { return s.RunPod }
	tot := func(s poolSample) float64 { return s.Total }
	ref := func(s poolSample) float64 { return s.Refill }
	var t strings.Builder
	fmt.Fprintf(&t, "magnetar-vmm warm pool benchmark (commit %s, %s, accel %s, pool of %d, guest %d MiB; medians of %d rounds, ms)\n\n",
		r.Commit, r.Machine, r.Accel, r.PoolSize, r.GuestMiB, len(r.Bare))
	w := tabwriter.NewWriter(&t, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "variant\tRunPodSandbox\t× bare\tpod + container\tsamples\t")
	fmt.Fprintf(w, "bare boot (QEMU → /init)\t%.0f\t1.00\t–\t%d\t\n", mb, len(bare))
	for _, v := range []string{"cold", "warm"} {
		m := median(pick(v, rp))
		fmt.Fprintf(w, "%s\t%.0f\t%.2f\t%.0f\t%d\t\n", v, m, m/mb, median(pick(v, tot)), len(pick(v, rp)))
	}
	fmt.Fprintf(w, "refill (pool VM boot → agent)\t%.0f\t%.2f\t–\t%d\t\n", median(pick("warm", ref)), median(pick("warm", ref))/mb, len(pick("warm", ref)))
	w.Flush()
	fmt.Fprintf(&t, "\nmemory per VM (QEMU + virtiofsd, KiB)\n")
	w = tabwriter.NewWriter(&t, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "what\tVMs\tRSS\tPSS\tprocesses\t")
	for _, m := range r.Memory {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t\n", m.What, m.VMs, m.RSS, m.PSS, m.Procs)
	}
	w.Flush()
	if r.Error != "" {
		fmt.Fprintf(&t, "\nERROR: %s\n", r.Error)
	}
	if err := os.WriteFile(filepath.Join(dir, "pool.txt"), []byte(t.String()), 0o644); err != nil {
		return err
	}
	fmt.Print(t.String())
	sum := fmt.Sprintf("bench-vmm-pool: RunPodSandbox warm %.0f ms = %.2f× bare boot %.0f ms (target ≤ 0.1×), cold %.0f ms; refill %.0f ms = %.2f× bare (no templates)",
		median(pick("warm", rp)), median(pick("warm", rp))/mb, mb, median(pick("cold", rp)), median(pick("warm", ref)), median(pick("warm", ref))/mb)
	if r.Error != "" {
		sum = "bench-vmm-pool: FAIL: " + r.Error
	}
	return os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(sum+"\n"), 0o644)
}
