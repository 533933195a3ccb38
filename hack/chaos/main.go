package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

var (
	seedF     = flag.Uint64("seed", 0, "seed of the kill choices (0: from the clock; printed)")
	killsF    = flag.Int("kills", 10, "kills per handler")
	handlersF = flag.String("handlers", "magnetar-runc,magnetar-wasm,magnetar-gvisor,magnetar-quark,magnetar-vmm,magnetar-clh,magnetar-stratovirt", "runtime handlers, comma-separated (the VM handlers need make guest-image, magnetar-clh and magnetar-stratovirt make standins)")
	rootF     = flag.String("root", ".", "the Magnetar checkout (hack/containerd.sh, bin/)")
	workF     = flag.String("work", "_output/chaos/harness", "the harness's WORK (its own: never another harness's)")
	bridgeF   = flag.String("bridge", "mgbr-chaos", "the harness's CNI bridge")
	subnetF   = flag.String("subnet", "10.235.0.0/16", "the harness's pod subnet")
	cgroupF   = flag.String("cgroup-parent", "/magnetar-chaos", "cgroup parent of the pods")
	workersF  = flag.Int("workers", 2, "goroutines creating and removing pods")
	witnessF  = flag.Int("witnesses", 2, "long-lived pods per handler that no worker touches")
	keepF     = flag.Bool("keep", false, "leave the harness running at the end (to look at it)")
	verbose   = flag.Bool("v", false, "print every workload step")
)

func main() {
	flag.Parse()
	seed := *seedF
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	fmt.Printf("chaos: seed %d (replay: -seed %d)\n", seed, seed)
	root, err := filepath.Abs(*rootF)
	if err != nil {
		fatal(err)
	}
	work := *workF
	if !filepath.IsAbs(work) {
		work = filepath.Join(root, work)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	names := strings.Split(*handlersF, ",")
	var lines []string
	var tried, survived, lost, left, failed int
	for _, name := range names {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		r := newRunner(name, seed, root, work, sigs)
		r.run()
		line := fmt.Sprintf("chaos %s: %d kills survived / %d tried, %d pods lost, %d leftovers (%s)",
			name, r.survived, r.tried, r.lost, r.leftovers, r.took.Round(time.Second))
		if r.skipped != "" {
			line = fmt.Sprintf("chaos %s: skipped: %s", name, r.skipped)
		}
		if n := len(r.ctrdNetns); n > 0 {
			line += fmt.Sprintf(", %d network namespaces left by containerd (its own leak)", n)
		}
		if n := len(r.ctrdBundles); n > 0 {
			line += fmt.Sprintf(", %d task bundles left half-deleted by containerd (its own leak)", n)
		}
		if len(r.failures) > 0 {
			line += fmt.Sprintf(", %d failures", len(r.failures))
		}
		fmt.Println(line)
		lines = append(lines, line)
		tried += r.tried
		survived += r.survived
		lost += r.lost
		left += r.leftovers
		failed += len(r.failures)
		if r.interrupted {
			break
		}
	}
	fmt.Println()
	for _, l := range lines {
		fmt.Println(l)
	}
	fmt.Printf("chaos total: %d kills survived / %d tried, %d pods lost, %d leftovers, %d failures (seed %d)\n",
		survived, tried, lost, left, failed, seed)
	// for .ci/run's sum: a kill survived passes, each failure fails
	fmt.Printf("chaos: %d passed, %d failed\n", survived, failed)
	if failed > 0 || tried == 0 {
		fmt.Printf("chaos: FAILED; replay the choices with -seed %d\n", seed)
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "chaos:", err)
	os.Exit(2)
}
