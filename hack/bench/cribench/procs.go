package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// proc is one process as read from /proc.
type proc struct {
	Pid, PPid int
	State     byte
	Comm      string
	Args      []string
	Exe       string
}

// scanProcs reads every process of the host. Processes that vanish while
// being read are skipped.
func scanProcs() (map[int]*proc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	ps := map[int]*proc{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, err := readProc(pid)
		if err != nil {
			continue
		}
		ps[pid] = p
	}
	return ps, nil
}

func readProc(pid int) (*proc, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open || end+2 >= len(stat) {
		return nil, fmt.Errorf("pid %d: bad stat", pid)
	}
	f := strings.Fields(string(stat[end+2:]))
	if len(f) < 2 {
		return nil, fmt.Errorf("pid %d: bad stat", pid)
	}
	p := &proc{Pid: pid, Comm: string(stat[open+1 : end]), State: f[0][0]}
	p.PPid, _ = strconv.Atoi(f[1])
	if cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && len(cl) > 0 {
		p.Args = strings.Split(strings.TrimRight(string(cl), "\x00"), "\x00")
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		p.Exe = strings.TrimSuffix(exe, " (deleted)")
	}
	return p, nil
}

func (p *proc) zombie() bool { return p.State == 'Z' || p.State == 'X' }

func (p *proc) cmdline() string { return strings.Join(p.Args, " ") }

// descendants returns roots and every live process below them.
func descendants(ps map[int]*proc, roots []int) map[int]bool {
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
		if p, ok := ps[pid]; !ok || p.zombie() {
			continue
		}
		set[pid] = true
		stack = append(stack, children[pid]...)
	}
	return set
}

// mem is the memory of a set of processes, in KiB (from smaps_rollup).
type mem struct {
	Procs   int   `json:"procs"`
	Threads int   `json:"threads"`
	RSS     int64 `json:"rss_kib"`
	PSS     int64 `json:"pss_kib"`
	USS     int64 `json:"uss_kib"` // Private_Clean + Private_Dirty
}

func (m *mem) add(o mem) {
	m.Procs += o.Procs
	m.Threads += o.Threads
	m.RSS += o.RSS
	m.PSS += o.PSS
	m.USS += o.USS
}

// procMem reads one process's memory and thread count.
func procMem(pid int) (mem, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return mem{}, err
	}
	defer f.Close()
	m := mem{Procs: 1}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fs[1], 10, 64)
		switch fs[0] {
		case "Rss:":
			m.RSS = v
		case "Pss:":
			m.PSS = v
		case "Private_Clean:", "Private_Dirty:":
			m.USS += v
		}
	}
	if err := sc.Err(); err != nil {
		return mem{}, err
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return mem{}, err
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			m.Threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return m, nil
}

// mgmtSample is the management processes of one handler at one moment.
type mgmtSample struct {
	Total      mem            `json:"total"`
	Groups     map[string]mem `json:"groups"` // shim, pause / daemon, keeper, pod-init, other
	Containers int            `json:"container_procs"`
	Containerd mem            `json:"containerd"`
	Pids       map[int]string `json:"-"`
}

// harnessPaths names what identifies our harness instance's processes.
type harnessPaths struct {
	Work       string // WORK of the harness instance
	Socket     string // containerd's CRI socket
	Containerd string // pid file of containerd
}

func (h harnessPaths) daemonPidFile(handler string) string {
	return filepath.Join(h.Work, "run", handler+".pid")
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
//     our WORK (a task keeper that outlived a daemon restart).
func mgmtProcs(ps map[int]*proc, hp harnessPaths, handler string, ctrPids []int) (map[int]string, int, error) {
	ctrs := descendants(ps, ctrPids)
	groups := map[int]string{}
	if handler == "runc" {
		var shims []int
		for _, p := range ps {
			if p.zombie() || len(p.Args) == 0 {
				continue
			}
			if strings.Contains(filepath.Base(p.Args[0]), "containerd-shim") && strings.Contains(p.cmdline(), hp.Socket) {
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
		return groups, len(ctrs), nil
	}
	dpid, err := readPidFile(hp.daemonPidFile(handler))
	if err != nil {
		return nil, 0, fmt.Errorf("sandboxer of %s: %w", handler, err)
	}
	d, ok := ps[dpid]
	if !ok || d.zombie() {
		return nil, 0, fmt.Errorf("sandboxer of %s (pid %d) is not running", handler, dpid)
	}
	roots := []int{dpid}
	for _, p := range ps {
		if p.Pid != dpid && !p.zombie() && p.Exe != "" && p.Exe == d.Exe && strings.Contains(p.cmdline(), hp.Work+"/") {
			roots = append(roots, p.Pid)
		}
	}
	for pid := range descendants(ps, roots) {
		if ctrs[pid] {
			continue
		}
		p := ps[pid]
		switch {
		case pid == dpid:
			groups[pid] = "daemon"
		case hasArg(p, "__magnetar_task_keeper"):
			groups[pid] = "keeper"
		case hasArg(p, "__magnetar_pod_init"):
			groups[pid] = "pod-init"
		default:
			groups[pid] = "other:" + p.Comm
		}
	}
	return groups, len(ctrs), nil
}

func firstArg(p *proc) string {
	if p == nil || len(p.Args) == 0 {
		return ""
	}
	return p.Args[0]
}

func hasArg(p *proc, a string) bool {
	for _, x := range p.Args {
		if x == a {
			return true
		}
	}
	return false
}

// measureMgmt samples the management processes of handler and containerd.
func measureMgmt(hp harnessPaths, handler string, ctrPids []int) (mgmtSample, error) {
	ps, err := scanProcs()
	if err != nil {
		return mgmtSample{}, err
	}
	groups, nctr, err := mgmtProcs(ps, hp, handler, ctrPids)
	if err != nil {
		return mgmtSample{}, err
	}
	s := mgmtSample{Groups: map[string]mem{}, Containers: nctr, Pids: groups}
	pids := make([]int, 0, len(groups))
	for pid := range groups {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	for _, pid := range pids {
		m, err := procMem(pid)
		if err != nil {
			continue // exited meanwhile (a transient runc call)
		}
		g := s.Groups[groups[pid]]
		g.add(m)
		s.Groups[groups[pid]] = g
		s.Total.add(m)
	}
	if cpid, err := readPidFile(hp.Containerd); err == nil {
		s.Containerd, _ = procMem(cpid)
	}
	return s, nil
}
