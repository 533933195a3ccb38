package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/hack/bench/internal/criclient"
	"github.com/magnetar-runtime/magnetar/hack/bench/internal/guestimage"
)

type options struct {
	image, work, crictl, handler, out, ctrImage, commit string
	runs                                                int
	memPods                                             []int
	memMiB                                              int
	timeout                                             time.Duration
	smoke, verbose                                      bool
	// pool is the warm pool size of the harness's daemon: > 0 runs the
	// pool benchmark (pool.go) instead of the latency and memory phases
	pool int
}

func main() {
	var o options
	var memPods string
	flag.StringVar(&o.image, "image", "_output/guest", "guest image directory (make guest-image): the marker image for the bare boot")
	flag.StringVar(&o.work, "work", "", "WORK of the running harness (hack/containerd.sh) with the vmm sandboxer")
	flag.StringVar(&o.crictl, "crictl", "_output/prefix/bin/crictl", "crictl binary")
	flag.StringVar(&o.handler, "handler", "magnetar-vmm", "runtime handler under test")
	flag.StringVar(&o.out, "out", "", "results directory (table.txt, samples.csv, samples.json, summary.txt)")
	flag.StringVar(&o.ctrImage, "ctr-image", "docker.io/library/busybox:latest", "image of the containers")
	flag.StringVar(&o.commit, "commit", "", "the commit measured (for the report)")
	flag.IntVar(&o.runs, "runs", 6, "samples of each variant (interleaved, the order rotating each round)")
	flag.StringVar(&memPods, "mem-pods", "1,5,10", "running pod counts for the memory figures (empty: skip)")
	flag.IntVar(&o.memMiB, "mem", 0, "guest memory of the bare boot in MiB (0: the sandboxer's vm.memory_mib, else 256)")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "bound of each CRI call")
	flag.BoolVar(&o.smoke, "smoke", false, "smoke run: any error fails (also in the memory phase)")
	flag.BoolVar(&o.verbose, "v", false, "print every sample")
	flag.IntVar(&o.pool, "pool", 0, "the warm pool size the harness's daemon runs with: run the pool benchmark (pool.txt, pool.json)")
	rerender := flag.String("report", "", "only rewrite the table, CSV and summary from a run's samples.json (in its directory)")
	flag.Parse()
	if *rerender != "" {
		if err := rewrite(*rerender); err != nil {
			fmt.Fprintln(os.Stderr, "vmmbench:", err)
			os.Exit(1)
		}
		return
	}
	for _, f := range strings.Split(memPods, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "vmmbench: -mem-pods: bad count %q\n", f)
			os.Exit(2)
		}
		o.memPods = append(o.memPods, n)
	}
	if o.work == "" || o.out == "" || o.runs < 1 {
		fmt.Fprintln(os.Stderr, "vmmbench: -work and -out are required, -runs at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "vmmbench:", err)
		// for the wrapper's last line
		_ = os.WriteFile(filepath.Join(o.out, "error.txt"), []byte(err.Error()+"\n"), 0o644)
		os.Exit(1)
	}
}

// bench is one run's context.
type bench struct {
	o        options
	cri      *cri
	procs    harnessProcs
	sbLog    logTail // the sandboxer's log
	cdLog    logTail // containerd's log
	sandbox  string  // the sandboxer's sandboxes directory (per pod: <id>/share)
	vmRunDir string
	share    string // the bare boot's (empty) share
	tmp      string
	res      *results
	seq      int
}

func run(ctx context.Context, o options) error {
	work, err := filepath.Abs(o.work)
	if err != nil {
		return err
	}
	o.work = work
	if o.image, err = filepath.Abs(o.image); err != nil {
		return err
	}
	for _, f := range []string{"vmlinuz", "initramfs.cpio", "initramfs-marker.cpio"} {
		if _, err := os.Stat(filepath.Join(o.image, f)); err != nil {
			return fmt.Errorf("guest image: %w (make guest-image)", err)
		}
	}
	env := readEnvFile(filepath.Join(work, "etc", "harness.env"))
	sbCfg := filepath.Join(work, "etc", o.handler+".toml")
	vmRunDir := tomlString(sbCfg, "run_dir")
	if vmRunDir == "" {
		return fmt.Errorf("%s: no run_dir (is the harness started with HARNESS_SANDBOXERS=%s?)", sbCfg, o.handler)
	}
	if o.memMiB == 0 {
		o.memMiB = 256 // vmmsb.DefaultConfig's vm.memory_mib
		if v, err := strconv.Atoi(tomlString(sbCfg, "memory_mib")); err == nil && v > 0 {
			o.memMiB = v
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "vmmbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	share := filepath.Join(tmp, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		return err
	}
	cc, err := criclient.Dial(filepath.Join(work, "run", "containerd.sock"), o.timeout)
	if err != nil {
		return err
	}
	defer cc.Close()
	runID := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffffff)
	b := &bench{
		o: o,
		cri: &cri{Client: cc, handler: o.handler, runID: runID, image: o.ctrImage, cgroup: env["CGROUP_PARENT"],
			logRoot: filepath.Join(tmp, "podlogs"), crictl: o.crictl, crictlCfg: filepath.Join(work, "etc", "crictl.yaml")},
		procs:    harnessProcs{work: work, pidFile: filepath.Join(work, "run", o.handler+".pid"), vmRunDir: vmRunDir},
		sbLog:    logTail{path: filepath.Join(work, "logs", o.handler+".log")},
		cdLog:    logTail{path: filepath.Join(work, "logs", "containerd.log")},
		sandbox:  filepath.Join(work, "lib", o.handler, "sandboxes"),
		vmRunDir: vmRunDir, share: share, tmp: tmp,
		res: &results{Runs: o.runs, Smoke: o.smoke, Handler: o.handler, GuestMiB: o.memMiB, Commit: o.commit,
			Machine: machine(), Image: guestimage.Info(o.image), Started: time.Now(), LoadStart: loadavg()},
	}
	if err := b.cri.check(ctx); err != nil {
		return err
	}
	if _, err := b.procs.snapshot(0); err != nil {
		return err
	}
	if o.pool > 0 {
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
			defer cancel()
			_ = b.cri.removeAll(cctx)
		}()
		return b.poolBench(ctx)
	}
	if left := b.procs.vmProcsLeft(); len(left) > 0 {
		return fmt.Errorf("%d VM processes already run below %s: not a fresh harness", len(left), vmRunDir)
	}
	defer func() {
		// whatever happened: none of our pods is left running
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
		defer cancel()
		if err := b.cri.removeAll(cctx); err != nil {
			fmt.Fprintln(os.Stderr, "vmmbench: removing the run's pods:", err)
		}
	}()
	runErr := b.latency(ctx)
	if runErr == nil && len(o.memPods) > 0 {
		runErr = b.memory(ctx)
	}
	b.res.LoadEnd = loadavg()
	b.res.Ended = time.Now()
	if runErr != nil {
		b.res.Error = runErr.Error()
	}
	if err := b.res.write(o.out); err != nil {
		return errors.Join(runErr, err)
	}
	return runErr
}

// latency runs the three variants, interleaved.
func (b *bench) latency(ctx context.Context) error {
	variants := []string{"bare", "runp", "crictl"}
	fmt.Fprintf(os.Stderr, "vmmbench: %d rounds of %s (interleaved, rotating), guest %d MiB\n", b.o.runs, strings.Join(variants, ", "), b.o.memMiB)
	for i := 0; i < b.o.runs; i++ {
		for pos := range variants {
			v := variants[(i+pos)%len(variants)]
			if err := ctx.Err(); err != nil {
				return err
			}
			load := loadavg()[0]
			switch v {
			case "bare":
				s, accel, err := bootBare(ctx, b.o.image, b.share, b.o.memMiB)
				if err != nil {
					return fmt.Errorf("round %d, bare boot: %w", i+1, err)
				}
				s.Run, s.Pos, s.Load1 = i+1, pos, load
				b.res.Accel = accel
				b.res.Bare = append(b.res.Bare, s)
				b.logf("round %d bare: QEMU start → /init %.0f ms (kernel %.0f, VMM %.0f)", i+1, s.ToInit, s.Kernel, s.VMMStart)
			default:
				s, err := b.podVariant(ctx, v)
				s.Run, s.Pos, s.Load1 = i+1, pos, load
				if err != nil {
					return fmt.Errorf("round %d, %s: %w", i+1, v, err)
				}
				b.res.Pods = append(b.res.Pods, s)
				if v == "runp" {
					b.logf("round %d runp: RunPodSandbox %.0f ms (VMM %.0f, kernel %.0f, agent init %.0f, setup %.0f)", i+1, s.RunPod, s.VMMStart, s.Kernel, s.AgentInit, s.Setup)
				} else {
					b.logf("round %d crictl: pod + container running %.0f ms (runp %.0f, create %.0f, start %.0f)", i+1, s.Total, s.RunPod, s.CrictlCreate, s.CrictlStart)
				}
			}
		}
	}
	return nil
}

func (b *bench) logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "  "+format+"\n", a...)
}

// podVariant runs one pod start ("runp": RunPodSandbox over CRI; "crictl":
// crictl runp + create + start until running), removes the pod and reads
// the breakdown from the logs, the console and the share.
func (b *bench) podVariant(ctx context.Context, variant string) (s podSample, err error) {
	s = newPodSample(variant)
	b.seq++
	name := fmt.Sprintf("vmmbench-%s-%d", variant, b.seq)
	s.Name = name
	cfg, err := b.cri.podConfig(name)
	if err != nil {
		return s, err
	}
	if err := b.sbLog.mark(); err != nil {
		return s, err
	}
	if err := b.cdLog.mark(); err != nil {
		return s, err
	}
	w := watchConsole(b.vmRunDir, 5*time.Millisecond)
	var cw *consoleWatch = w
	defer func() {
		if cw != nil {
			cw.Stop()
		}
	}()
	var t podTimes
	t.callStart = time.Now()
	if variant == "runp" {
		s.SandboxID, err = b.cri.runPod(ctx, cfg)
		t.podReturned = time.Now()
	} else {
		var pf string
		if pf, err = writeJSON(b.tmp, name+".pod.json", cfg); err != nil {
			return s, err
		}
		s.SandboxID, t.callStart, t.podReturned, err = b.cri.crictlRun(ctx, "runp", "-r", b.o.handler, pf)
		if err == nil {
			err = b.crictlContainer(ctx, &s, &t, name, cfg, pf)
		}
	}
	vmDir, con := w.Stop()
	cw = nil
	if err := saveConsole(filepath.Join(b.o.out, "consoles", name+".log"), t.callStart, con); err != nil {
		return s, err
	}
	if s.SandboxID != "" {
		st, rm, rerr := b.cri.removePod(ctx, s.SandboxID)
		s.Stop, s.Remove = ms(st), ms(rm)
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return s, err
	}
	if err := b.procs.waitNoVMs(15 * time.Second); err != nil {
		return s, fmt.Errorf("sandboxer: %w", err)
	}
	sb, err := b.sbLog.read()
	if err != nil {
		return s, err
	}
	cd, err := b.cdLog.read()
	if err != nil {
		return s, err
	}
	s.VMDir = filepath.Base(vmDir)
	if errs := breakdown(&s, &t, filter(sb, "sandbox_id", s.SandboxID), sb, cd, con, name); len(errs) > 0 {
		return s, fmt.Errorf("breakdown of pod %s: %s", s.SandboxID, strings.Join(errs, "; "))
	}
	if b.o.verbose {
		b.logf("%s", s.String())
	}
	return s, nil
}

// crictlContainer creates and starts the sleep container with crictl and
// waits for it to run, noting when its directory and config.json appear in
// the pod's share.
func (b *bench) crictlContainer(ctx context.Context, s *podSample, t *podTimes, name string, cfg *runtimeapi.PodSandboxConfig, podFile string) error {
	cf, err := writeJSON(b.tmp, name+".ctr.json", b.cri.ctrConfig())
	if err != nil {
		return err
	}
	s.ContainerID, t.createStart, t.createEnd, err = b.cri.crictlRun(ctx, "create", s.SandboxID, cf, podFile)
	if err != nil {
		return err
	}
	dir := filepath.Join(b.sandbox, s.SandboxID, "share", s.ContainerID)
	pw := watchPaths(2*time.Millisecond, dir, filepath.Join(dir, "config.json"))
	_, t.startStart, t.startEnd, err = b.cri.crictlRun(ctx, "start", s.ContainerID)
	seen := pw.Stop()
	t.ctrDir, t.ctrConfig = seen[dir], seen[filepath.Join(dir, "config.json")]
	if err != nil {
		return err
	}
	if err := b.cri.waitRunning(ctx, s.ContainerID); err != nil {
		return err
	}
	t.running = time.Now()
	return nil
}

// rewrite reads a run's samples.json and writes its report again.
func rewrite(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return r.write(filepath.Dir(path))
}

// saveConsole writes a pod's console with each line's arrival, in ms after
// the pod start was called.
func saveConsole(path string, t0 time.Time, lines []conLine) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "+%9.1f ms  %s\n", ms(l.At.Sub(t0)), l.Text)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// readEnvFile reads KEY=VALUE lines (harness.env).
func readEnvFile(path string) map[string]string {
	env := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return env
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && !strings.HasPrefix(k, "#") {
			env[k] = strings.Trim(v, `"`)
		}
	}
	return env
}

// tomlString is the first `key = value` of a flat TOML file (the harness
// writes the sandboxer's; its keys are unique), unquoted.
func tomlString(path, key string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(key) + `\s*=\s*"?([^"\n]*)"?\s*$`).FindSubmatch(b)
	if m == nil {
		return ""
	}
	return strings.TrimSpace(string(m[1]))
}
