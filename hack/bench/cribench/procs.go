package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/magnetar-runtime/magnetar/hack/bench/internal/hostproc"
)

// descendants returns roots and every live process below them.
func descendants(ps map[int]*hostproc.Proc, roots []int) map[int]bool {
	children := map[int][]int{}
	for _, p := range ps {
		children[p.PPid] = append(children[p.PPid], p.Pid)
	}
	set := map[int]bool{}
	stack := append([]int(nil), roots...)
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if set[pid] {
			continue
		}
		if p, ok := ps[pid]; !ok || p.Zombie() {
			continue
		}
		set[pid] = true
		stack = append(stack, children[pid]...)
	}
	return set
}

// kernelGroup is the group of a gVisor pod's kernel: runsc's sandbox
// (the sentry), its gofers and systrap stubs. They are the pod's, not the
// sandboxer's: counted apart from the management processes (Total).
const kernelGroup = "kernel"

// runscRoot is the runsc --root a process names on its command line
// ("--root=DIR" as runsc's own sandbox and gofers have it, or "--root DIR"
// as the sandboxer's and the bench's runsc calls), or "".
func runscRoot(p *hostproc.Proc) string {
	for i, a := range p.Args {
		if v, ok := strings.CutPrefix(a, "--root="); ok {
			return v
		}
		if a == "--root" && i+1 < len(p.Args) {
			return p.Args[i+1]
		}
	}
	return ""
}

// kernelProcs returns the live runsc processes whose --root is root or
// below it, and everything below them (a sandbox's stubs).
func kernelProcs(ps map[int]*hostproc.Proc, root string) map[int]bool {
	var roots []int
	for _, p := range ps {
		if p.Zombie() || !strings.HasPrefix(filepath.Base(firstArg(p)), "runsc") && filepath.Base(p.Exe) != "runsc" {
			continue
		}
		if r := runscRoot(p); r == root || strings.HasPrefix(r, root+"/") {
			roots = append(roots, p.Pid)
		}
	}
	return descendants(ps, roots)
}

// mgmtSample is the management processes of one handler at one moment.
type mgmtSample struct {
	Total      hostproc.Mem            `json:"total"`
	Groups     map[string]hostproc.Mem `json:"groups"` // shim, pause / daemon, keeper, pod-init, kernel, other
	Kernel     hostproc.Mem            `json:"kernel"` // not in Total
	Containers int                     `json:"container_procs"`
	Containerd hostproc.Mem            `json:"containerd"`
	Pids       map[int]string          `json:"-"`
}

// harnessPaths names what identifies our harness instance's processes.
type harnessPaths struct {
	Work       string // WORK of the harness instance
	Socket     string // containerd's CRI socket
	Containerd string // pid file of containerd
	// ServedBy maps a handler served by another's daemon to that handler
	// (hack/lib.sh MAGNETAR_HANDLER_ALIASES: magnetar-wasm-wazero=magnetar-wasm)
	ServedBy map[string]string
}

// daemonPidFile is the pid file of the daemon that serves handler.
func (h harnessPaths) daemonPidFile(handler string) string {
	return filepath.Join(h.Work, "run", h.daemonOf(handler)+".pid")
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: no pid", path)
	}
	return pid, nil
}

// mgmtProcs finds the management processes of handler, excluding the
// containers' own processes (ctrPids and everything below them):
//
//   - runc (containerd's shim): every containerd-shim whose command line names
//     our containerd socket, and the processes below them (the pause
//     containers);
//   - a magnetar handler: the sandboxer daemon (its pid file), everything
//     below it (pod inits, a task keeper started by it, transient runc calls)
//     and any other process of the same executable whose command line names
//     our WORK (a task keeper that outlived a daemon restart); among them
//     runsc's processes naming a --root below WORK are the group "kernel"
//     (a gVisor pod's kernel, whose sandbox containerd reports as the
//     container's pid); so are a VM sandboxer's pod VMs (QEMU, virtiofsd:
//     every process naming a directory below its run_dir), detached from
//     the daemon.
//
// It also returns how many of ctrPids are live processes.
func mgmtProcs(ps map[int]*hostproc.Proc, hp harnessPaths, handler string, ctrPids []int) (map[int]string, int, error) {
	kernel := kernelProcs(ps, hp.Work)
	ctrs := descendants(ps, ctrPids)
	nctr := 0
	for _, pid := range ctrPids {
		if p, ok := ps[pid]; ok && !p.Zombie() {
			nctr++
		}
	}
	groups := map[int]string{}
	if handler == "runc" {
		var shims []int
		for _, p := range ps {
			if p.Zombie() || len(p.Args) == 0 {
				continue
			}
			if strings.Contains(filepath.Base(p.Args[0]), "containerd-shim") && strings.Contains(p.Cmdline(), hp.Socket) {
				shims = append(shims, p.Pid)
			}
		}
		for pid := range descendants(ps, shims) {
			if ctrs[pid] {
				continue
			}
			switch {
			case strings.Contains(filepath.Base(firstArg(ps[pid])), "containerd-shim"):
				groups[pid] = "shim"
			case ps[pid].Comm == "pause":
				groups[pid] = "pause"
			default:
				groups[pid] = "other"
			}
		}
		return groups, nctr, nil
	}
	dpid, err := readPidFile(hp.daemonPidFile(handler))
	if err != nil {
		return nil, 0, fmt.Errorf("sandboxer of %s: %w", handler, err)
	}
	d, ok := ps[dpid]
	if !ok || d.Zombie() {
		return nil, 0, fmt.Errorf("sandboxer of %s (pid %d) is not running", handler, dpid)
	}
	roots := []int{dpid}
	for pid := range vmProcs(ps, hp.vmRunDir(handler), map[int]bool{dpid: true}) {
		kernel[pid] = true
		roots = append(roots, pid)
	}
	for _, p := range ps {
		if p.Pid != dpid && !p.Zombie() && p.Exe != "" && p.Exe == d.Exe && strings.Contains(p.Cmdline(), hp.Work+"/") {
			roots = append(roots, p.Pid)
		}
	}
	for pid := range descendants(ps, roots) {
		if kernel[pid] { // the sandbox is also the containers' pid
			groups[pid] = kernelGroup
			continue
		}
		if ctrs[pid] {
			continue
		}
		p := ps[pid]
		switch {
		case pid == dpid:
			groups[pid] = "daemon"
		case hasArg(p, keeperArg):
			groups[pid] = "keeper"
		case hasArg(p, "__magnetar_pod_init"):
			groups[pid] = "pod-init"
		default:
			groups[pid] = "other:" + p.Comm
		}
	}
	return groups, nctr, nil
}

func firstArg(p *hostproc.Proc) string {
	if p == nil || len(p.Args) == 0 {
		return ""
	}
	return p.Args[0]
}

func hasArg(p *hostproc.Proc, a string) bool {
	for _, x := range p.Args {
		if x == a {
			return true
		}
	}
	return false
}

// measureMgmt samples the management processes of handler and containerd.
func measureMgmt(hp harnessPaths, handler string, ctrPids []int) (mgmtSample, error) {
	ps, err := hostproc.Scan()
	if err != nil {
		return mgmtSample{}, err
	}
	groups, nctr, err := mgmtProcs(ps, hp, handler, ctrPids)
	if err != nil {
		return mgmtSample{}, err
	}
	s := mgmtSample{Groups: map[string]hostproc.Mem{}, Containers: nctr, Pids: groups}
	pids := make([]int, 0, len(groups))
	for pid := range groups {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	for _, pid := range pids {
		m, err := hostproc.ReadMem(pid)
		if err != nil {
			continue // exited meanwhile (a transient runc call)
		}
		g := s.Groups[groups[pid]]
		g.Add(m)
		s.Groups[groups[pid]] = g
		if groups[pid] == kernelGroup {
			s.Kernel.Add(m)
		} else {
			s.Total.Add(m)
		}
	}
	if cpid, err := readPidFile(hp.Containerd); err == nil {
		s.Containerd, _ = hostproc.ReadMem(cpid)
	}
	return s, nil
}
