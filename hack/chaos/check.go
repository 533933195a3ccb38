package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/proc"
)

// idRe is a pod or container id as containerd's CRI makes them.
var idRe = regexp.MustCompile(`[0-9a-f]{64}`)

// traces are the places of the host where an id was seen: id -> evidence.
type traces map[string][]string

func (t traces) add(s, what string) {
	for _, id := range idRe.FindAllString(s, -1) {
		if len(t[id]) < 4 {
			t[id] = append(t[id], what)
		}
	}
}

// scan looks for ids on the host: process command lines, mounts, cgroup
// directories below the pods' parent, and file names in the sandboxer's
// directories and containerd's task state.
func (r *runner) scan() traces {
	t := traces{}
	for _, p := range proc.Find(func([]string) bool { return true }) {
		line := p.Line()
		if len(line) > 200 {
			line = line[:200] + "..."
		}
		t.add(strings.Join(p.Args, " "), fmt.Sprintf("process %d: %s", p.PID, line))
	}
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 4 {
				t.add(sc.Text(), "mount: "+fields[4])
			}
		}
		f.Close()
	}
	for _, c := range cgroupParents() {
		walk(c, 4, true, func(p string) { t.add(filepath.Base(p), "cgroup: "+p) })
	}
	for _, d := range r.stateDirs() {
		walk(d, 5, false, func(p string) { t.add(strings.TrimPrefix(p, d), "file: "+p) })
	}
	return t
}

// stateDirs are where the sandboxer and containerd keep per-pod state.
func (r *runner) stateDirs() []string {
	return []string{
		filepath.Join(r.work, "lib", r.h.daemon),
		filepath.Join(r.work, "run"),
		filepath.Join(r.work, "state", "io.containerd.runtime.v2.task"),
		filepath.Join(r.work, "state", "io.containerd.grpc.v1.cri"),
	}
}

// walk calls f with every entry below root (directories only with
// dirsOnly) down to depth levels.
func walk(root string, depth int, dirsOnly bool, f func(string)) {
	base := strings.Count(root, "/")
	_ = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == root {
			return nil
		}
		if e.IsDir() || !dirsOnly {
			f(p)
		}
		if e.IsDir() && strings.Count(p, "/")-base >= depth {
			return filepath.SkipDir
		}
		return nil
	})
}

// mountTable is /proc/self/mounts, each line split into its fields (mount
// points with spaces come octal-escaped, as the kernel writes them).
func mountTable() [][]string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	var out [][]string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			out = append(out, f)
		}
	}
	return out
}

// cgroupParents is the pods' cgroup parent in every mounted hierarchy.
func cgroupParents() []string {
	var out []string
	for _, f := range mountTable() {
		// the hierarchies under /sys/fs/cgroup only: the same ones mounted
		// again elsewhere (another mount namespace's copy) would count twice
		if len(f) > 2 && (f[2] == "cgroup" || f[2] == "cgroup2") && strings.HasPrefix(f[1], "/sys/fs/cgroup") {
			d := filepath.Join(f[1], *cgroupF)
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				out = append(out, d)
			}
		}
	}
	return out
}

// leftovers lists what is left of the given removed ids.
func (t traces) leftovers(removed map[string]string) []string {
	var out []string
	for id, what := range removed {
		for _, ev := range t[id] {
			out = append(out, fmt.Sprintf("%s %s (removed): %s", what, id, ev))
		}
	}
	sort.Strings(out)
	return out
}

// netnsFiles are the network namespaces containerd's CRI holds.
func (r *runner) netnsFiles() []string {
	m, _ := filepath.Glob(filepath.Join(r.work, "state", "io.containerd.grpc.v1.cri", "netns", "*"))
	return m
}

// podNetns are the network namespaces containerd's CRI holds but those it
// left of a RunPodSandbox its kill cut. In a round that killed containerd,
// a namespace no process is in and no sandbox record of the daemon names is
// one of those: Magnetar never makes or removes these files, containerd's
// CRI makes one before it asks the sandboxer for the pod and forgets it when
// it is killed before the pod is recorded (containerd 2.4.2). They are
// reported once, as containerd's, and not counted as leftovers.
func (r *runner) podNetns() []string {
	var out []string
	var orphans map[string]bool
	for _, n := range r.netnsFiles() {
		if r.ctrdNetns[n] {
			continue
		}
		if r.killedContainerd {
			if orphans == nil {
				orphans = r.orphanNetns()
			}
			if orphans[n] {
				r.ctrdNetns[n] = true
				r.logf("round %d: containerd left the network namespace %s of a RunPodSandbox its kill cut (containerd's leak, counted apart)", r.round, n)
				continue
			}
		}
		out = append(out, n)
	}
	return out
}

// orphanNetns are the network namespace files that no process is in and no
// sandbox record of the daemon names.
func (r *runner) orphanNetns() map[string]bool {
	inUse := map[uint64]bool{}
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, p := range procs {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil {
			inUse[st.Ino] = true
		}
	}
	named := map[string]bool{}
	recs, _ := filepath.Glob(filepath.Join(r.work, "lib", r.h.daemon, "state", "*.json"))
	for _, rec := range recs {
		var v struct {
			NetNS string `json:"netns_path"`
		}
		if data, err := os.ReadFile(rec); err == nil && json.Unmarshal(data, &v) == nil && v.NetNS != "" {
			named[v.NetNS] = true
		}
	}
	out := map[string]bool{}
	for _, n := range r.netnsFiles() {
		var st unix.Stat_t
		if named[n] || unix.Stat(n, &st) != nil || inUse[st.Ino] {
			continue
		}
		out[n] = true
	}
	return out
}

// dropContainerdBundles takes out of left the files of task bundles
// containerd left half-deleted: containerd removes a bundle
// (<state>/io.containerd.runtime.v2.task/<ns>/<id>) by renaming it to
// ".<id>" and then removing that, and a kill in between leaves the hidden
// dir, which containerd skips ever after (containerd 2.4.2,
// core/runtime/v2: atomicDelete, and the shim loader's "skip hidden
// directories"). Magnetar never makes or removes these. In a round that
// killed containerd, such files are reported once as containerd's and not
// counted; a mount or process of the id still counts.
func (r *runner) dropContainerdBundles(left []string) []string {
	root := filepath.Join(r.work, "state", "io.containerd.runtime.v2.task") + "/"
	var out []string
	for _, l := range left {
		_, path, ok := strings.Cut(l, "): file: ")
		rel, under := strings.CutPrefix(path, root)
		parts := strings.SplitN(rel, "/", 3)
		if !ok || !under || len(parts) < 2 || !strings.HasPrefix(parts[1], ".") {
			out = append(out, l)
			continue
		}
		dir := root + parts[0] + "/" + parts[1]
		switch {
		case r.ctrdBundles[dir]:
		case r.killedContainerd:
			r.ctrdBundles[dir] = true
			r.logf("round %d: containerd left the task bundle %s half-deleted (its kill cut the removal; containerd's leak, counted apart)", r.round, dir)
		default:
			out = append(out, l)
		}
	}
	return out
}

// dropContainerdNetns removes, at the end, the network namespaces
// containerd left (podNetns), so that the harness stops clean.
func (r *runner) dropContainerdNetns() {
	for n := range r.ctrdNetns {
		if err := unix.Unmount(n, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			r.logf("unmounting %s: %v", n, err)
		}
		if err := os.Remove(n); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.logf("removing %s: %v", n, err)
		}
	}
}

// mountsBelow lists the mount points below dir.
func mountsBelow(dir string) []string {
	var out []string
	for _, f := range mountTable() {
		if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			out = append(out, f[1])
		}
	}
	return out
}

// podProcess is the process of a pod that the "pod" kill aims at: runsc's
// sandbox, the VMM (the Cloud Hypervisor or StratoVirt stand-in before the
// QEMU below it; its virtiofsd with helper: a VM pod's other process, whose
// death must end the VM), the pod init, or else the first process of the
// pod's cgroup.
func podProcess(id string, helper bool) (int, string) {
	prefer := []string{"runsc-sandbox", "cloud-hypervisor", "stratovirt", "qemu-system-x86_64", "magnetar-podinit", "quark"}
	if helper {
		prefer = append([]string{"virtiofsd"}, prefer...)
	}
	var best proc.Process
	rank := len(prefer)
	// a VMM stand-in and the QEMU below it name the pod's run dir (a hash
	// of its id: shared/config.PodRunDir), not the id itself
	procs := append(proc.Find(proc.Naming(id)), proc.Find(proc.Naming(filepath.Base(config.PodRunDir("/", id))))...)
	for _, p := range procs {
		for i, n := range prefer {
			if filepath.Base(p.Args[0]) == n && i < rank {
				best, rank = p, i
			}
		}
	}
	if rank < len(prefer) {
		return best.PID, best.Line()
	}
	for _, c := range cgroupParents() {
		ents, _ := os.ReadDir(c)
		for _, e := range ents {
			if !e.IsDir() || !strings.Contains(e.Name(), id) {
				continue
			}
			b, _ := os.ReadFile(filepath.Join(c, e.Name(), "cgroup.procs"))
			for _, l := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(l); err == nil && alive(pid) {
					cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
					return pid, strings.ReplaceAll(string(cl), "\x00", " ")
				}
			}
		}
	}
	return 0, ""
}
