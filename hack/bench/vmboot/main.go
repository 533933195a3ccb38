package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"

	"github.com/magnetar-runtime/magnetar/hack/bench/internal/guestimage"
	"github.com/magnetar-runtime/magnetar/hack/vm/guestvm"
	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
)

// sample is one boot's phases in milliseconds (-1: not measured).
type sample struct {
	VMMStart   float64 `json:"vmm_start_ms"`
	ToInit     float64 `json:"to_init_ms"`       // QEMU start → /init's first line
	GuestInit  float64 `json:"guest_init_ms"`    // guest CLOCK_BOOTTIME at /init (marker only)
	Modules    float64 `json:"modules_ms"`       // module loading as the guest measured it
	InitWork   float64 `json:"init_work_ms"`     // agent: mounts+modules+share (its elapsed=)
	Share      float64 `json:"share_ms"`         // agent: mounting the virtio-fs share
	ToModules  float64 `json:"to_modules_ms"`    // QEMU start → modules loaded (marker only)
	Serving    float64 `json:"serving_ms"`       // QEMU start → the agent's "serving" line
	AgentReady float64 `json:"agent_ready_ms"`   // QEMU start → first Health answer
	Container  float64 `json:"container_ms"`     // ready → a busybox container's first output line
	Shutdown   float64 `json:"shutdown_ms"`      // poweroff request/marker → QEMU exit
	Total      float64 `json:"qemu_lifetime_ms"` // QEMU start → exit
}

type result struct {
	Accel   string             `json:"accel"`
	Runs    int                `json:"runs"`
	Marker  []sample           `json:"marker"`
	Agent   []sample           `json:"agent"`
	RTT     []float64          `json:"rtt_us,omitempty"`
	Image   map[string]string  `json:"image"`
	Medians map[string]float64 `json:"medians"`
}

func main() {
	img := flag.String("image", "_output/guest", "guest image directory (make guest-image)")
	runs := flag.Int("runs", 7, "boots of each kind (interleaved)")
	rttN := flag.Int("rtt", 1000, "Health calls for the round trip (0: skip)")
	jsonOut := flag.String("json", "", "also write the raw samples here")
	mem := flag.Int("mem", 512, "guest memory (MiB)")
	verbose := flag.Bool("v", false, "print every boot")
	consoles := flag.String("console", "", "write each boot's console (host-timed) to DIR/<kind>-<run>.log")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *img, *runs, *rttN, *mem, *jsonOut, *consoles, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "vmboot:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, img string, runs, rttN, mem int, jsonOut, consoles string, verbose bool) error {
	if runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	share, err := os.MkdirTemp("", "mgvm-bench-share-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(share)
	if err := guestvm.BusyboxBundle(share, benchContainer, []string{"echo", "up"}, nil); err != nil {
		return err
	}
	cfg := func(initrd string) guestvm.Config {
		return guestvm.Config{
			Kernel: filepath.Join(img, "vmlinuz"), Initrd: filepath.Join(img, initrd), MemoryMiB: mem,
			SerialPort: agentapi.DefaultSerialPort, Share: share, ShareTag: agentapi.DefaultShareTag,
			Cmdline: []string{agentapi.CmdlineTransport + "=" + agentapi.DefaultTransport, agentapi.CmdlineShare + "=" + agentapi.DefaultShare},
		}
	}
	res := result{Runs: runs, Image: guestimage.Info(img, "kernel", "runc", "initramfs_bytes", "modules")}
	if consoles != "" {
		if err := os.MkdirAll(consoles, 0o755); err != nil {
			return err
		}
	}
	for i := 0; i < runs; i++ {
		// alternate which kind goes first, so a drift in host load hits both
		order := []bool{false, true}
		if i%2 == 1 {
			order = []bool{true, false}
		}
		for _, agent := range order {
			var s sample
			var accel string
			initrd := "initramfs-marker.cpio"
			if agent {
				initrd = "initramfs.cpio"
			}
			c := cfg(initrd)
			if consoles != "" {
				f, err := os.Create(filepath.Join(consoles, fmt.Sprintf("%s-%d.log", kind(agent), i+1)))
				if err != nil {
					return err
				}
				c.Console = f
				defer f.Close()
			}
			if agent {
				n := 0
				if i == runs-1 { // the round trip on the last agent boot
					n = rttN
				}
				s, accel, err = bootAgent(ctx, c, n, &res.RTT)
			} else {
				s, accel, err = bootMarker(ctx, c)
			}
			if err != nil {
				return fmt.Errorf("run %d (%s): %w", i+1, kind(agent), err)
			}
			res.Accel = accel
			if agent {
				res.Agent = append(res.Agent, s)
			} else {
				res.Marker = append(res.Marker, s)
			}
			if verbose {
				b, _ := json.Marshal(s)
				fmt.Fprintf(os.Stderr, "run %d %s: %s\n", i+1, kind(agent), b)
			}
		}
	}
	report(os.Stdout, &res)
	if jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		return os.WriteFile(jsonOut, append(b, '\n'), 0o644)
	}
	return nil
}

func kind(agent bool) string {
	if agent {
		return "agent"
	}
	return "marker"
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// agentPhases reads the agent's console log: `msg="guest initialised"`
// (after mounts, modules and the share: elapsed= since its main() started,
// with t_mounts=, t_modules=, t_share=) and `msg="magnetar-agent serving"`.
// main()'s start is that line's arrival minus its elapsed; the exec of /init
// is earlier by the Go runtime's and packages' init (GODEBUG=inittrace=1 on
// the kernel command line shows it: about 0.3 s under TCG).
func agentPhases(lines []guestvm.Line, started time.Time, s *sample) {
	for _, l := range lines {
		switch {
		case s.InitWork < 0 && strings.Contains(l.Text, `msg="guest initialised"`):
			if v := logDuration(l.Text, "elapsed"); v >= 0 {
				s.InitWork = v
				s.ToInit = ms(l.At.Sub(started)) - v
			}
			s.Modules = logDuration(l.Text, "t_modules")
			s.Share = logDuration(l.Text, "t_share")
		case s.Serving < 0 && strings.Contains(l.Text, `msg="magnetar-agent serving"`):
			s.Serving = ms(l.At.Sub(started))
		}
	}
}

// logDuration is the value of key=<Go duration> in a logfmt line, in ms (-1: absent).
func logDuration(line, key string) float64 {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			d, err := time.ParseDuration(strings.Trim(v, `"`))
			if err != nil {
				return -1
			}
			return ms(d)
		}
	}
	return -1
}

func bootMarker(ctx context.Context, cfg guestvm.Config) (sample, string, error) {
	s := sample{AgentReady: -1, Serving: -1, InitWork: -1, Share: -1, Container: -1}
	b, err := guestvm.BootMarker(ctx, cfg)
	if err != nil {
		return s, b.Accel, err
	}
	s.VMMStart = ms(b.QMP.Sub(b.Started))
	s.ToInit = ms(b.Init.Sub(b.Started))
	s.GuestInit = b.GuestInitMS
	s.ToModules = ms(b.Modules.Sub(b.Started))
	s.Modules = b.ModulesMS
	s.Shutdown = ms(b.Exited.Sub(b.Modules))
	s.Total = ms(b.Exited.Sub(b.Started))
	return s, b.Accel, nil
}

func bootAgent(ctx context.Context, cfg guestvm.Config, rttN int, rtt *[]float64) (sample, string, error) {
	s := sample{GuestInit: -1, ToModules: -1, Modules: -1, ToInit: -1, Serving: -1, InitWork: -1, Share: -1, Container: -1}
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	vm, err := guestvm.Start(ctx, cfg)
	if err != nil {
		return s, "", err
	}
	defer vm.Close()
	q, err := vm.QMPReady(ctx)
	if err != nil {
		return s, vm.Accel(), err
	}
	s.VMMStart = ms(q.Sub(vm.Started))
	alive := func() error {
		if r := vm.ExitReason(); r != "" {
			return fmt.Errorf("qemu exited (%s)", r)
		}
		return nil
	}
	c, err := agentclient.Dial(ctx, agentclient.Target{Serial: vm.AgentSocket()}, agentclient.Options{Alive: alive})
	if err != nil {
		return s, vm.Accel(), fmt.Errorf("%w\n%s", err, vm.Tail(20))
	}
	ready := time.Now()
	defer c.Close()
	s.AgentReady = ms(ready.Sub(vm.Started))
	d, err := runContainer(ctx, c)
	if err != nil {
		return s, vm.Accel(), fmt.Errorf("container: %w\n%s", err, vm.Tail(20))
	}
	s.Container = ms(d)
	for i := 0; i < rttN; i++ {
		t0 := time.Now()
		if _, err := c.Sandbox().Health(ctx, &agentapi.HealthRequest{ClientVersion: agentapi.Version}); err != nil {
			return s, vm.Accel(), fmt.Errorf("health %d: %w", i, err)
		}
		*rtt = append(*rtt, float64(time.Since(t0).Microseconds()))
	}
	t0 := time.Now()
	if _, err := c.Sandbox().Shutdown(ctx, &agentapi.ShutdownRequest{Reason: "vmboot benchmark"}); err != nil {
		// the agent may power off before its answer is out: QEMU's exit decides
		select {
		case <-vm.Done():
		default:
			return s, vm.Accel(), fmt.Errorf("shutdown: %w", err)
		}
	}
	if err := vm.Wait(ctx); err != nil {
		return s, vm.Accel(), fmt.Errorf("qemu after Shutdown: %w", err)
	}
	end := time.Now()
	s.Shutdown = ms(end.Sub(t0))
	s.Total = ms(end.Sub(vm.Started))
	// the console is complete only now: a log line may still be on its way
	// through the emulated UART when Health has already answered
	agentPhases(vm.Lines(), vm.Started, &s)
	if s.InitWork < 0 || s.Serving < 0 {
		fmt.Fprintf(os.Stderr, "vmboot: agent log lines missing in this boot's console:\n%s", vm.Tail(15))
	}
	return s, vm.Accel(), nil
}

// benchContainer is the bundle on the share (made once by run).
const benchContainer = "vmboot"

// runContainer creates and starts the busybox container, returns the time
// from Create to its first stdout line, then waits for it and deletes it.
func runContainer(ctx context.Context, c *agentclient.Client) (time.Duration, error) {
	t0 := time.Now()
	task := c.Task()
	if _, err := task.Create(ctx, &taskapi.CreateTaskRequest{ID: benchContainer, Bundle: agentapi.ShareRoot + "/" + benchContainer,
		Stdout: agentapi.StdioPath(benchContainer, "", agentapi.Stdout)}); err != nil {
		return 0, fmt.Errorf("create: %w", err)
	}
	out, err := c.Stdout(ctx, benchContainer, "")
	if err != nil {
		return 0, err
	}
	defer out.Close()
	if _, err := task.Start(ctx, &taskapi.StartRequest{ID: benchContainer}); err != nil {
		return 0, fmt.Errorf("start: %w", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("stdout: %w", err)
	}
	d := time.Since(t0)
	if strings.TrimSpace(line) != "up" {
		return 0, fmt.Errorf("stdout %q, want up", line)
	}
	if _, err := task.Wait(ctx, &taskapi.WaitRequest{ID: benchContainer}); err != nil {
		return 0, fmt.Errorf("wait: %w", err)
	}
	if _, err := task.Delete(ctx, &taskapi.DeleteRequest{ID: benchContainer}); err != nil {
		return 0, fmt.Errorf("delete: %w", err)
	}
	return d, nil
}

// stats of the values >= 0
func stats(v []float64) (med, lo, hi float64, n int) {
	var x []float64
	for _, f := range v {
		if f >= 0 {
			x = append(x, f)
		}
	}
	if len(x) == 0 {
		return -1, -1, -1, 0
	}
	slices.Sort(x)
	med = x[len(x)/2]
	if len(x)%2 == 0 {
		med = (x[len(x)/2-1] + x[len(x)/2]) / 2
	}
	return med, x[0], x[len(x)-1], len(x)
}

func pick(ss []sample, f func(sample) float64) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

func report(w io.Writer, r *result) {
	r.Medians = map[string]float64{}
	fmt.Fprintf(w, "vmboot: %d boots of each kind, interleaved; microvm, accel %s; kernel %s, %s modules, agent initramfs %s bytes\n",
		r.Runs, r.Accel, r.Image["kernel"], r.Image["modules"], r.Image["initramfs_bytes"])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase (ms)\tmedian\tmin\tmax\tn\t")
	row := func(name, key string, v []float64) float64 {
		med, lo, hi, n := stats(v)
		if n == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t0\t\n", name)
			return -1
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%d\t\n", name, med, lo, hi, n)
		r.Medians[key] = med
		return med
	}
	row("marker: VMM start (QEMU → QMP greeting)", "marker_vmm", pick(r.Marker, func(s sample) float64 { return s.VMMStart }))
	row("marker: kernel, guest clock at /init", "marker_guest_init", pick(r.Marker, func(s sample) float64 { return s.GuestInit }))
	bare := row("marker: QEMU start → /init (bare guest boot)", "bare_boot", pick(r.Marker, func(s sample) float64 { return s.ToInit }))
	row("marker: modules (guest-measured)", "marker_modules", pick(r.Marker, func(s sample) float64 { return s.Modules }))
	bareMod := row("marker: QEMU start → modules loaded", "marker_to_modules", pick(r.Marker, func(s sample) float64 { return s.ToModules }))
	row("marker: poweroff → QEMU exit", "marker_shutdown", pick(r.Marker, func(s sample) float64 { return s.Shutdown }))
	row("agent: VMM start (QEMU → QMP greeting)", "agent_vmm", pick(r.Agent, func(s sample) float64 { return s.VMMStart }))
	agentInit := row("agent: QEMU start → main() (derived)", "agent_to_init", pick(r.Agent, func(s sample) float64 { return s.ToInit }))
	row("agent: modules (agent-logged)", "agent_modules", pick(r.Agent, func(s sample) float64 { return s.Modules }))
	row("agent: share mount (agent-logged)", "agent_share", pick(r.Agent, func(s sample) float64 { return s.Share }))
	row("agent: mounts+modules+share (agent-logged)", "agent_init", pick(r.Agent, func(s sample) float64 { return s.InitWork }))
	row("agent: QEMU start → serving (log line)", "agent_serving", pick(r.Agent, func(s sample) float64 { return s.Serving }))
	row("agent: main() → ready", "agent_init_to_ready", pick(r.Agent, func(s sample) float64 {
		if s.ToInit < 0 {
			return -1
		}
		return s.AgentReady - s.ToInit
	}))
	ready := row("agent: QEMU start → ready (first Health)", "agent_ready", pick(r.Agent, func(s sample) float64 { return s.AgentReady }))
	cont := row("agent: ready → container output (Create…first line)", "container", pick(r.Agent, func(s sample) float64 { return s.Container }))
	podPreview := -1.0
	if cont > 0 && ready > 0 {
		podPreview = row("agent: QEMU start → container output", "pod_preview", pick(r.Agent, func(s sample) float64 {
			if s.Container < 0 {
				return -1
			}
			return s.AgentReady + s.Container
		}))
	}
	row("agent: Shutdown RPC → QEMU exit", "agent_shutdown", pick(r.Agent, func(s sample) float64 { return s.Shutdown }))
	tw.Flush()
	if bare > 0 && ready > 0 {
		fmt.Fprintf(w, "ratio agent ready / bare guest boot (to /init): %.2f× (DESIGN.md §8 target for the later pod-ready figure: ≤ 1.3×)\n", ready/bare)
		r.Medians["ratio_ready_bare"] = ready / bare
	}
	if podPreview > 0 && bare > 0 {
		fmt.Fprintf(w, "ratio first container output / bare guest boot: %.2f× (a preview of pod ready: no CNI, no host-side task proxy)\n", podPreview/bare)
		r.Medians["ratio_container_bare"] = podPreview / bare
	}
	if bareMod > 0 && ready > 0 {
		fmt.Fprintf(w, "ratio agent ready / bare boot incl. the same modules: %.2f×\n", ready/bareMod)
	}
	if agentInit > 0 && bare > 0 {
		fmt.Fprintf(w, "agent's main() started %+.0f ms after the marker's /init (a larger initramfs to unpack, the agent's Go package init)\n", agentInit-bare)
	}
	if len(r.RTT) > 0 {
		x := slices.Clone(r.RTT)
		slices.Sort(x)
		q := func(p float64) float64 { return x[min(len(x)-1, int(p*float64(len(x))))] }
		fmt.Fprintf(w, "ttrpc Health round trip over virtio-serial, n=%d: p50 %.0f µs, p90 %.0f µs, p99 %.0f µs, min %.0f µs, max %.0f µs\n",
			len(x), q(0.5), q(0.9), q(0.99), x[0], x[len(x)-1])
		r.Medians["rtt_p50_us"] = q(0.5)
		r.Medians["rtt_p99_us"] = q(0.99)
	}
}
