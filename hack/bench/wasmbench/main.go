// Command wasmbench measures the wasm sandboxer (make bench-wasm,
// hack/bench/wasm.sh): container start latency, Task.Create to the first
// line of output, through the Task API directly (a ttrpc client against a
// daemon of its own, no containerd) and through crictl (a harness
// containerd), with a cold and a warm compiled-module cache; the daemon's
// memory per idle container at several counts; and, beside them, the same
// modules run as one process per container (`wasm-sandboxer run-module`,
// the shim model: each process loads the cached module and runs it).
//
// It prints a table of medians (and p90) with the daemon/process ratios and
// writes it with the raw samples (CSV) to -out.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/ttrpc"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
)

var (
	bin       = flag.String("bin", "bin/wasm-sandboxer", "the wasm-sandboxer binary")
	work      = flag.String("work", "_output/bench-wasm/direct", "scratch directory of the direct daemon")
	outDir    = flag.String("out", "", "results directory (table.txt, samples.csv)")
	goMod     = flag.String("go-module", "_output/wasm/guest.wasm", "the Go test module (hack/wasm/guest)")
	cMod      = flag.String("c-module", "_output/wasm/hello.wasm", "the C test module (hack/wasm/cguest)")
	enginesF  = flag.String("engines", "wasmtime,wazero", "engines to measure")
	samples   = flag.Int("n", 20, "warm samples per latency row")
	coldN     = flag.Int("cold", 5, "cold samples per latency row (a new daemon with an empty cache each)")
	memRows   = flag.String("mem", "wasmtime:c:100,500,1000;wasmtime:go:100,500,1000;wazero:c:100,500,1000;wazero:go:100,500", "idle containers per daemon: ENGINE:MODULE:COUNTS;...")
	shimMem   = flag.String("shim-mem", "100", "idle processes for the shim model's memory (per engine and module)")
	crictlBin = flag.String("crictl", "", "crictl binary (empty: skip the CRI rows)")
	crictlCfg = flag.String("crictl-config", "", "crictl config of the harness")
	harness   = flag.String("harness", "", "hack/containerd.sh of the harness (restarts its wasm daemon for cold rows)")
	hwork     = flag.String("harness-work", "", "WORK of the harness (its wasm daemon's modcache is wiped for cold rows)")
	images    = flag.String("images", "go=localhost/magnetar/wasm-go:v1,c=localhost/magnetar/wasm-c:v1", "MODULE=IMAGE for the CRI rows")
	cgroupP   = flag.String("cgroup-parent", "/magnetar-bench-wasm", "pod cgroup parent for the CRI rows")
	crictlRef = flag.String("crictl-ref", "magnetar-runc,runc", "handlers measured the same way with busybox echo, for reference")
	refImage  = flag.String("ref-image", "docker.io/library/busybox:latest", "image of the reference rows")
	logLevel  = flag.String("log-level", "warn", "log level of the direct daemon (its log: WORK/daemon.log)")
)

var handlers = map[string]string{"wasmtime": "magnetar-wasm", "wazero": "magnetar-wasm-wazero"}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "wasmbench:", err)
		os.Exit(1)
	}
}

// --- results -------------------------------------------------------------------

type result struct {
	mu   sync.Mutex
	rows []row
	csv  []string
}

type row struct{ name, daemon, shim, ratio, note string }

func (r *result) sample(kind, engine, module string, d time.Duration) {
	r.mu.Lock()
	r.csv = append(r.csv, fmt.Sprintf("%s,%s,%s,%.3f", kind, engine, module, float64(d.Microseconds())/1000))
	r.mu.Unlock()
}

func (r *result) add(name, daemon, shim, ratio, note string) {
	r.mu.Lock()
	r.rows = append(r.rows, row{name, daemon, shim, ratio, note})
	r.mu.Unlock()
	fmt.Fprintf(os.Stderr, "  %-58s %-22s %-22s %s %s\n", name, daemon, shim, ratio, note)
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s)-1) + 0.5)
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func lat(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	return fmt.Sprintf("%s (p90 %.1f)", ms(pct(ds, 0.5)), float64(pct(ds, 0.9).Microseconds())/1000)
}

func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func (r *result) write() error {
	var b strings.Builder
	fmt.Fprintf(&b, "%-58s | %-22s | %-22s | %s\n", "", "in the daemon", "process per container", "ratio")
	fmt.Fprintf(&b, "%s\n", strings.Repeat("-", 120))
	for _, x := range r.rows {
		fmt.Fprintf(&b, "%-58s | %-22s | %-22s | %-6s %s\n", x.name, x.daemon, x.shim, x.ratio, x.note)
	}
	fmt.Print(b.String())
	if *outDir == "" {
		return nil
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*outDir, "table.txt"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(*outDir, "samples.csv"), []byte("kind,engine,module,ms\n"+strings.Join(r.csv, "\n")+"\n"), 0o644)
}

// --- the direct daemon -------------------------------------------------------------

type daemon struct {
	dir, listen, cfg, events string
	cmd                      *exec.Cmd
	exited                   chan struct{} // closed once cmd has been waited for
	grpc                     *grpc.ClientConn
	ctrl                     sandboxapi.ControllerClient
	tconn                    net.Conn
	task                     taskapi.TTRPCTaskService
	ttc                      *ttrpc.Client
}

func (d *daemon) taskSock() string { return filepath.Join(filepath.Dir(d.listen), "wasm-task.sock") }

func (d *daemon) start() error {
	d.cmd = exec.Command(*bin, "--listen", d.listen, "--dir", filepath.Join(d.dir, "lib"), "--config", d.cfg,
		"--containerd-address", d.events, "--log-level", *logLevel)
	lf, err := os.OpenFile(filepath.Join(d.dir, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	d.cmd.Stdout, d.cmd.Stderr = lf, lf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := d.cmd.Start(); err != nil {
		return err
	}
	lf.Close()
	exited := make(chan struct{})
	d.exited = exited
	go func() { _ = d.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("daemon exited at start: %s (see %s/daemon.log)", d.cmd.ProcessState, d.dir)
		default:
		}
		if c, err := net.Dial("unix", d.listen); err == nil {
			c.Close()
			if c2, err := net.Dial("unix", d.taskSock()); err == nil {
				d.tconn = c2
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon did not come up (see %s/daemon.log)", d.dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var err2 error
	d.grpc, err2 = grpc.NewClient("unix://"+d.listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err2 != nil {
		return err2
	}
	d.ctrl = sandboxapi.NewControllerClient(d.grpc)
	d.ttc = ttrpc.NewClient(d.tconn)
	d.task = taskapi.NewTTRPCTaskClient(d.ttc)
	// the Sandbox API answers once the daemon serves (the keeper accepts earlier)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := d.ctrl.Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: "none"})
		cancel()
		if err == nil || !strings.Contains(err.Error(), "Unavailable") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon does not answer: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemon) stop() {
	if d.ttc != nil {
		d.ttc.Close()
	}
	if d.grpc != nil {
		d.grpc.Close()
	}
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	}
	d.cmd = nil
}

// shutdown also ends the daemon's task keeper.
func (d *daemon) shutdown() {
	d.stop()
	if data, err := os.ReadFile(filepath.Join(filepath.Dir(d.listen), "wasm-keeper.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) pod(id, sandboxer string) error {
	ctx := context.Background()
	if _, err := d.ctrl.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: id, Sandboxer: sandboxer}); err != nil {
		return fmt.Errorf("create pod: %w", err)
	}
	_, err := d.ctrl.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: id, Sandboxer: sandboxer})
	return err
}

// ctr is one container run through the Task API.
type ctr struct {
	id  string
	out *os.File
	br  *bufio.Reader
}

var seq int

// startCtr runs args of the rootfs in pod; it returns once the first line of
// output arrived, with the time from Task.Create to it.
func (d *daemon) startCtr(pod, rootfs string, args []string) (*ctr, time.Duration, error) {
	seq++
	id := fmt.Sprintf("c%d-%d", os.Getpid(), seq)
	bundle := filepath.Join(d.dir, "bundles", id)
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return nil, 0, err
	}
	sp := specs.Spec{Version: specs.Version, Root: &specs.Root{Path: rootfs, Readonly: true},
		Process:     &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/"}},
		Annotations: map[string]string{"io.kubernetes.cri.sandbox-id": pod}}
	data, _ := json.Marshal(&sp)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		return nil, 0, err
	}
	fifo := filepath.Join(bundle, "stdout")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		return nil, 0, err
	}
	// read-write: never EOF, no writer needed to open it
	f, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		return nil, 0, err
	}
	c := &ctr{id: id, out: f, br: bufio.NewReader(f)}
	ctx := context.Background()
	t0 := time.Now()
	if _, err := d.task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: bundle, Stdout: fifo}); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("task create: %w", err)
	}
	tc := time.Now()
	if _, err := d.task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("task start: %w", err)
	}
	_ = f.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.br.ReadString('\n'); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("first output of %s: %w", id, err)
	}
	if os.Getenv("WASMBENCH_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "create %v start+output %v\n", tc.Sub(t0), time.Since(tc))
	}
	return c, time.Since(t0), nil
}

func (d *daemon) removeCtr(c *ctr) error {
	ctx := context.Background()
	if _, err := d.task.Kill(ctx, &taskapi.KillRequest{ID: c.id, Signal: 9}); err != nil {
		return err
	}
	if _, err := d.task.Wait(ctx, &taskapi.WaitRequest{ID: c.id}); err != nil {
		return err
	}
	if _, err := d.task.Delete(ctx, &taskapi.DeleteRequest{ID: c.id}); err != nil {
		return err
	}
	c.out.Close()
	return os.RemoveAll(filepath.Join(d.dir, "bundles", c.id))
}

// eventSink accepts the daemon's events (no containerd in the direct rows).
type eventSink struct{}

func (eventSink) Forward(context.Context, *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func serveEvents(path string) error {
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	eventsapi.RegisterTTRPCEventsService(srv, eventSink{})
	go func() { _ = srv.Serve(context.Background(), l) }()
	return nil
}

// --- memory ------------------------------------------------------------------------

// pssKiB is the PSS and RSS of a process (smaps_rollup).
func pssKiB(pid int) (pss, rss int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Pss:":
			pss = v
		case "Rss:":
			rss = v
		}
	}
	return
}

func threads(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func kib(v float64) string {
	if v >= 10240 {
		return fmt.Sprintf("%.1f MiB", v/1024)
	}
	return fmt.Sprintf("%.0f KiB", v)
}

// --- the rows ----------------------------------------------------------------------

type setup struct {
	rootfs  string
	modules map[string]string // name -> guest path
	args    map[string][]string
	idle    map[string][]string
}

func run() error {
	w, err := filepath.Abs(*work)
	if err != nil {
		return err
	}
	_ = os.RemoveAll(w)
	rootfs := filepath.Join(w, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return err
	}
	for src, dst := range map[string]string{*goMod: "guest.wasm", *cMod: "hello.wasm"} {
		data, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("module: %w (run hack/wasm/images.sh)", err)
		}
		if err := os.WriteFile(filepath.Join(rootfs, dst), data, 0o755); err != nil {
			return err
		}
	}
	s := &setup{rootfs: rootfs,
		args: map[string][]string{"go": {"/guest.wasm", "hello"}, "c": {"/hello.wasm"}},
		idle: map[string][]string{"go": {"/guest.wasm", "idle"}, "c": {"/hello.wasm", "idle"}}}
	runDir := filepath.Join(w, "run")
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return err
	}
	d := &daemon{dir: w, listen: filepath.Join(runDir, "wasm.sock"), cfg: filepath.Join(w, "wasm.toml"), events: filepath.Join(runDir, "containerd.sock.ttrpc")}
	// no containerd here: nothing to ask which sandboxes it still holds
	cfg := "forgotten_check = \"0\"\n[engines]\nmagnetar-wasm = \"wasmtime\"\nmagnetar-wasm-wazero = \"wazero\"\n"
	if err := os.WriteFile(d.cfg, []byte(cfg), 0o644); err != nil {
		return err
	}
	if err := serveEvents(d.events); err != nil {
		return err
	}
	defer d.shutdown()
	res := &result{}
	engs := strings.Split(*enginesF, ",")
	fmt.Fprintln(os.Stderr, "wasmbench: start latency, Task.Create -> first output, direct over the Task API")
	shimWarm := map[string]time.Duration{}
	for _, eng := range engs {
		for _, m := range []string{"c", "go"} {
			if err := latencyRows(d, s, res, eng, m, shimWarm); err != nil {
				return fmt.Errorf("%s/%s: %w", eng, m, err)
			}
		}
	}
	if *crictlBin != "" {
		fmt.Fprintln(os.Stderr, "wasmbench: start latency through crictl (create + start -> first log line)")
		for _, eng := range engs {
			for _, m := range []string{"c", "go"} {
				if err := crictlRows(res, eng, m, shimWarm); err != nil {
					return fmt.Errorf("crictl %s/%s: %w", eng, m, err)
				}
			}
		}
	}
	if *crictlBin != "" {
		for _, h := range strings.Split(*crictlRef, ",") {
			if h == "" {
				continue
			}
			if err := crictlRefRow(res, h); err != nil {
				fmt.Fprintf(os.Stderr, "wasmbench: reference %s skipped: %v\n", h, err)
			}
		}
	}
	fmt.Fprintln(os.Stderr, "wasmbench: memory per idle container")
	if err := memoryRows(d, s, res); err != nil {
		return err
	}
	return res.write()
}

func wipeCache(dir string) error { return os.RemoveAll(filepath.Join(dir, "lib", "modcache")) }

func latencyRows(d *daemon, s *setup, res *result, eng, m string, shimWarm map[string]time.Duration) error {
	pod := "bench-" + eng + "-" + m
	var cold, disk, warm []time.Duration
	for i := 0; i < *coldN; i++ {
		d.stop()
		if err := wipeCache(d.dir); err != nil {
			return err
		}
		if err := d.start(); err != nil {
			return err
		}
		if i == 0 {
			if err := d.pod(pod, handlers[eng]); err != nil {
				return err
			}
		}
		c, t, err := d.startCtr(pod, s.rootfs, s.args[m])
		if err != nil {
			return err
		}
		cold = append(cold, t)
		res.sample("direct-cold", eng, m, t)
		if err := d.removeCtr(c); err != nil {
			return err
		}
	}
	for i := 0; i < *coldN; i++ { // a new daemon, the compiled module on disk
		d.stop()
		if err := d.start(); err != nil {
			return err
		}
		c, t, err := d.startCtr(pod, s.rootfs, s.args[m])
		if err != nil {
			return err
		}
		disk = append(disk, t)
		res.sample("direct-warm-disk", eng, m, t)
		if err := d.removeCtr(c); err != nil {
			return err
		}
	}
	// warm: the daemon and the process per container alternate, so that the
	// machine's drift (other jobs) hits both alike
	cache := filepath.Join(d.dir, "shimcache", eng)
	var shimCold, shim []time.Duration
	if _, err := shimRun(eng, cache, s, m); err != nil { // fills the shim's cache
		return err
	}
	for i := 0; i < *samples; i++ {
		c, t, err := d.startCtr(pod, s.rootfs, s.args[m])
		if err != nil {
			return err
		}
		warm = append(warm, t)
		res.sample("direct-warm", eng, m, t)
		if err := d.removeCtr(c); err != nil {
			return err
		}
		t, err = shimRun(eng, cache, s, m)
		if err != nil {
			return err
		}
		shim = append(shim, t)
		res.sample("shim-warm", eng, m, t)
	}
	// the shim model, cold: a process per container, its cache empty
	for i := 0; i < *coldN; i++ {
		_ = os.RemoveAll(cache)
		t, err := shimRun(eng, cache, s, m)
		if err != nil {
			return err
		}
		shimCold = append(shimCold, t)
		res.sample("shim-cold", eng, m, t)
	}
	shimWarm[eng+"/"+m] = pct(shim, 0.5)
	mod := map[string]string{"c": "C module (36 KB)", "go": "Go module (2.9 MB)"}[m]
	res.add(fmt.Sprintf("%s, %s: start, cold cache (compile)", eng, mod), lat(cold), lat(shimCold), ratio(float64(pct(cold, .5)), float64(pct(shimCold, .5))), "")
	res.add(fmt.Sprintf("%s, %s: start, warm cache, new daemon", eng, mod), lat(disk), "", "", "(module read from the disk cache)")
	res.add(fmt.Sprintf("%s, %s: start, warm cache", eng, mod), lat(warm), lat(shim), ratio(float64(pct(warm, .5)), float64(pct(shim, .5))), target(eng, pct(warm, .5)))
	return nil
}

func target(eng string, p50 time.Duration) string {
	if p50 <= 10*time.Millisecond {
		return "(target p50 <= 10 ms: met)"
	}
	return "(target p50 <= 10 ms: NOT met)"
}

// shimRun spawns one process running the module and returns the time to
// its first line of output.
func shimRun(eng, cache string, s *setup, m string) (time.Duration, error) {
	args := append([]string{"run-module", "-engine", eng, "-cache", cache, "-root", s.rootfs, filepath.Join(s.rootfs, strings.TrimPrefix(s.args[m][0], "/"))}, s.args[m][1:]...)
	cmd := exec.Command(*bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	br := bufio.NewReader(out)
	_, err = br.ReadString('\n')
	t := time.Since(t0)
	_, _ = io.Copy(io.Discard, br)
	if werr := cmd.Wait(); err == nil && werr != nil {
		err = werr
	}
	return t, err
}

// --- memory -------------------------------------------------------------------------

func memoryRows(d *daemon, s *setup, res *result) error {
	shimCounts := parseCounts(*shimMem)
	for _, spec := range strings.Split(*memRows, ";") {
		parts := strings.Split(spec, ":")
		if len(parts) != 3 {
			return fmt.Errorf("-mem %q: want ENGINE:MODULE:COUNTS", spec)
		}
		eng, m := parts[0], parts[1]
		if !strings.Contains(","+*enginesF+",", ","+eng+",") {
			continue
		}
		var shimPer float64
		for _, n := range shimCounts {
			per, err := shimMemory(eng, d, s, m, n)
			if err != nil {
				return err
			}
			shimPer = per
		}
		for _, n := range parseCounts(parts[2]) {
			per, total, th, err := daemonMemory(d, s, eng, m, n)
			if err != nil {
				return fmt.Errorf("memory %s/%s/%d: %w", eng, m, n, err)
			}
			shim := ""
			r := ""
			if shimPer > 0 {
				shim = kib(shimPer) + fmt.Sprintf(" (at %d)", shimCounts[len(shimCounts)-1])
				r = ratio(per, shimPer)
			}
			mod := map[string]string{"c": "C", "go": "Go"}[m]
			res.add(fmt.Sprintf("%s, %s module: PSS per idle container, %d containers", eng, mod, n), kib(per), shim, r,
				fmt.Sprintf("(daemon PSS %s, %s threads)", kib(total), th))
		}
	}
	return nil
}

func parseCounts(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// daemonMemory starts n idle containers in a fresh daemon and returns the
// daemon's PSS growth per container.
func daemonMemory(d *daemon, s *setup, eng, m string, n int) (per, total float64, th string, err error) {
	d.stop()
	if err := d.start(); err != nil {
		return 0, 0, "", err
	}
	pods := (n + 49) / 50
	base := fmt.Sprintf("mem-%s-%s-%d", eng, m, n)
	for i := 0; i < pods; i++ {
		if err := d.pod(fmt.Sprintf("%s-%d", base, i), handlers[eng]); err != nil {
			return 0, 0, "", err
		}
	}
	// one run first: the engine and the module are loaded, as on a node
	c, _, err := d.startCtr(base+"-0", s.rootfs, s.idle[m])
	if err != nil {
		return 0, 0, "", err
	}
	if err := d.removeCtr(c); err != nil {
		return 0, 0, "", err
	}
	time.Sleep(500 * time.Millisecond)
	before, _ := pssKiB(d.pid())
	var cs []*ctr
	for i := 0; i < n; i++ {
		c, _, err := d.startCtr(fmt.Sprintf("%s-%d", base, i/50), s.rootfs, s.idle[m])
		if err != nil {
			return 0, 0, "", fmt.Errorf("container %d: %w", i, err)
		}
		cs = append(cs, c)
	}
	time.Sleep(time.Second)
	after, _ := pssKiB(d.pid())
	th = threads(d.pid())
	for _, c := range cs {
		if err := d.removeCtr(c); err != nil {
			return 0, 0, "", err
		}
	}
	for i := 0; i < pods; i++ {
		id := fmt.Sprintf("%s-%d", base, i)
		_, _ = d.ctrl.Stop(context.Background(), &sandboxapi.ControllerStopRequest{SandboxID: id})
		_, _ = d.ctrl.Shutdown(context.Background(), &sandboxapi.ControllerShutdownRequest{SandboxID: id})
	}
	return float64(after-before) / float64(n), float64(after), th, nil
}

// shimMemory runs n idle module processes and returns their PSS per process.
func shimMemory(eng string, d *daemon, s *setup, m string, n int) (float64, error) {
	cache := filepath.Join(d.dir, "shimcache", eng)
	args := append([]string{"run-module", "-engine", eng, "-cache", cache, "-root", s.rootfs, filepath.Join(s.rootfs, strings.TrimPrefix(s.idle[m][0], "/"))}, s.idle[m][1:]...)
	var cmds []*exec.Cmd
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	for i := 0; i < n; i++ {
		cmd := exec.Command(*bin, args...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return 0, err
		}
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		cmds = append(cmds, cmd)
		if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
			return 0, fmt.Errorf("shim process %d: %w", i, err)
		}
	}
	time.Sleep(time.Second)
	var sum int64
	for _, c := range cmds {
		p, _ := pssKiB(c.Process.Pid)
		sum += p
	}
	return float64(sum) / float64(n), nil
}

// --- through crictl -------------------------------------------------------------------

func crictl(args ...string) (string, error) {
	out, err := exec.Command(*crictlBin, append([]string{"-c", *crictlCfg}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("crictl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

func restartHarnessDaemon(wipe bool) error {
	if out, err := exec.Command(*harness, "sandboxer-stop", "magnetar-wasm").CombinedOutput(); err != nil {
		return fmt.Errorf("stop: %v: %s", err, out)
	}
	if wipe {
		if err := os.RemoveAll(filepath.Join(*hwork, "lib", "magnetar-wasm", "modcache")); err != nil {
			return err
		}
	}
	if out, err := exec.Command(*harness, "sandboxer-start", "magnetar-wasm").CombinedOutput(); err != nil {
		return fmt.Errorf("start: %v: %s", err, out)
	}
	return nil
}

func crictlRows(res *result, eng, m string, shimWarm map[string]time.Duration) error {
	imgs := map[string]string{}
	for _, kv := range strings.Split(*images, ",") {
		k, v, _ := strings.Cut(kv, "=")
		imgs[k] = v
	}
	dir := filepath.Join(*hwork, "tmp", "wasmbench-"+eng+"-"+m)
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return err
	}
	podCfg := filepath.Join(dir, "pod.json")
	pc := fmt.Sprintf(`{"metadata":{"name":"wasmbench-%s-%s","namespace":"bench","uid":"wasmbench-%s-%s-%d","attempt":1},
"labels":{"magnetar-bench":"wasm"},"log_directory":%q,"linux":{"cgroup_parent":%q}}`, eng, m, eng, m, time.Now().UnixNano(), filepath.Join(dir, "logs"), *cgroupP)
	if err := os.WriteFile(podCfg, []byte(pc), 0o644); err != nil {
		return err
	}
	pod, err := crictl("runp", "-r", handlers[eng], podCfg)
	if err != nil {
		return err
	}
	defer func() { _, _ = crictl("rmp", "-f", pod) }()
	args, _ := json.Marshal(map[string][]string{"go": {"/guest.wasm", "hello"}, "c": {"/hello.wasm"}}[m])
	one := func(i int) (time.Duration, error) {
		name := fmt.Sprintf("c%d", i)
		f := filepath.Join(dir, name+".json")
		cc := fmt.Sprintf(`{"metadata":{"name":%q},"image":{"image":%q},"command":%s,"log_path":"%s.log","linux":{}}`, name, imgs[m], args, name)
		if err := os.WriteFile(f, []byte(cc), 0o644); err != nil {
			return 0, err
		}
		logf := filepath.Join(dir, "logs", name+".log")
		t0 := time.Now()
		id, err := crictl("create", pod, f, podCfg)
		if err != nil {
			return 0, err
		}
		if _, err := crictl("start", id); err != nil {
			return 0, err
		}
		for {
			if b, err := os.ReadFile(logf); err == nil && strings.Contains(string(b), " stdout ") {
				break
			}
			if time.Since(t0) > 60*time.Second {
				return 0, errors.New("no output in 60 s")
			}
			time.Sleep(time.Millisecond)
		}
		t := time.Since(t0)
		_, _ = crictl("rm", "-f", id)
		return t, nil
	}
	var cold, warm []time.Duration
	for i := 0; i < *coldN; i++ {
		if err := restartHarnessDaemon(true); err != nil {
			return err
		}
		t, err := one(1000 + i)
		if err != nil {
			return err
		}
		cold = append(cold, t)
		res.sample("crictl-cold", eng, m, t)
	}
	for i := 0; i < *samples; i++ {
		t, err := one(i)
		if err != nil {
			return err
		}
		warm = append(warm, t)
		res.sample("crictl-warm", eng, m, t)
	}
	mod := map[string]string{"c": "C module", "go": "Go module"}[m]
	res.add(fmt.Sprintf("%s, %s: crictl create+start -> first log line, cold", eng, mod), lat(cold), "", "", "(includes 2 crictl execs)")
	res.add(fmt.Sprintf("%s, %s: crictl create+start -> first log line, warm", eng, mod), lat(warm), "", "", "")
	return nil
}

// crictlRefRow measures a non-wasm handler the same way (busybox echo), so
// that the crictl rows can be read against what a process container costs.
func crictlRefRow(res *result, handler string) error {
	dir := filepath.Join(*hwork, "tmp", "wasmbench-ref-"+handler)
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return err
	}
	podCfg := filepath.Join(dir, "pod.json")
	pc := fmt.Sprintf(`{"metadata":{"name":"wasmbench-ref-%s","namespace":"bench","uid":"wasmbench-ref-%s-%d","attempt":1},
"labels":{"magnetar-bench":"wasm"},"log_directory":%q,"linux":{"cgroup_parent":%q}}`, handler, handler, time.Now().UnixNano(), filepath.Join(dir, "logs"), *cgroupP)
	if err := os.WriteFile(podCfg, []byte(pc), 0o644); err != nil {
		return err
	}
	pod, err := crictl("runp", "-r", handler, podCfg)
	if err != nil {
		return err
	}
	defer func() { _, _ = crictl("rmp", "-f", pod) }()
	var warm []time.Duration
	for i := 0; i < *samples; i++ {
		name := fmt.Sprintf("r%d", i)
		f := filepath.Join(dir, name+".json")
		cc := fmt.Sprintf(`{"metadata":{"name":%q},"image":{"image":%q},"command":["echo","hello"],"log_path":"%s.log","linux":{}}`, name, *refImage, name)
		if err := os.WriteFile(f, []byte(cc), 0o644); err != nil {
			return err
		}
		logf := filepath.Join(dir, "logs", name+".log")
		t0 := time.Now()
		id, err := crictl("create", pod, f, podCfg)
		if err != nil {
			return err
		}
		if _, err := crictl("start", id); err != nil {
			return err
		}
		for {
			if b, err := os.ReadFile(logf); err == nil && strings.Contains(string(b), " stdout ") {
				break
			}
			if time.Since(t0) > 60*time.Second {
				return errors.New("no output in 60 s")
			}
			time.Sleep(time.Millisecond)
		}
		t := time.Since(t0)
		warm = append(warm, t)
		res.sample("crictl-ref", handler, "busybox", t)
		_, _ = crictl("rm", "-f", id)
	}
	res.add(fmt.Sprintf("reference: %s, busybox echo: crictl create+start -> first log line", handler), lat(warm), "", "", "(a process container)")
	return nil
}
