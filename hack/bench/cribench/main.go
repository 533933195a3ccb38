// Command cribench measures pod start latency, management memory, processes
// and teardown of several CRI runtime handlers side by side, talking to
// containerd's CRI gRPC socket directly (no crictl process in the timings).
//
// It is the engine of hack/bench/bench.sh, which prepares an isolated
// containerd (hack/containerd.sh) with the runtime handlers "runc"
// (containerd's runc shim + pause, the baseline) and one per Magnetar
// sandboxer. Every phase runs the handlers interleaved, with the order
// rotated each round (A B, B A, A B, …), so that both see the same machine
// load and neither always goes first:
//
//	idle  management processes with no pod (a sandboxer daemon's fixed cost)
//	seq   N pods one after another, each RunPodSandbox + CreateContainer +
//	      StartContainer of a busybox "sleep 3600"; per-step latency
//	par   P pods started at once (one goroutine each); wall time until every
//	      StartContainer returned, checked with ListContainers (RUNNING)
//	mem   M pods up: PSS/RSS/USS of the management processes (runc: the
//	      shims of our containerd and the pause processes below them;
//	      magnetar: the sandboxer daemon and what it keeps), containers'
//	      own processes excluded; containerd reported separately
//	teardown  StopPodSandbox + RemovePodSandbox of every pod, one by one,
//	      after each phase
//
// The handler "bare-runsc" (bare.go) is the floor of magnetar-gvisor's pod
// start: the same two containers, runsc called directly, no containerd. It
// takes part in the sequential phase only (and the warm-up), interleaved
// with the CRI handlers; its pods' kernel (runsc's sandbox, gofers and
// stubs) is measured after each start. A gVisor pod's kernel is counted
// apart from the management processes in every phase ("kernel").
//
// Results go to OUT (default $WORK/results/<timestamp>): samples.csv (every
// raw sample), results.json (meta, samples, summary), summary.md (the
// tables printed at the end) and start-latency.svg (CDF and box plots).
// Every pod carries the labels magnetar-bench=true and
// magnetar-bench-run=<run id>; the bench removes its pods on exit, also on
// SIGINT/SIGTERM, and removes leftovers of earlier runs when it starts.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/hack/bench/internal/criclient"
	"github.com/magnetar-runtime/magnetar/hack/bench/internal/hostproc"
	"github.com/magnetar-runtime/magnetar/shared/mount"
)

type options struct {
	work, socket, image, out, cgroup, runcBin, label, status, from string
	bareFrom, gvisorDir, wasmImage                                 string
	wasmCommand                                                    []string
	servedBy                                                       map[string]string
	caps                                                           map[string]phaseCap
	capNote                                                        string
	handlers                                                       []string
	n, parReps, warmup, conc                                       int
	parallel, memPods                                              []int
	settle, timeout, cleanWait                                     time.Duration
	pidMode                                                        string
	quiet                                                          bool
}

func main() {
	os.Exit(run())
}

func parseInts(s string) ([]int, error) {
	var xs []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q: want positive integers", s)
		}
		xs = append(xs, n)
	}
	return xs, nil
}

func parseFlags() (options, error) {
	var o options
	var handlers, parallel, memPods, wasmCommand, servedBy, caps string
	defWork := os.Getenv("WORK")
	if defWork == "" {
		defWork = "_output/bench"
	}
	flag.StringVar(&o.work, "work", defWork, "WORK directory of the harness instance (hack/containerd.sh)")
	flag.StringVar(&o.socket, "socket", "", "containerd CRI socket (default WORK/run/containerd.sock)")
	flag.StringVar(&handlers, "handlers", "", "runtime handlers, space or comma separated (default: runc and every magnetar-* handler containerd knows)")
	flag.IntVar(&o.n, "n", 20, "pods per handler in the sequential phase")
	flag.StringVar(&parallel, "parallel", "10 50", "pod counts of the parallel phase")
	flag.IntVar(&o.parReps, "par-reps", 3, "repetitions of each parallel count per handler")
	flag.StringVar(&memPods, "mem-pods", "1 10 50", "pod counts at which memory is measured")
	flag.IntVar(&o.warmup, "warmup", 1, "unrecorded pods per handler before the first phase")
	flag.IntVar(&o.conc, "mem-concurrency", 10, "concurrent pod starts while filling the memory phase")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "wait after the pods are up before measuring memory")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "timeout of each CRI call")
	flag.DurationVar(&o.cleanWait, "clean-wait", 20*time.Second, "how long to wait for management processes to go after a teardown")
	flag.StringVar(&o.image, "image", "docker.io/library/busybox:latest", "container image of the Linux handlers' pods (must be present)")
	flag.StringVar(&o.wasmImage, "wasm-image", "localhost/magnetar/wasm-c:v1", "container image of the wasm handlers' pods (magnetar-wasm*; hack/wasm/images.sh)")
	flag.StringVar(&wasmCommand, "wasm-command", "/hello.wasm sleep 3600", "command of the wasm handlers' containers")
	flag.StringVar(&servedBy, "served-by", "", "handlers served by another handler's daemon, HANDLER=DAEMON-HANDLER ... (hack/lib.sh MAGNETAR_HANDLER_ALIASES)")
	flag.StringVar(&caps, "cap", "", "HANDLER=PODS ...: the most pods HANDLER starts at once in the parallel and memory phases (larger counts are left out for it, and the report says so)")
	flag.StringVar(&o.capNote, "cap-note", "", "why -cap caps what it caps (printed in the report)")
	flag.StringVar(&o.out, "out", "", "results directory (default WORK/results/<timestamp>)")
	flag.StringVar(&o.cgroup, "cgroup-parent", "", "cgroup_parent of every pod (default CGROUP_PARENT of WORK/etc/harness.env, else /magnetar-bench)")
	flag.StringVar(&o.pidMode, "pid", "container", "pod PID namespace mode: container (Kubernetes' default) or pod (shareProcessNamespace)")
	flag.StringVar(&o.runcBin, "runc", "", "runc binary, for its version in the report")
	flag.StringVar(&o.label, "label", "", "free text recorded in the report (e.g. git describe)")
	flag.BoolVar(&o.quiet, "quiet", false, "do not print the report at the end (it is still written to OUT/summary.md)")
	flag.StringVar(&o.from, "from", "", "do not measure: re-render summary.md and start-latency.svg from this results.json")
	flag.StringVar(&o.status, "status", "", "also write the closing line (cribench: N passed, M failed) to this file")
	flag.StringVar(&o.bareFrom, "bare-from", "magnetar-gvisor", "the gVisor handler whose pods the "+bareHandler+" floor replays (and compares with)")
	flag.StringVar(&o.gvisorDir, "gvisor-dir", "", "that handler's sandboxer --dir (default WORK/lib/<bare-from>)")
	flag.Parse()
	if flag.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", flag.Args())
	}
	var err error
	if o.work, err = filepath.Abs(o.work); err != nil {
		return o, err
	}
	if o.socket == "" {
		o.socket = filepath.Join(o.work, "run", "containerd.sock")
	}
	if o.parallel, err = parseInts(parallel); err != nil {
		return o, fmt.Errorf("-parallel: %w", err)
	}
	if o.memPods, err = parseInts(memPods); err != nil {
		return o, fmt.Errorf("-mem-pods: %w", err)
	}
	o.handlers = strings.FieldsFunc(handlers, func(r rune) bool { return r == ',' || r == ' ' })
	o.wasmCommand = strings.Fields(wasmCommand)
	if len(o.wasmCommand) == 0 {
		return o, fmt.Errorf("-wasm-command: empty")
	}
	if o.servedBy, err = parsePairs(servedBy); err != nil {
		return o, fmt.Errorf("-served-by: %w", err)
	}
	if o.caps, err = parseCaps(caps); err != nil {
		return o, fmt.Errorf("-cap: %w", err)
	}
	if o.n < 1 || o.parReps < 1 || o.conc < 1 {
		return o, fmt.Errorf("-n, -par-reps and -mem-concurrency must be positive")
	}
	if o.pidMode != "container" && o.pidMode != "pod" {
		return o, fmt.Errorf("-pid: want container or pod, got %q", o.pidMode)
	}
	if o.gvisorDir == "" {
		o.gvisorDir = filepath.Join(o.work, "lib", o.bareFrom)
	}
	if o.cgroup == "" {
		o.cgroup = harnessEnv(o.work, "CGROUP_PARENT")
		if o.cgroup == "" {
			o.cgroup = "/magnetar-bench"
		}
	}
	return o, nil
}

// harnessEnv reads KEY from WORK/etc/harness.env (written by hack/containerd.sh).
func harnessEnv(work, key string) string {
	b, err := os.ReadFile(filepath.Join(work, "etc", "harness.env"))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return ""
}

// bench is one run.
type bench struct {
	o        options
	c        *cri
	hp       harnessPaths
	handlers []string
	res      *results
	bare     *bareFloor // nil unless bare-runsc is among the handlers
	mu       sync.Mutex
	idle     map[string]mgmtSample
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func run() int {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cribench:", err)
		return 2
	}
	if o.from != "" {
		return rerender(o)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	start := time.Now()
	runID := start.Format("20060102-150405")
	if o.out == "" {
		o.out = filepath.Join(o.work, "results", runID)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "cribench:", err)
		return 1
	}
	cc, err := criclient.Dial(o.socket, o.timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cribench:", err)
		return 1
	}
	defer cc.Close()
	pidMode := runtimeapi.NamespaceMode_CONTAINER
	if o.pidMode == "pod" {
		pidMode = runtimeapi.NamespaceMode_POD
	}
	b := &bench{
		o: o,
		c: &cri{
			Client: cc, runID: runID, workload: o.workloadOf, logDir: filepath.Join(o.work, "bench-logs", runID),
			cgroup: o.cgroup, pidMode: pidMode,
		},
		hp: harnessPaths{
			Work: o.work, Socket: o.socket, Containerd: filepath.Join(o.work, "run", "containerd.pid"),
			ServedBy: o.servedBy,
		},
		res:  newResults(),
		idle: map[string]mgmtSample{},
	}
	defer os.RemoveAll(b.c.logDir)

	code := b.main(ctx)

	// Always leave nothing behind, whatever happened above.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if b.bare != nil {
		if err := b.bare.sweep(); err != nil {
			b.check("cleanup", false, "%s: %v", bareHandler, err)
		}
		if err := mount.RemoveAll(b.bare.dir); err != nil {
			b.check("cleanup", false, "%s: %v", bareHandler, err)
		}
	}
	n, err := b.c.removeLabelled(cctx, criclient.LabelRun, runID)
	if n > 0 {
		logf("cleanup: removed %d leftover pods of this run", n)
	}
	if err == nil {
		var left []*runtimeapi.PodSandbox
		if left, err = b.c.listPods(cctx, criclient.LabelRun, runID); err == nil && len(left) > 0 {
			err = fmt.Errorf("%d pods still listed", len(left))
		}
	}
	if err != nil {
		b.check("cleanup", false, "removing this run's pods: %v", err)
	} else {
		b.check("cleanup", true, "no pod of this run left")
	}
	if ctx.Err() != nil {
		logf("interrupted: pods of this run removed")
		b.writeStatus()
		return 130
	}

	b.res.Meta.Finished = time.Now().Format(time.RFC3339)
	b.res.Meta.DurationS = time.Since(start).Seconds()
	b.res.Meta.LoadAfter = loadavg()
	if err := b.write(); err != nil {
		b.check("output", false, "%v", err)
	} else {
		b.check("output", true, "%s", o.out)
	}
	fmt.Printf("results: %s\n", o.out)
	if fail := b.writeStatus(); fail > 0 {
		code = max(code, 1)
	}
	return code
}

// writeStatus prints the closing line (and writes it to -status); it returns
// the number of failed checks.
func (b *bench) writeStatus() int {
	pass, fail := b.res.counts()
	line := fmt.Sprintf("cribench: %d passed, %d failed\n", pass, fail)
	fmt.Print(line)
	if b.o.status != "" {
		if err := os.WriteFile(b.o.status, []byte(line), 0o644); err != nil {
			logf("writing %s: %v", b.o.status, err)
		}
	}
	return fail
}

func (b *bench) check(name string, ok bool, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	b.mu.Lock()
	b.res.Checks = append(b.res.Checks, check{Name: name, OK: ok, Detail: msg})
	b.mu.Unlock()
	if ok {
		fmt.Fprintf(os.Stderr, "ok   %s: %s\n", name, msg)
	} else {
		fmt.Fprintf(os.Stderr, "FAIL %s: %s\n", name, msg)
	}
}

func (b *bench) record(phase, handler string, pods, round, index int, metric string, v float64) {
	b.mu.Lock()
	b.res.Samples = append(b.res.Samples, sample{Phase: phase, Handler: handler, Pods: pods, Round: round, Index: index, Metric: metric, Value: v})
	b.mu.Unlock()
}

// order rotates the handler list by round: A B, B A, A B … (for two).
func (b *bench) order(round int) []string { return rotate(b.handlers, round) }

// criOrder is order without the floor (the phases only CRI pods take part in).
func (b *bench) criOrder(round int) []string { return rotate(b.criHandlers(), round) }

// criHandlers are the handlers but the floor.
func (b *bench) criHandlers() []string {
	return slices.DeleteFunc(slices.Clone(b.handlers), func(h string) bool { return h == bareHandler })
}

func rotate(hs []string, round int) []string {
	n := len(hs)
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, hs[(i+round)%n])
	}
	return out
}

func (b *bench) main(ctx context.Context) int {
	o := b.o
	known, err := b.c.handlers(ctx)
	if err != nil {
		b.check("setup", false, "CRI Status: %v", err)
		return 1
	}
	b.handlers = o.handlers
	if len(b.handlers) == 0 {
		b.handlers = []string{"runc"}
		for _, h := range known {
			if strings.HasPrefix(h, "magnetar-") {
				b.handlers = append(b.handlers, h)
			}
		}
	}
	for _, h := range b.handlers {
		if h == bareHandler {
			h = o.bareFrom // whose pods the floor replays
		}
		if !slices.Contains(known, h) {
			b.check("setup", false, "runtime handler %q unknown to containerd (it knows %v)", h, known)
			return 1
		}
	}
	images := map[string]bool{}
	for _, h := range b.criHandlers() {
		img := o.workloadOf(h).Image
		if images[img] {
			continue
		}
		images[img] = true
		if err := b.c.checkImage(ctx, img); err != nil {
			b.check("setup", false, "image of %s: %v", h, err)
			return 1
		}
	}
	if slices.Contains(b.handlers, bareHandler) {
		b.bare = &bareFloor{dir: filepath.Join(o.work, bareHandler), runID: b.c.runID}
		if err := b.bare.sweep(); err != nil {
			b.check("setup", false, "%s: removing what an earlier run left: %v", bareHandler, err)
			return 1
		}
	}
	if n, err := b.c.removeLabelled(ctx, criclient.LabelBench, "true"); err != nil {
		b.check("setup", false, "removing leftover bench pods: %v", err)
		return 1
	} else if n > 0 {
		logf("removed %d leftover pods of an earlier bench run", n)
	}
	b.fillMeta(ctx)
	logf("handlers %v; N=%d parallel=%v x%d mem-pods=%v; results in %s", b.handlers, o.n, o.parallel, o.parReps, o.memPods, o.out)

	// memory first: the figures per pod count are then not inflated by the
	// heap a daemon kept from the 50-at-once bursts (idle-after shows that)
	phases := []func(context.Context){b.phaseIdle, b.phaseWarmup, b.phaseMem, b.phaseSeq, b.phasePar, b.phaseIdleAfter}
	for _, ph := range phases {
		if ctx.Err() != nil {
			break
		}
		ph(ctx)
	}
	return 0
}

func (b *bench) phaseIdle(ctx context.Context) {
	for _, h := range b.criHandlers() {
		s, err := measureMgmt(b.hp, h, nil)
		if err != nil {
			b.check("idle/"+h, false, "%v", err)
			continue
		}
		b.idle[h] = s
		b.recordMem("idle", h, 0, s)
		b.check("idle/"+h, true, "%d management processes, %d threads, PSS %.1f MiB with no pod", s.Total.Procs, s.Total.Threads, kib2mib(s.Total.PSS))
	}
}

// phaseIdleAfter samples the management processes again with no pod, after
// every phase: memory a daemon kept, processes or threads it leaked.
func (b *bench) phaseIdleAfter(ctx context.Context) {
	for _, h := range b.criHandlers() {
		s, err := measureMgmt(b.hp, h, nil)
		if err != nil {
			b.check("idle-after/"+h, false, "%v", err)
			continue
		}
		b.recordMem("idle-after", h, 0, s)
		idle := b.idle[h].Total
		b.check("idle-after/"+h, s.Total.Procs == idle.Procs,
			"%d management processes (%d when the run began), %d threads, PSS %.1f MiB (%.1f MiB) with no pod after all phases",
			s.Total.Procs, idle.Procs, s.Total.Threads, kib2mib(s.Total.PSS), kib2mib(idle.PSS))
	}
}

func (b *bench) phaseWarmup(ctx context.Context) {
	if b.bare != nil {
		b.captureFloor(ctx)
	}
	for i := 0; i < b.o.warmup && ctx.Err() == nil; i++ {
		for _, h := range b.order(i) {
			if h == bareHandler && b.bare.ctrSpec == nil {
				continue // the capture failed (reported)
			}
			ref, _, err := b.startOne(ctx, h, "warm")
			b.teardown(ctx, []podRef{ref})
			if err != nil {
				b.check("warmup/"+h, false, "%v", err)
			}
		}
	}
	for _, h := range b.handlers {
		b.waitClean(ctx, h)
	}
}

// phaseSeq starts N pods per handler one after another, interleaved.
func (b *bench) phaseSeq(ctx context.Context) {
	n := b.o.n
	logf("seq: %d pods per handler, one at a time", n)
	refs := map[string][]podRef{}
	errs := map[string][]error{}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		for _, h := range b.order(i) {
			if h == bareHandler && b.bare.ctrSpec == nil {
				errs[h] = append(errs[h], fmt.Errorf("no captured pod to replay"))
				continue
			}
			ref, s, err := b.startOne(ctx, h, "seq")
			if ref.ID != "" {
				refs[h] = append(refs[h], ref)
			}
			if err != nil {
				errs[h] = append(errs[h], err)
				continue
			}
			b.record("seq", h, n, 0, i, "run_ms", s.Run)
			b.record("seq", h, n, 0, i, "create_ms", s.Create)
			b.record("seq", h, n, 0, i, "start_ms", s.Start)
			b.record("seq", h, n, 0, i, "total_ms", s.Total)
			// the pod's kernel, right after its start, for the gVisor
			// handler and its floor alike, and a VM pod's QEMU
			if k, ok, err := b.podKernelMem(h, ref); err == nil && ok {
				b.record("seq", h, n, 0, i, "kernel_procs", float64(k.Procs))
				b.record("seq", h, n, 0, i, "kernel_threads", float64(k.Threads))
				b.record("seq", h, n, 0, i, "kernel_pss_kib", float64(k.PSS))
				b.record("seq", h, n, 0, i, "kernel_rss_kib", float64(k.RSS))
			}
		}
	}
	running, rerr := b.c.runningContainers(ctx)
	// teardown, interleaved pod by pod
	tdErrs := map[string][]error{}
	sum := map[string]float64{}
	for i := 0; i < n; i++ {
		for _, h := range b.order(i) {
			if i >= len(refs[h]) {
				continue
			}
			d, err := b.removeOne(ctx, refs[h][i])
			if err != nil {
				tdErrs[h] = append(tdErrs[h], err)
				continue
			}
			sum[h] += d
			b.record("seq", h, n, 0, i, "teardown_ms", d)
		}
	}
	for _, h := range b.handlers {
		b.record("seq", h, n, 0, -1, "teardown_total_ms", sum[h])
		ok := 0
		for _, r := range refs[h] {
			if running[r.ID] == 1 || h == bareHandler { // the floor checked runsc state at start
				ok++
			}
		}
		clean := b.waitClean(ctx, h)
		switch {
		case len(errs[h]) > 0:
			b.check("seq/"+h, false, "%d of %d pods failed; first: %v", len(errs[h]), n, errs[h][0])
		case rerr != nil || ok != n:
			b.check("seq/"+h, false, "%d of %d containers RUNNING after start (%v)", ok, n, rerr)
		default:
			d := summarize(b.res.values("seq", h, n, "total_ms"))
			b.check("seq/"+h, true, "%d pods, start p50 %.0f ms, p90 %.0f ms", n, d.P50, d.P90)
		}
		if len(tdErrs[h]) > 0 || !clean {
			b.check("teardown-seq/"+h, false, "errors %v, management processes back to idle: %v", tdErrs[h], clean)
		} else {
			b.check("teardown-seq/"+h, true, "%d pods stopped and removed in %.0f ms", len(refs[h]), sum[h])
		}
	}
}

// startMany starts count pods on h with at most conc at once; all goroutines
// are released together once the configurations are written.
func (b *bench) startMany(ctx context.Context, h, phase string, count, conc int) ([]podRef, []startSample, float64, []error) {
	type cfg struct {
		pod *runtimeapi.PodSandboxConfig
		ctr *runtimeapi.ContainerConfig
	}
	cfgs := make([]cfg, count)
	for i := range cfgs {
		p, c, err := b.c.configs(h, phase)
		if err != nil {
			return nil, nil, 0, []error{err}
		}
		cfgs[i] = cfg{p, c}
	}
	refs := make([]podRef, count)
	samples := make([]startSample, count)
	errs := make([]error, count)
	sem := make(chan struct{}, conc)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			sem <- struct{}{}
			defer func() { <-sem }()
			refs[i], samples[i], errs[i] = b.c.startPod(ctx, h, phase, cfgs[i].pod, cfgs[i].ctr)
		}()
	}
	t0 := time.Now()
	close(gate)
	wg.Wait()
	wall := ms(time.Since(t0))
	var out []podRef
	var good []startSample
	var bad []error
	for i := range refs {
		if refs[i].ID != "" {
			out = append(out, refs[i])
		}
		if errs[i] != nil {
			bad = append(bad, errs[i])
		} else {
			good = append(good, samples[i])
		}
	}
	return out, good, wall, bad
}

// teardown stops and removes pods one by one; it returns the total time.
func (b *bench) teardown(ctx context.Context, refs []podRef) (float64, []error) {
	var total float64
	var errs []error
	// a cancelled run still removes its pods
	ctx = context.WithoutCancel(ctx)
	for _, r := range refs {
		if r.ID == "" {
			continue
		}
		d, err := b.removeOne(ctx, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		total += d
	}
	return total, errs
}

// waitClean waits until h's management processes are back to the idle
// count (shims and pause gone, pod inits gone).
func (b *bench) waitClean(ctx context.Context, h string) bool {
	if h == bareHandler {
		return true // its teardown waits for its processes itself
	}
	want := b.idle[h].Total.Procs
	deadline := time.Now().Add(b.o.cleanWait)
	for {
		s, err := measureMgmt(b.hp, h, nil)
		if err == nil && s.Total.Procs <= want && s.Kernel.Procs == 0 {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err == nil {
				logf("%s: %d management processes after teardown, %d when idle, %d of a pod kernel: %v", h, s.Total.Procs, want, s.Kernel.Procs, s.Groups)
			}
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// phasePar starts P pods at once per handler, par-reps times, interleaved.
func (b *bench) phasePar(ctx context.Context) {
	for _, p := range b.o.parallel {
		logf("par: %d pods at once, %d rounds per handler", p, b.o.parReps)
		fails := map[string][]string{}
		for r := 0; r < b.o.parReps && ctx.Err() == nil; r++ {
			for _, h := range b.criOrder(r) {
				if ctx.Err() != nil {
					break
				}
				if b.o.capped(h, p) || r >= b.o.parRounds(h) {
					continue
				}
				refs, samples, wall, errs := b.startMany(ctx, h, fmt.Sprintf("par%d", p), p, p)
				running, rerr := b.c.runningContainers(ctx)
				ok := 0
				for _, ref := range refs {
					if running[ref.ID] == 1 {
						ok++
					}
				}
				td, tdErrs := b.teardown(ctx, refs)
				clean := b.waitClean(ctx, h)
				switch {
				case len(errs) > 0:
					fails[h] = append(fails[h], fmt.Sprintf("round %d: %d of %d pods failed; first: %v", r, len(errs), p, errs[0]))
				case rerr != nil || ok != p:
					fails[h] = append(fails[h], fmt.Sprintf("round %d: %d of %d containers RUNNING (%v)", r, ok, p, rerr))
				case len(tdErrs) > 0 || !clean:
					fails[h] = append(fails[h], fmt.Sprintf("round %d: teardown errors %v, back to idle: %v", r, tdErrs, clean))
				}
				if len(errs) > 0 {
					continue // a wall time with failed pods means nothing
				}
				b.record("par", h, p, r, -1, "wall_ms", wall)
				b.record("par", h, p, r, -1, "teardown_total_ms", td)
				for i, s := range samples {
					b.record("par", h, p, r, i, "pod_total_ms", s.Total)
				}
				logf("par %d %s round %d: all running in %.0f ms, teardown %.0f ms", p, h, r, wall, td)
			}
		}
		for _, h := range b.criHandlers() {
			name := fmt.Sprintf("par%d/%s", p, h)
			if b.o.capped(h, p) {
				logf("%s: left out (-cap %s=%d)", name, h, b.o.caps[h].Pods)
				continue
			}
			if len(fails[h]) > 0 {
				b.check(name, false, "%s", strings.Join(fails[h], "; "))
				continue
			}
			d := summarize(b.res.values("par", h, p, "wall_ms"))
			b.check(name, d.N == b.o.parRounds(h), "%d pods at once: wall p50 %.0f ms over %d rounds", p, d.P50, d.N)
		}
	}
}

// phaseMem brings M pods up per handler and samples the management processes.
func (b *bench) phaseMem(ctx context.Context) {
	for mi, m := range b.o.memPods {
		logf("mem: %d pods per handler", m)
		for _, h := range b.criOrder(mi) {
			if ctx.Err() != nil {
				return
			}
			name := fmt.Sprintf("mem%d/%s", m, h)
			if b.o.capped(h, m) {
				logf("%s: left out (-cap %s=%d)", name, h, b.o.caps[h].Pods)
				continue
			}
			refs, _, _, errs := b.startMany(ctx, h, fmt.Sprintf("mem%d", m), m, min(m, b.o.conc))
			var s mgmtSample
			var merr error
			if len(errs) == 0 {
				select {
				case <-ctx.Done():
				case <-time.After(b.o.settle):
				}
				var pids []int
				if !b.hostContainers(h) {
					s, merr = measureMgmt(b.hp, h, nil)
				} else if pids, merr = b.c.containerPids(ctx); merr == nil {
					s, merr = measureMgmt(b.hp, h, pids)
				}
			}
			td, tdErrs := b.teardown(ctx, refs)
			clean := b.waitClean(ctx, h)
			after, aerr := measureMgmt(b.hp, h, nil)
			switch {
			case len(errs) > 0:
				b.check(name, false, "%d of %d pods failed; first: %v", len(errs), m, errs[0])
				continue
			case merr != nil:
				b.check(name, false, "measuring: %v", merr)
				continue
			case b.hostContainers(h) && s.Containers != m:
				b.check(name, false, "found %d container processes for %d pods", s.Containers, m)
				continue
			case s.Total.Procs == 0 || s.Total.PSS == 0:
				b.check(name, false, "no management process found")
				continue
			case len(tdErrs) > 0 || !clean || aerr != nil:
				b.check(name, false, "teardown errors %v, back to idle %v (%v)", tdErrs, clean, aerr)
			}
			b.recordMem("mem", h, m, s)
			b.record("mem", h, m, 0, -1, "teardown_total_ms", td)
			b.record("mem", h, m, 0, -1, "procs_after_teardown", float64(after.Total.Procs))
			if len(tdErrs) == 0 && clean && aerr == nil {
				kern := ""
				if s.Kernel.Procs > 0 {
					kern = fmt.Sprintf("; pod kernels (runsc, QEMU): %d processes, PSS %.1f MiB", s.Kernel.Procs, kib2mib(s.Kernel.PSS))
				}
				b.check(name, true, "%d management processes (%d threads) for %d pods: PSS %.1f MiB, RSS %.1f MiB%s",
					s.Total.Procs, s.Total.Threads, m, kib2mib(s.Total.PSS), kib2mib(s.Total.RSS), kern)
			}
		}
	}
}

func (b *bench) recordMem(phase, h string, pods int, s mgmtSample) {
	rec := func(prefix string, m hostproc.Mem) {
		b.record(phase, h, pods, 0, -1, prefix+"procs", float64(m.Procs))
		b.record(phase, h, pods, 0, -1, prefix+"threads", float64(m.Threads))
		b.record(phase, h, pods, 0, -1, prefix+"rss_kib", float64(m.RSS))
		b.record(phase, h, pods, 0, -1, prefix+"pss_kib", float64(m.PSS))
		b.record(phase, h, pods, 0, -1, prefix+"uss_kib", float64(m.USS))
	}
	rec("mgmt_", s.Total)
	rec("kernel_", s.Kernel)
	groups := make([]string, 0, len(s.Groups))
	for g := range s.Groups {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	for _, g := range groups {
		rec("group_"+strings.ReplaceAll(g, ":", "_")+"_", s.Groups[g])
	}
	b.record(phase, h, pods, 0, -1, "container_procs", float64(s.Containers))
	rec("containerd_", s.Containerd)
}

func kib2mib(k int64) float64 { return float64(k) / 1024 }

// rerender rewrites the report files of an earlier run from its results.json.
func rerender(o options) int {
	raw, err := os.ReadFile(o.from)
	if err == nil {
		res := newResults()
		if err = json.Unmarshal(raw, res); err == nil {
			m := res.Meta
			o.n, o.parallel, o.parReps, o.memPods, o.pidMode = m.N, m.Parallel, m.ParReps, m.MemPods, m.PidMode
			o.work, o.image, o.cgroup = m.Work, m.Image, m.CgroupPar
			o.caps, o.capNote = m.Caps, m.CapNote
			if o.out == "" {
				o.out = filepath.Dir(o.from)
			}
			b := &bench{o: o, handlers: m.Handlers, res: res}
			err = b.write()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cribench:", err)
		return 1
	}
	return 0
}

// startOne starts one pod on h: through CRI, or a round of the floor.
func (b *bench) startOne(ctx context.Context, h, phase string) (podRef, startSample, error) {
	if h == bareHandler {
		ref, s, err := b.bare.start(ctx)
		if err == nil {
			err = b.bare.running(ctx, ref)
		}
		return podRef{Handler: h, Name: ref.dir, ID: ref.pod, Container: ref.ctr}, s, err
	}
	pod, ctr, err := b.c.configs(h, phase)
	if err != nil {
		return podRef{}, startSample{}, err
	}
	return b.c.startPod(ctx, h, phase, pod, ctr)
}

// removeOne stops and removes one pod (a floor round's: deletes its
// containers); it returns the time that took.
func (b *bench) removeOne(ctx context.Context, ref podRef) (float64, error) {
	if ref.Handler == bareHandler {
		return b.bare.remove(ctx, bareRef{dir: ref.Name, pod: ref.ID, ctr: ref.Container})
	}
	return b.c.removePod(ctx, ref.ID)
}

// captureFloor starts one pod on the gVisor handler, captures what its
// sandboxer gave runsc (captureFloor), and removes it again.
func (b *bench) captureFloor(ctx context.Context) {
	h := b.o.bareFrom
	ref, _, err := b.startOne(ctx, h, "capture")
	var pids []int
	if err == nil {
		pids, err = b.c.containerPids(ctx)
	}
	if err == nil && len(pids) != 1 {
		err = fmt.Errorf("%d container pids for the one pod of the capture", len(pids))
	}
	var f *bareFloor
	if err == nil {
		f, err = captureFloor(b.bare.dir, b.bare.runID, b.o.gvisorDir, ref, pids[0])
	}
	if _, terr := b.teardown(ctx, []podRef{ref}); len(terr) > 0 && err == nil {
		err = terr[0]
	}
	b.waitClean(ctx, h)
	if err != nil {
		b.check("capture/"+bareHandler, false, "replaying a %s pod: %v", h, err)
		return
	}
	b.bare = f
	b.res.Meta.Sandboxers[bareHandler] = firstLine(f.runsc, "--version") + " " + strings.Join(f.flags, " ")
	b.check("capture/"+bareHandler, true, "a %s pod's two specs, replayed with %s %s", h, f.runsc, strings.Join(f.flags, " "))
}
