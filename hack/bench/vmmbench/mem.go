package main

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/magnetar-runtime/magnetar/hack/bench/internal/hostproc"
)

// scanProcs reads every live process (no zombies); those that vanish
// meanwhile are skipped.
func scanProcs() map[int]*hostproc.Proc {
	ps, _ := hostproc.Scan()
	maps.DeleteFunc(ps, func(_ int, p *hostproc.Proc) bool { return p.Zombie() })
	return ps
}

// guestRAM is the part of a process's memory in memfd mappings: a VM's
// guest RAM (memory-backend-memfd), as opposed to QEMU's own heap, TCG
// code cache and libraries.
func guestRAM(pid int) (rss, pss int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		fs := strings.Fields(l)
		if len(fs) == 0 {
			continue
		}
		if !strings.HasSuffix(fs[0], ":") { // a mapping's header: addr perms off dev inode [path]
			in = len(fs) >= 6 && strings.Contains(strings.Join(fs[5:], " "), "memfd:")
			continue
		}
		if !in || len(fs) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fs[1], 10, 64)
		switch fs[0] {
		case "Rss:":
			rss += v
		case "Pss:":
			pss += v
		}
	}
	return rss, pss, sc.Err()
}

// harnessProcs names the processes of the sandboxer under test.
type harnessProcs struct {
	work     string // the harness WORK: the daemon's and keeper's command lines name it
	pidFile  string // the daemon's pid file (hack/containerd.sh)
	vmRunDir string // the sandboxer's run_dir: each VM's directory below it
}

// keeperArg marks the task keeper (shared/daemon.KeeperArg).
const keeperArg = "__magnetar_task_keeper"

// vmProc is one VM process (QEMU or virtiofsd) of a pod VM.
type vmProc struct {
	VM   string // the VM's run directory name
	Kind string // qemu | virtiofsd | other:<comm>
	Pid  int
}

// find returns the daemon, its keeper(s), the daemon's other descendants
// that are not VM processes, and every VM process below vmRunDir.
func (h harnessProcs) find(ps map[int]*hostproc.Proc) (daemon int, keepers, others []int, vms []vmProc, err error) {
	b, err := os.ReadFile(h.pidFile)
	if err != nil {
		return 0, nil, nil, nil, fmt.Errorf("sandboxer pid file: %w", err)
	}
	daemon, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || ps[daemon] == nil {
		return 0, nil, nil, nil, fmt.Errorf("the sandboxer (pid file %s) is not running", h.pidFile)
	}
	re := regexp.MustCompile(regexp.QuoteMeta(h.vmRunDir+"/") + `([^/,\s]+)/`)
	isVM := map[int]bool{}
	for _, p := range ps {
		cl := p.Cmdline()
		if m := re.FindStringSubmatch(cl); m != nil && p.Pid != daemon {
			kind := "other:" + p.Comm
			switch {
			case strings.Contains(p.Comm, "qemu"):
				kind = "qemu"
			case strings.Contains(p.Comm, "virtiofsd"):
				kind = "virtiofsd"
			}
			vms = append(vms, vmProc{VM: m[1], Kind: kind, Pid: p.Pid})
			isVM[p.Pid] = true
			continue
		}
		if slices.Contains(p.Args, keeperArg) && strings.Contains(cl, h.work+"/") {
			keepers = append(keepers, p.Pid)
		}
	}
	// descendants of the daemon that are neither VMs nor keepers (none
	// expected: the VMs are detached)
	children := map[int][]int{}
	for _, p := range ps {
		children[p.PPid] = append(children[p.PPid], p.Pid)
	}
	stack := slices.Clone(children[daemon])
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if isVM[pid] || slices.Contains(keepers, pid) {
			continue
		}
		others = append(others, pid)
		stack = append(stack, children[pid]...)
	}
	slices.SortFunc(vms, func(a, b vmProc) int { return strings.Compare(a.VM+a.Kind, b.VM+b.Kind) })
	return daemon, keepers, others, vms, nil
}

// vmCost is one pod VM's host processes.
type vmCost struct {
	VM        string       `json:"vm"`
	QEMU      hostproc.Mem `json:"qemu"`
	Virtiofsd hostproc.Mem `json:"virtiofsd"`
	Other     hostproc.Mem `json:"other"`
	CPUPct    float64      `json:"idle_cpu_pct"` // QEMU + virtiofsd CPU over the sampling window, % of one core
	// GuestRSS and GuestPSS are the guest RAM resident on the host (QEMU's
	// and virtiofsd's memfd mappings), KiB.
	GuestRSS int64 `json:"guest_ram_rss_kib"`
	GuestPSS int64 `json:"guest_ram_pss_kib"`
}

// memSnap is one sample of the sandboxer's processes.
type memSnap struct {
	Daemon hostproc.Mem      `json:"daemon"`
	Keeper hostproc.Mem      `json:"keeper"`
	Other  hostproc.Mem      `json:"other"`
	VMs    map[string]vmCost `json:"vms"`
}

// snapshot samples the sandboxer and its VMs; with window > 0 it also
// measures the VM processes' CPU over that window.
func (h harnessProcs) snapshot(window time.Duration) (memSnap, error) {
	ps := scanProcs()
	d, keepers, others, vms, err := h.find(ps)
	if err != nil {
		return memSnap{}, err
	}
	s := memSnap{Daemon: hostproc.SumMem([]int{d}), Keeper: hostproc.SumMem(keepers), Other: hostproc.SumMem(others), VMs: map[string]vmCost{}}
	if window > 0 {
		t0 := time.Now()
		time.Sleep(window)
		el := time.Since(t0).Seconds()
		hz := 100.0 // USER_HZ on Linux
		for _, v := range vms {
			p0 := ps[v.Pid]
			p1, err := hostproc.Read(v.Pid)
			if err != nil || p0 == nil {
				continue
			}
			c := s.VMs[v.VM]
			c.VM = v.VM
			c.CPUPct += float64(p1.CPUTicks-p0.CPUTicks) / hz / el * 100
			s.VMs[v.VM] = c
		}
	}
	for _, v := range vms {
		m, err := hostproc.ReadMem(v.Pid)
		if err != nil {
			continue
		}
		c := s.VMs[v.VM]
		c.VM = v.VM
		if gr, gp, err := guestRAM(v.Pid); err == nil {
			c.GuestPSS += gp
			if v.Kind == "qemu" {
				c.GuestRSS += gr
			}
		}
		switch v.Kind {
		case "qemu":
			c.QEMU.Add(m)
		case "virtiofsd":
			c.Virtiofsd.Add(m)
		default:
			c.Other.Add(m)
		}
		s.VMs[v.VM] = c
	}
	return s, nil
}

// vmProcsLeft is the VM processes still alive below the run directory.
func (h harnessProcs) vmProcsLeft() []vmProc {
	_, _, _, vms, _ := h.find(scanProcs())
	return vms
}

// waitNoVMs waits until no VM process is left (a removed pod's QEMU and
// virtiofsd are gone), within d.
func (h harnessProcs) waitNoVMs(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		left := h.vmProcsLeft()
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var s []string
			for _, v := range left {
				s = append(s, fmt.Sprintf("%s pid %d (VM %s)", v.Kind, v.Pid, v.VM))
			}
			return fmt.Errorf("VM processes still running %s after their pods were removed: %s", d, strings.Join(s, ", "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// memAvailableMiB is /proc/meminfo's MemAvailable.
func memAvailableMiB() int {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemAvailable:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n / 1024
		}
	}
	return 0
}

// loadavg is /proc/loadavg's first three fields.
func loadavg() [3]float64 {
	var l [3]float64
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}
