package main

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/shared/killpoint"
)

// converge is how long CRI's states may take to settle after a restart.
const converge = 30 * time.Second

// unstartedGrace is the daemons' unstarted_grace here: the sandboxes a
// restart inside a RunPodSandbox left are shut down well within converge.
const unstartedGrace = 5 * time.Second

// forgottenCheck is the daemons' forgotten_check here: a sandbox containerd
// forgot goes within three checks (two misses after it is a check old).
const forgottenCheck = 5 * time.Second

// runner runs the rounds of one handler.
type runner struct {
	name                  string
	seed                  uint64
	root, work            string
	sigs                  chan os.Signal
	h                     *harness
	c                     *cri
	rng                   *rand.Rand
	tried, survived, lost int
	leftovers             int
	failures              []string
	took                  time.Duration
	skipped               string
	interrupted           bool
	witnesses             []*pod
	mu                    sync.Mutex
	removed               map[string]string // id -> "pod NAME" / "container of NAME"
	seen                  map[string]string // every id made
	round                 int
	roundMark             logMark
	// killedContainerd: this round killed containerd
	killedContainerd bool
	// ctrdNetns are the network namespaces containerd left of a
	// RunPodSandbox its kill cut (containerd's leak: orphanNetns)
	ctrdNetns map[string]bool
	// ctrdBundles are the task bundles containerd left half-deleted
	// (containerd's leak: dropContainerdBundles)
	ctrdBundles map[string]bool
}

func newRunner(name string, seed uint64, root, work string, sigs chan os.Signal) *runner {
	f := fnv.New64a()
	f.Write([]byte(name))
	return &runner{name: name, seed: seed, root: root, work: work, sigs: sigs,
		rng: rand.New(rand.NewPCG(seed, f.Sum64())), removed: map[string]string{}, seen: map[string]string{},
		ctrdNetns: map[string]bool{}, ctrdBundles: map[string]bool{}}
}

func (r *runner) fail(what string, evidence ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	line := fmt.Sprintf("FAIL chaos %s round %d: %s", r.name, r.round, what)
	r.failures = append(r.failures, line)
	fmt.Fprintln(os.Stderr, line)
	for _, e := range evidence {
		fmt.Fprintln(os.Stderr, "    | "+e)
	}
}

func (r *runner) logf(format string, args ...any) {
	fmt.Printf("[%s] chaos %s: %s\n", time.Now().Format("15:04:05"), r.name, fmt.Sprintf(format, args...))
}

func (r *runner) made(p *pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.id != "" {
		r.seen[p.id] = "pod " + p.name
	}
	if p.ctr != "" {
		r.seen[p.ctr] = "container of " + p.name
	}
}

func (r *runner) gone(podID string, ctrs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed[podID] = r.seen[podID]
	if r.removed[podID] == "" {
		r.removed[podID] = "pod"
	}
	for _, c := range ctrs {
		r.removed[c] = "container"
	}
}

// evidence is the new error lines of the logs since the round began.
func (r *runner) evidence() []string {
	return append(r.roundMark.grep(8, "level=error", "level=fatal"), r.roundMark.grepFunc(8, panicked)...)
}

func (r *runner) run() {
	start := time.Now()
	defer func() { r.took = time.Since(start) }()
	var err error
	if r.h, err = newHarness(r.root, r.work, r.name); err != nil {
		r.fail("harness", err.Error())
		return
	}
	all := marks(r.h.daemonLog(), r.h.containerdLog())
	r.logf("starting the harness (WORK=%s, bridge %s)", r.work, *bridgeF)
	if err := r.h.start(); err != nil {
		r.fail("harness start", err.Error())
		_ = r.h.stop()
		return
	}
	if r.c, err = dialCRI(r.work, r.name); err != nil {
		r.fail("CRI", err.Error())
		_ = r.h.stop()
		return
	}
	defer r.c.conn.Close()
	r.roundMark = marks(r.h.daemonLog(), r.h.containerdLog())
	for range *witnessF {
		if err := r.addWitness(); err != nil {
			r.fail("witness pod", append([]string{err.Error()}, r.evidence()...)...)
		}
	}
	for i := 1; i <= *killsF; i++ {
		select {
		case <-r.sigs:
			r.interrupted = true
			r.fail("interrupted")
		default:
		}
		if r.interrupted {
			break
		}
		r.round = i
		n := len(r.failures)
		r.roundOnce()
		r.tried++
		if len(r.failures) == n {
			r.survived++
		}
	}
	r.round = 0
	r.final()
	for _, l := range all.grepFunc(5, panicked) {
		r.fail("a daemon panicked", l)
	}
	if *keepF {
		r.logf("kept the harness running (-keep): WORK=%s hack/containerd.sh stop", r.work)
		return
	}
	if err := r.h.stop(); err != nil {
		r.fail("harness stop", err.Error())
	}
	if m := mountsBelow(r.work); len(m) > 0 {
		r.fail("mounts left below WORK after the harness stopped", m...)
	}
}

func (r *runner) addWitness() error {
	var last error
	for range 3 {
		p, err := r.c.runPod("witness")
		r.made(p)
		if err == nil {
			r.witnesses = append(r.witnesses, p)
			return nil
		}
		last = err
		if p.id != "" {
			if ctrs, rerr := r.c.removePod(p.id); rerr == nil {
				r.gone(p.id, ctrs)
			}
		}
		time.Sleep(time.Second)
	}
	return last
}

// targets of the kills, with their weights.
var targets = []struct {
	name   string
	weight int
}{{"daemon", 5}, {"keeper", 3}, {"containerd", 4}, {"pod", 3}, {"killpoint", 5}}

// pick draws a target the handler has: a wasm pod has no process of its
// own (its modules run in the daemon).
func (r *runner) pick() string {
	has := func(name string) bool { return name != "pod" || !wasmHandler(r.name) }
	total := 0
	for _, t := range targets {
		if has(t.name) {
			total += t.weight
		}
	}
	n := r.rng.IntN(total)
	for _, t := range targets {
		if !has(t.name) {
			continue
		}
		if n < t.weight {
			return t.name
		}
		n -= t.weight
	}
	return targets[0].name
}

// daemonDied: the daemon's death ends the containers of a wasm handler's
// pods (README, magnetar-wasm "Restart"): each witness loses its container.
func (r *runner) daemonDied(victims map[*pod]string) {
	if !wasmHandler(r.name) {
		return
	}
	for _, w := range r.witnesses {
		victims[w] = "containers"
	}
}

// roundOnce runs the workload, kills one thing, restarts it and checks.
func (r *runner) roundOnce() {
	target := r.pick()
	r.killedContainerd = target == "containerd"
	delay := time.Duration(300+r.rng.IntN(3000)) * time.Millisecond
	kp := fmt.Sprintf("%s:%d", killpoint.Common[r.rng.IntN(len(killpoint.Common))], 1+r.rng.IntN(2))
	aimed := r.rng.IntN(max(len(r.witnesses), 1))
	// a VM pod's kill hits QEMU or its virtiofsd (drawn for VM handlers
	// only: the other handlers' seeds replay as before)
	helper := r.h.vm() && r.rng.IntN(2) == 1
	r.roundMark = marks(r.h.daemonLog(), r.h.containerdLog())
	if !r.daemonsAlive("before the kill") {
		return
	}
	what := target
	if target == "killpoint" {
		what = "daemon at " + kp
		if err := r.restartWith(kp); err != nil {
			r.fail("arming "+kp, err.Error())
			return
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range *workersF {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(w, stop)
		}()
	}
	// victims are the witnesses the kill hits: a pod whose process is
	// killed turns NOTREADY; the containers of every pod turn EXITED when
	// the keeper dies (containerd sees its task connection close, as for a
	// dead shim: README, "task keeper")
	victims := map[*pod]string{}
	err := func() error {
		switch target {
		case "killpoint":
			r.daemonDied(victims)
			pid := r.h.daemonPid()
			if err := waitGone(pid, 60*time.Second); err != nil {
				r.logf("round %d: %s not reached in 60 s: a plain kill", r.round, kp)
				what = "daemon (" + kp + " not reached)"
				if err := kill(pid); err != nil {
					return err
				}
			}
			return r.h.restartDaemon("")
		}
		time.Sleep(delay)
		switch target {
		case "daemon":
			r.daemonDied(victims)
			if err := kill(r.h.daemonPid()); err != nil {
				return err
			}
			return r.h.restartDaemon("")
		case "keeper":
			old := r.h.keeperPid()
			if err := kill(old); err != nil {
				return err
			}
			for _, w := range r.witnesses {
				victims[w] = "containers"
			}
			_, err := r.h.waitKeeper(old, 20*time.Second)
			return err
		case "containerd":
			if err := kill(r.h.containerdPid()); err != nil {
				return err
			}
			return r.h.restartContainerd()
		case "pod":
			if len(r.witnesses) == 0 {
				return errors.New("no witness pod to aim at")
			}
			victim := r.witnesses[aimed]
			victims[victim] = "pod"
			pid, line := podProcess(victim.id, helper)
			if pid == 0 {
				return fmt.Errorf("no process of pod %s (%s) found", victim.name, short(victim.id))
			}
			what = fmt.Sprintf("pod %s process %d (%s)", victim.name, pid, cut(line, 60))
			return kill(pid)
		}
		return nil
	}()
	r.logf("round %d: killed %s", r.round, what)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	if err != nil {
		r.fail("kill "+what, append([]string{err.Error()}, r.evidence()...)...)
		// what systemd would do: start what is down
		_ = r.h.restartContainerd()
		_ = r.h.restartDaemon("")
	}
	r.daemonsAlive("after the restart")
	r.check(victims)
	r.reconcile(victims, true)
	r.checkLeftovers()
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// restartWith restarts the daemon (SIGKILL, then the same command line)
// with the kill point kp armed.
func (r *runner) restartWith(kp string) error {
	if err := kill(r.h.daemonPid()); err != nil {
		return err
	}
	return r.h.restartDaemon(kp)
}

// daemonsAlive checks that containerd, the daemon and its keeper run.
func (r *runner) daemonsAlive(when string) bool {
	ok := true
	deadline := time.Now().Add(15 * time.Second)
	for {
		var dead []string
		if r.h.containerdPid() == 0 {
			dead = append(dead, "containerd")
		}
		if r.h.daemonPid() == 0 {
			dead = append(dead, r.name)
		}
		if r.h.keeperPid() == 0 {
			dead = append(dead, r.name+"'s keeper")
		}
		if len(dead) == 0 {
			return ok
		}
		if time.Now().After(deadline) {
			r.fail(strings.Join(dead, ", ")+" not running "+when, r.evidence()...)
			_ = r.h.restartContainerd()
			_ = r.h.restartDaemon("")
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// worker creates, execs into, stops and removes pods until stop closes.
func (r *runner) worker(w int, stop chan struct{}) {
	rng := rand.New(rand.NewPCG(r.seed+uint64(r.round), uint64(w)))
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	for !stopped() {
		p, err := r.c.runPod("churn")
		r.made(p)
		if err != nil {
			r.vlogf("worker %d: %v", w, err)
			if p.id != "" && !stopped() {
				if ctrs, err := r.c.removePod(p.id); err == nil {
					r.gone(p.id, ctrs)
				}
			}
			continue
		}
		if err := r.c.exec(p.ctr); err != nil {
			r.vlogf("worker %d: %v", w, err)
		}
		if stopped() {
			return // the pod stays: reconcile removes it
		}
		if rng.IntN(2) == 0 {
			if err := r.c.removeContainer(p.ctr); err != nil {
				r.vlogf("worker %d: %v", w, err)
				continue
			}
			r.gone(p.ctr, nil)
		}
		ctrs, err := r.c.removePod(p.id)
		if err != nil {
			r.vlogf("worker %d: %v", w, err)
			continue
		}
		r.gone(p.id, ctrs)
	}
}

func (r *runner) vlogf(format string, args ...any) {
	if *verbose {
		r.logf(format, args...)
	}
}

// check: every READY pod answers, every RUNNING container execs, every
// witness but the victim is READY with its container RUNNING, the victim
// is NOTREADY.
func (r *runner) check(victims map[*pod]string) {
	var problems []string
	deadline := time.Now().Add(converge)
	for {
		problems = r.criProblems(victims)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if len(problems) > 0 {
		r.fail("CRI state", append(problems, r.evidence()...)...)
	}
}

func (r *runner) criProblems(victims map[*pod]string) []string {
	var out []string
	pods, err := r.c.pods()
	if err != nil {
		return []string{err.Error()}
	}
	state := map[string]runtimeapi.PodSandboxState{}
	for _, p := range pods {
		state[p.Id] = p.State
		if p.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			if _, err := r.c.podStatus(p.Id); err != nil {
				out = append(out, fmt.Sprintf("READY pod %s: %v", p.Metadata.GetName(), err))
			}
		}
	}
	ctrs, err := r.c.containers("")
	if err != nil {
		return append(out, err.Error())
	}
	running := map[string]bool{}
	for _, c := range ctrs {
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			running[c.Id] = true
			if err := r.c.exec(c.Id); err != nil {
				out = append(out, fmt.Sprintf("RUNNING container %s of pod %s: %v", short(c.Id), short(c.PodSandboxId), err))
			}
		}
	}
	for _, w := range r.witnesses {
		switch victims[w] {
		case "pod":
			if state[w.id] == runtimeapi.PodSandboxState_SANDBOX_READY {
				out = append(out, fmt.Sprintf("pod %s whose process was killed is still READY", w.name))
			}
			continue
		case "containers":
			continue
		}
		if state[w.id] != runtimeapi.PodSandboxState_SANDBOX_READY || !running[w.ctr] {
			out = append(out, fmt.Sprintf("witness pod %s (%s) lost: pod %s, container running %v", w.name, short(w.id), state[w.id], running[w.ctr]))
		}
	}
	return out
}

// reconcile removes what the round left: every pod but the live
// witnesses (a victim's and lost witnesses are replaced).
func (r *runner) reconcile(victims map[*pod]string, replace bool) {
	pods, err := r.c.pods()
	if err != nil {
		r.fail("reconcile", err.Error())
		return
	}
	ready := map[string]bool{}
	for _, p := range pods {
		ready[p.Id] = p.State == runtimeapi.PodSandboxState_SANDBOX_READY
	}
	running := map[string]bool{}
	if ctrs, err := r.c.containers(""); err == nil {
		for _, c := range ctrs {
			running[c.Id] = c.State == runtimeapi.ContainerState_CONTAINER_RUNNING
		}
	}
	var keep []*pod
	for _, w := range r.witnesses {
		switch {
		case victims[w] != "":
		case ready[w.id] && running[w.ctr]:
			keep = append(keep, w)
		default:
			r.lost++
		}
	}
	for _, p := range pods {
		if slices.ContainsFunc(keep, func(w *pod) bool { return w.id == p.Id }) {
			continue
		}
		var err error
		for range 3 {
			var ctrs []string
			if ctrs, err = r.c.removePod(p.Id); err == nil {
				r.gone(p.Id, ctrs)
				break
			}
			time.Sleep(2 * time.Second)
		}
		if err != nil {
			r.fail("removing pod "+p.Metadata.GetName(), append([]string{err.Error()}, r.evidence()...)...)
		}
	}
	r.witnesses = keep
	for replace && len(r.witnesses) < *witnessF {
		if err := r.addWitness(); err != nil {
			r.fail("witness pod", append([]string{err.Error()}, r.evidence()...)...)
			break
		}
	}
}

// checkLeftovers: nothing of a removed pod or container is on the host,
// and no netns more than the pods.
func (r *runner) checkLeftovers() {
	var left []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		removed := maps(r.removed)
		r.mu.Unlock()
		left = r.dropContainerdBundles(r.scan().leftovers(removed))
		pods, err := r.c.pods()
		if ns := r.podNetns(); err == nil && len(ns) > len(pods) {
			left = append(left, fmt.Sprintf("%d network namespaces for %d pods: %s", len(ns), len(pods), strings.Join(ns, " ")))
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if len(left) > 0 {
		r.leftovers += len(left)
		r.fail("leftovers", left...)
		// count each once: they are reported
		r.mu.Lock()
		for _, l := range left {
			if id := idRe.FindString(l); id != "" {
				delete(r.removed, id)
			}
		}
		r.mu.Unlock()
	}
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// final removes every pod; then nothing of the run may be left.
func (r *runner) final() {
	r.roundMark = marks(r.h.daemonLog(), r.h.containerdLog())
	r.witnesses = nil
	r.reconcile(nil, false)
	pods, err := r.c.pods()
	if err != nil || len(pods) > 0 {
		r.fail("pods left after removing all", fmt.Sprintf("%d pods, %v", len(pods), err))
	}
	r.mu.Lock()
	for id, what := range r.seen {
		r.removed[id] = what
	}
	r.mu.Unlock()
	r.checkLeftovers()
	// what a restart left unstarted goes unstarted_grace after it
	var left []string
	for deadline := time.Now().Add(converge); ; time.Sleep(time.Second) {
		left = left[:0]
		for _, m := range mountsBelow(r.work) {
			if !r.ctrdNetns[m] {
				left = append(left, "mount: "+m)
			}
		}
		for _, c := range cgroupParents() {
			walk(c, 4, true, func(p string) { left = append(left, "cgroup: "+p) })
		}
		for _, n := range r.podNetns() {
			left = append(left, "netns: "+n)
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	r.dropContainerdNetns()
	if len(left) > 0 {
		r.leftovers += len(left)
		r.fail("left after the final cleanup", left...)
	}
}
