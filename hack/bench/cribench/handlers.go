package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/magnetar-runtime/magnetar/hack/bench/internal/hostproc"
	"github.com/magnetar-runtime/magnetar/shared/config"
)

// What differs between the handlers of one run: the workload a technology
// can run (a Linux handler runs busybox sleep, a wasm handler the wasm test
// module), the daemon that serves a handler (the wasm daemon serves one
// handler per engine), and how far the parallel and memory phases go for a
// handler whose pods do not fit the machine (VM pods under TCG).

// workload is the container a handler's pods run.
type workload struct {
	Image   string   `json:"image"`
	Command []string `json:"command"`
}

func (w workload) String() string {
	return fmt.Sprintf("%s `%s`", w.Image, strings.Join(w.Command, " "))
}

// wasmHandler reports whether h runs WebAssembly modules rather than Linux
// containers: the wasm sandboxer's handler and its per-engine aliases.
func wasmHandler(h string) bool { return strings.HasPrefix(h, "magnetar-wasm") }

// workloadOf is the container h's pods run: the wasm test module for a wasm
// handler, busybox sleep for every other.
func (o options) workloadOf(h string) workload {
	if wasmHandler(h) {
		return workload{Image: o.wasmImage, Command: o.wasmCommand}
	}
	return workload{Image: o.image, Command: []string{"sleep", "3600"}}
}

// hostContainers reports whether h's containers are host processes whose
// pids containerd reports (to be told apart from the management processes):
// not a wasm handler's (modules run inside the daemon, pid 0), not a VM
// handler's (the pid is the guest's).
func (b *bench) hostContainers(h string) bool {
	return !wasmHandler(h) && b.hp.vmRunDir(h) == ""
}

// parsePairs parses "KEY=VALUE ..." (blank or comma separated).
func parsePairs(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%q: want KEY=VALUE", f)
		}
		m[k] = v
	}
	return m, nil
}

// phaseCap is how far the parallel and memory phases go for one handler.
type phaseCap struct {
	Pods   int `json:"pods"`             // the most pods started at once
	Rounds int `json:"rounds,omitempty"` // the most rounds of each parallel count (0: -par-reps)
}

// UnmarshalJSON also reads a bare pod count (results.json of a run whose
// caps had no rounds).
func (c *phaseCap) UnmarshalJSON(b []byte) error {
	if n, err := strconv.Atoi(string(b)); err == nil {
		*c = phaseCap{Pods: n}
		return nil
	}
	type plain phaseCap
	return json.Unmarshal(b, (*plain)(c))
}

// parseCaps parses "HANDLER=PODS[xROUNDS] ...".
func parseCaps(s string) (map[string]phaseCap, error) {
	pairs, err := parsePairs(s)
	if err != nil {
		return nil, err
	}
	caps := map[string]phaseCap{}
	for h, v := range pairs {
		pods, rounds, hasRounds := strings.Cut(v, "x")
		var c phaseCap
		c.Pods, err = strconv.Atoi(pods)
		if err == nil && hasRounds {
			c.Rounds, err = strconv.Atoi(rounds)
			if err == nil && c.Rounds <= 0 {
				err = fmt.Errorf("no round")
			}
		}
		if err != nil || c.Pods <= 0 {
			return nil, fmt.Errorf("%s=%s: want PODS or PODSxROUNDS, positive", h, v)
		}
		caps[h] = c
	}
	return caps, nil
}

// capped reports whether h leaves out a phase step of pods pods.
func (o options) capped(h string, pods int) bool {
	c, ok := o.caps[h]
	return ok && pods > c.Pods
}

// parRounds is how many rounds of each parallel count h runs.
func (o options) parRounds(h string) int {
	if c, ok := o.caps[h]; ok && c.Rounds > 0 {
		return min(c.Rounds, o.parReps)
	}
	return o.parReps
}

// daemonOf is the handler whose sandboxer daemon serves h (its pid file
// and configuration are named after it): h itself, or what an alias is
// served by (hack/lib.sh MAGNETAR_HANDLER_ALIASES).
func (h harnessPaths) daemonOf(handler string) string {
	if d, ok := h.ServedBy[handler]; ok {
		return d
	}
	return handler
}

// vmRunDir is the run_dir of handler's sandboxer configuration
// (WORK/etc/<daemon>.toml, written by hack/containerd.sh): the directory
// below which a VM sandboxer keeps one directory per pod VM, named on the
// VM processes' command lines; "" for a sandboxer without one.
func (h harnessPaths) vmRunDir(handler string) string {
	b, err := os.ReadFile(filepath.Join(h.Work, "etc", h.daemonOf(handler)+".toml"))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if ok && strings.TrimSpace(k) == "run_dir" {
			return strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	return ""
}

// vmProcs returns the live processes whose command line names a directory
// below runDir (a pod VM's QEMU and virtiofsd: detached from the daemon,
// the pod's kernel like a gVisor pod's runsc sandbox), and everything below
// them; skip are processes never counted (the daemon).
func vmProcs(ps map[int]*hostproc.Proc, runDir string, skip map[int]bool) map[int]bool {
	if runDir == "" {
		return nil
	}
	var roots []int
	for _, p := range ps {
		if !p.Zombie() && !skip[p.Pid] && !hasArg(p, keeperArg) && strings.Contains(p.Cmdline(), runDir+"/") {
			roots = append(roots, p.Pid)
		}
	}
	return descendants(ps, roots)
}

// keeperArg marks a sandboxer's task keeper (shared/daemon.KeeperArg).
const keeperArg = "__magnetar_task_keeper"

// podKernelMem is the pod kernel of one pod of h right after its start: a
// gVisor pod's runsc processes, or a VM pod's QEMU and virtiofsd; ok is
// false for a handler whose pods have none.
func (b *bench) podKernelMem(h string, ref podRef) (m hostproc.Mem, ok bool, err error) {
	switch {
	case h == bareHandler:
		m, err = kernelMem(bareRef{dir: ref.Name}.root())
	case h == b.o.bareFrom:
		m, err = kernelMem(filepath.Join(b.o.gvisorDir, "sandboxes", ref.ID, "runsc"))
	case b.hp.vmRunDir(h) != "":
		var ps map[int]*hostproc.Proc
		if ps, err = hostproc.Scan(); err != nil {
			return m, false, err
		}
		dir := config.PodRunDir(b.hp.vmRunDir(h), ref.ID)
		for pid := range vmProcs(ps, dir, nil) {
			if x, err := hostproc.ReadMem(pid); err == nil {
				m.Add(x)
			}
		}
	default:
		return m, false, nil
	}
	return m, err == nil && m.Procs > 0, err
}
