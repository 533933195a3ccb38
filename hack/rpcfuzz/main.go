package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/magnetar-runtime/magnetar/shared/mount"
)

var (
	seedF     = flag.Uint64("seed", 0, "seed of the random cases (0: from the clock; printed)")
	casesF    = flag.Int("cases", 300, "random cases per handler (after the table)")
	handlersF = flag.String("handlers", "all", "handlers to fuzz, comma-separated: runc, wasm, vmm, clh, stratovirt, gvisor, quark, or all")
	podsF     = flag.Bool("pods", true, "also create and start valid pods (runc, wasm, gvisor) to aim the Task API at; false: no pod is started")
	binDir    = flag.String("bin", "bin", "directory of the sandboxer binaries")
	runcBin   = flag.String("runc", "_output/prefix/bin/runc", "runc for the runc sandboxer (else runc in PATH)")
	runscBin  = flag.String("runsc", "_output/prefix/bin/runsc", "runsc for the gVisor sandboxer (else runsc in PATH)")
	quarkBin  = flag.String("quark", "_output/standins/quark", "quark for the Quark sandboxer (the stand-in: make quark-standin)")
	workDir   = flag.String("work", "/tmp", "where each daemon's temporary root is made (short: socket paths)")
	keep      = flag.Bool("keep", false, "keep each daemon's root (its log: ROOT/daemon.log)")
	logLevel  = flag.String("log-level", "warn", "the daemons' log level")
	verbose   = flag.Bool("v", false, "print every case")
)

// callTimeout is the longest a request may take: longer is a hang.
const callTimeout = 10 * time.Second

func main() {
	flag.Parse()
	seed := *seedF
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	fmt.Printf("rpcfuzz: seed %d (replay: -seed %d)\n", seed, seed)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	var total, failed, ran int
	var lines []string
	for _, h := range handlers {
		if *handlersF != "all" && !slices.Contains(strings.Split(*handlersF, ","), h.name) {
			continue
		}
		r := &runner{h: h, seed: seed, stop: sigs}
		err := r.fuzz()
		switch {
		case isSkip(err):
			lines = append(lines, fmt.Sprintf("rpcfuzz %s: skipped: %v", h.name, err))
			continue
		case err != nil:
			r.fail("run", err.Error())
		}
		ran++
		total += r.cases
		failed += len(r.failures)
		lines = append(lines, fmt.Sprintf("rpcfuzz %s: %d cases, %d failures (%s)", h.name, r.cases, len(r.failures), r.took.Round(time.Second)))
	}
	for _, l := range lines {
		fmt.Println(l)
	}
	fmt.Printf("rpcfuzz total: %d handlers, %d cases, %d failures (seed %d)\n", ran, total, failed, seed)
	// for .ci/run's sum: a failure is a case that failed or a leak a group left
	fmt.Printf("rpcfuzz: %d passed, %d failed\n", max(total-failed, 0), failed)
	if failed > 0 || ran == 0 {
		os.Exit(1)
	}
}

// runner fuzzes one handler.
type runner struct {
	h        *handler
	seed     uint64
	d        *daemon
	cases    int
	failures []string
	took     time.Duration
	stop     chan os.Signal
	// created are the sandboxes that may exist: removed at the end
	created map[string]bool
	mu      sync.Mutex
}

func (r *runner) fail(where, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	line := fmt.Sprintf("FAIL %s: %s: %s", r.h.name, where, msg)
	r.failures = append(r.failures, line)
	fmt.Fprintln(os.Stderr, line)
}

func (r *runner) fuzz() (retErr error) {
	start := time.Now()
	defer func() { r.took = time.Since(start) }()
	h := fnv.New64a()
	h.Write([]byte(r.h.name))
	rng := rand.New(rand.NewPCG(r.seed, h.Sum64()))
	d, err := newDaemon(r.h, fmt.Sprintf("%d", os.Getpid()))
	if err != nil {
		return err
	}
	r.d, r.created = d, map[string]bool{}
	defer func() {
		if err := r.teardown(); err != nil && retErr == nil {
			retErr = err
		}
	}()
	if err := d.start(); err != nil {
		return err
	}
	fmt.Printf("rpcfuzz %s: daemon pid %d, keeper %d, root %s\n", r.h.name, d.pid(), d.keeperPid, d.root)
	for _, v := range d.security() {
		r.fail("security at start", v)
	}
	groups := []struct {
		name string
		run  func()
	}{
		{"hostile ids", r.hostileIDs},
		{"unknown ids", r.unknownIDs},
		{"sandbox paths and payloads", r.sandboxInputs},
		{"task bundles, stdio and payloads", r.taskInputs},
		{"calls out of order", r.outOfOrder},
		{"raw frames on both sockets", r.rawFrames},
		{"50 goroutines on one id", r.concurrent},
		{"pods: task inputs against a running pod", r.podTasks},
		{"random", func() { r.random(rng) }},
	}
	for _, g := range groups {
		select {
		case <-r.stop:
			return errors.New("interrupted")
		default:
		}
		before := d.snapshot()
		n := r.cases
		gstart := time.Now()
		g.run()
		r.cleanup()
		if !d.alive() {
			return fmt.Errorf("the daemon died in group %q: %v: %s", g.name, d.exitErr, tail(filepath.Join(d.root, "daemon.log")))
		}
		for _, leak := range before.diff(d.snapshot(), d) {
			r.fail(g.name, leak)
		}
		for _, v := range d.security() {
			r.fail(g.name+": security", v)
		}
		fmt.Printf("rpcfuzz %s: %-42s %5d cases %6s\n", r.h.name, g.name, r.cases-n, time.Since(gstart).Round(10*time.Millisecond))
	}
	return nil
}

// try runs one case and checks its answer.
func (r *runner) try(k kase) codes.Code {
	r.mu.Lock()
	r.cases++
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	ctx = ttrpc.WithMetadata(ctx, ttrpc.MD{"containerd-namespace-ttrpc": []string{"k8s.io"}})
	t0 := time.Now()
	err := k.run(ctx, r.d)
	took := time.Since(t0)
	code := status.Code(err)
	name := printable(k.name)
	if *verbose {
		fmt.Printf("  %s %s: %s %s %v\n", r.h.name, name, code, took.Round(time.Millisecond), short(err))
	}
	switch {
	case !r.d.alive():
		r.fail(name, fmt.Sprintf("the daemon died (%v)", r.d.exitErr))
	case r.d.keeperPid > 0 && syscall.Kill(r.d.keeperPid, 0) != nil:
		r.fail(name, fmt.Sprintf("the keeper (pid %d) died", r.d.keeperPid))
	case took >= callTimeout || code == codes.DeadlineExceeded:
		r.fail(name, fmt.Sprintf("no answer within %s", callTimeout))
	case errors.Is(err, ttrpc.ErrClosed) || code == codes.Unavailable:
		r.fail(name, fmt.Sprintf("connection lost: %v", short(err)))
		if rerr := r.d.redialTask(); rerr != nil {
			r.fail(name, "redial: "+rerr.Error())
		}
	case code == codes.Unimplemented && strings.HasPrefix(k.name, "Task.Create"):
		// containerd downgrades its task API client on it and asks again
		r.fail(name, fmt.Sprintf("got %s (%s) from Task.Create", code, short(err)))
	case !slices.Contains(k.want, code):
		r.fail(name, fmt.Sprintf("got %s (%s), want %v", code, short(err), k.want))
	}
	if pts := r.outsideMounts(); len(pts) > 0 {
		r.fail(name, "mounted outside its root: "+strings.Join(pts, ", "))
		for _, p := range pts {
			_ = mount.UnmountAll(p)
		}
	}
	return code
}

// outsideMounts lists mounts at or below ROOT/outside (a path followed
// out of a bundle).
func (r *runner) outsideMounts() []string {
	infos, err := mount.Self()
	if err != nil {
		return nil
	}
	return mount.Below(infos, r.d.outside)
}

// many runs the same case from n goroutines at once and returns the codes.
func (r *runner) many(n int, k kase) []codes.Code {
	out := make([]codes.Code, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			out[i] = r.try(k)
		}()
	}
	close(gate)
	wg.Wait()
	return out
}

// cleanup removes every sandbox and container the cases may have made.
func (r *runner) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctx = ttrpc.WithMetadata(ctx, ttrpc.MD{"containerd-namespace-ttrpc": []string{"k8s.io"}})
	r.mu.Lock()
	ids := make([]string, 0, len(r.created))
	for id := range r.created {
		ids = append(ids, id)
	}
	r.created = map[string]bool{}
	r.mu.Unlock()
	slices.Sort(ids)
	for _, id := range ids {
		if strings.HasPrefix(id, "task:") {
			id = strings.TrimPrefix(id, "task:")
			_, _ = r.d.task.Kill(ctx, &killReq{ID: id, Signal: 9, All: true})
			_, _ = r.d.task.Delete(ctx, &deleteReq{ID: id})
		}
	}
	calls := ctrlCalls(r.d)
	for _, id := range ids {
		if !strings.HasPrefix(id, "task:") {
			if err := calls["Shutdown"](ctx, id); err != nil && status.Code(err) != codes.InvalidArgument {
				r.fail("cleanup", fmt.Sprintf("Controller.Shutdown %s: %v", id, short(err)))
			}
		}
	}
}

func (r *runner) made(id string) {
	r.mu.Lock()
	r.created[id] = true
	r.mu.Unlock()
}

func (r *runner) teardown() error {
	if r.d == nil {
		return nil
	}
	if r.d.cmd != nil && r.d.alive() {
		r.cleanup()
		// nothing of the run's pods may be left when the daemon goes
		for pid, line := range descendants(r.d.pid()) {
			if pid != r.d.keeperPid {
				r.fail("teardown", fmt.Sprintf("process left: %d %s", pid, line))
			}
		}
	}
	r.d.stop()
	// a panic the server recovered answered Internal and was counted; one
	// in a goroutine of the daemon's own killed it: both are in its log
	if b, err := os.ReadFile(filepath.Join(r.d.root, "daemon.log")); err == nil {
		n := 0
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "panic") && n < 5 {
				r.fail("daemon log", printable(l))
				n++
			}
		}
	}
	if infos, err := mount.Self(); err == nil {
		if left := mount.Below(infos, r.d.root); len(left) > 0 {
			r.fail("teardown", "mounts left below the root: "+strings.Join(left, ", "))
			_ = mount.UnmountAll(r.d.root)
		}
	}
	for _, c := range r.d.cgroupParents() {
		_ = os.Remove(c) // the run's parent, empty once its pods are gone
	}
	for _, p := range escapes(r.d) {
		if _, err := os.Lstat(p); err == nil {
			r.fail("teardown", "escape target exists: "+p)
		}
	}
	if *keep || len(r.failures) > 0 {
		fmt.Printf("rpcfuzz %s: kept %s (daemon.log)\n", r.h.name, r.d.root)
		return nil
	}
	return mount.RemoveAll(r.d.root)
}

// printable shortens and quotes a case name for the report.
func printable(s string) string {
	if len(s) > 160 {
		s = s[:160] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return strings.ToValidUTF8(fmt.Sprintf("%+q", s)[1:len(fmt.Sprintf("%+q", s))-1], "?")
}

func short(err error) string {
	if err == nil {
		return "ok"
	}
	s := err.Error()
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
