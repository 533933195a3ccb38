package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/proc"
)

// snapshot is what a group of cases must leave as it found it.
type snapshot struct {
	mounts  map[string]int  // watched mount points (watched), how many mounts each
	procs   map[int]string  // the daemon's descendants: pid -> command line
	files   map[string]bool // below ROOT/outside and ROOT/fuzz, and the host's netns dirs
	state   map[string]bool // below the sandboxes' and containers' state
	cgroups map[string]bool // cgroups of the run's parent
}

// hostDirs are host directories a daemon might wrongly create entries in.
var hostDirs = []string{"/run/netns", "/var/run/netns", "/run/magnetar", "/var/lib/magnetar"}

func (d *daemon) snapshot() *snapshot {
	s := &snapshot{mounts: map[string]int{}, procs: map[int]string{}, files: map[string]bool{}, state: map[string]bool{}, cgroups: map[string]bool{}}
	if infos, err := mount.Self(); err == nil {
		for _, i := range infos {
			if d.watched(i.Mountpoint) {
				s.mounts[i.Mountpoint]++
			}
		}
	}
	for pid, line := range descendants(d.pid()) {
		if pid != d.keeperPid {
			s.procs[pid] = line
		}
	}
	walkDirs := func(root string, depth int, into map[string]bool, dirsOnly bool) {
		base := strings.Count(root, "/")
		_ = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil || p == root {
				return nil
			}
			if e.IsDir() || !dirsOnly {
				into[p] = true
			}
			if e.IsDir() && strings.Count(p, "/")-base >= depth {
				return filepath.SkipDir
			}
			return nil
		})
	}
	walk := func(root string, depth int, into map[string]bool) { walkDirs(root, depth, into, false) }
	walk(d.outside, 64, s.files)
	for _, h := range hostDirs {
		walk(h, 1, s.files)
	}
	for _, p := range escapes(d) {
		if _, err := os.Lstat(p); err == nil {
			s.files[p] = true
		}
	}
	// a sandbox's or container's state is gone once it is removed; what
	// the daemon keeps for itself (module caches, the store's directory)
	// stays
	walk(filepath.Join(d.state, "sandboxes"), 1, s.state)
	walk(filepath.Join(d.state, "state"), 1, s.state)
	walk(filepath.Join(d.state, "containers"), 1, s.state)
	walk(filepath.Join(d.state, "tasks"), 1, s.state)
	walk(filepath.Join(d.state, "bundles"), 1, s.state)
	// the cgroups below the run's parent (the parent itself is shared by
	// the pods, as kubepods is, and stays)
	for _, c := range d.cgroupParents() {
		walkDirs(c, 4, s.cgroups, true)
	}
	// and any new top-level cgroup that holds a process (a hostile
	// cgroup_parent followed up; the empty parents a pod's cgroup was
	// made in stay, as kubepods does)
	hier, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range append(hier, "/sys/fs/cgroup") {
		top := map[string]bool{}
		walkDirs(h, 1, top, true)
		for c := range top {
			if hasProcs(c) && !slices.Contains(d.cgroupParents(), c) {
				s.cgroups[c] = true
			}
		}
	}
	return s
}

// hostMountpoints are the host's places a hostile request names as a
// mount source or target (or would reach by a path followed out).
var hostMountpoints = []string{"/", "/etc", "/tmp", "/proc", "/sys", "/sys/fs/cgroup", "/dev", "/run", "/var/lib", "/usr", "/bin", "/root"}

// watched tells whether a mount at p is the run's business: below its
// root, on the host dirs a daemon uses, or on a host place the requests
// name. Other mounts on the machine (other tests running) are not.
func (d *daemon) watched(p string) bool {
	if slices.Contains(hostMountpoints, p) || p == d.root || strings.HasPrefix(p, d.root+"/") || strings.HasPrefix(p, "/tmp/"+d.tag) {
		return true
	}
	for _, h := range hostDirs {
		if p == h || strings.HasPrefix(p, h+"/") {
			return true
		}
	}
	return false
}

// hasProcs tells whether a process is in cgroup dir or below it.
func hasProcs(dir string) bool {
	found := false
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || found {
			return filepath.SkipAll
		}
		if !e.IsDir() && e.Name() == "cgroup.procs" {
			if b, _ := os.ReadFile(p); len(strings.TrimSpace(string(b))) > 0 {
				found = true
			}
		}
		return nil
	})
	return found
}

// cgroupParents are the run's cgroup parent in every hierarchy.
func (d *daemon) cgroupParents() []string {
	v1, _ := filepath.Glob("/sys/fs/cgroup/*" + d.cgroupParent)
	v2, _ := filepath.Glob("/sys/fs/cgroup" + d.cgroupParent)
	return append(v1, v2...)
}

// diff lists what after has that s has not (leaks).
func (s *snapshot) diff(after *snapshot, d *daemon) []string {
	var out []string
	for m, n := range after.mounts {
		if n > s.mounts[m] {
			where := "outside the state dir"
			if strings.HasPrefix(m, d.state+"/") {
				where = "below the state dir, after its sandbox was removed"
			}
			out = append(out, fmt.Sprintf("mount left %s: %s", where, m))
		}
	}
	for pid, line := range after.procs {
		if _, ok := s.procs[pid]; !ok {
			out = append(out, fmt.Sprintf("process left: %d %s", pid, line))
		}
	}
	if b, err := os.ReadFile(filepath.Join(d.outside, "victim")); err != nil || string(b) != victimContent {
		out = append(out, fmt.Sprintf("file outside written through a symlink: %s (%q, %v)", filepath.Join(d.outside, "victim"), b, err))
	}
	for f := range after.files {
		if !s.files[f] {
			out = append(out, "file created outside the state dir: "+f)
		}
	}
	for f := range after.state {
		if !s.state[f] {
			out = append(out, "state left after removal: "+f)
		}
	}
	for c := range after.cgroups {
		if !s.cgroups[c] {
			out = append(out, "cgroup left: "+c)
		}
	}
	sort.Strings(out)
	return out
}

// descendants lists the processes below pid (not zombies).
func descendants(pid int) map[int]string {
	ents, _ := os.ReadDir("/proc")
	kids := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := proc.ReadStat(p)
		if err != nil || st.State == "Z" || st.State == "X" {
			continue
		}
		kids[st.PPid] = append(kids[st.PPid], p)
	}
	out := map[int]string{}
	todo := []int{pid}
	for len(todo) > 0 {
		p := todo[0]
		todo = todo[1:]
		for _, k := range kids[p] {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k))
			out[k] = strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
			todo = append(todo, k)
		}
	}
	return out
}

// security checks what the daemon made (issue 16, item 4): every unix
// socket the daemon and its keeper listen on is 0600 and root's, the
// state dir 0700 and root's, the records 0600, nothing below the state dir
// group- or world-writable, and no state dir of a sandbox open to others.
func (d *daemon) security() []string {
	var out []string
	for _, sock := range listeningSockets(d.pid(), d.keeperPid) {
		st, err := os.Stat(sock)
		if err != nil {
			continue // unlinked: nobody can dial it by path
		}
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode().Perm() != 0o600 || sys.Uid != 0 || sys.Gid != 0 {
			out = append(out, fmt.Sprintf("socket %s is %04o %d:%d, want 0600 root:root", sock, st.Mode().Perm(), sys.Uid, sys.Gid))
		}
	}
	if st, err := os.Stat(d.state); err != nil || st.Mode().Perm() != 0o700 {
		out = append(out, fmt.Sprintf("state dir %s: %v, want 0700", d.state, modeOf(st, err)))
	}
	for _, dir := range []string{"state", "tasks"} {
		_ = filepath.WalkDir(filepath.Join(d.state, dir), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			st, err := e.Info()
			if err != nil {
				return nil
			}
			want := fs.FileMode(0o600)
			if e.IsDir() {
				want = 0o700
			}
			if st.Mode().Perm() != want && st.Mode().Type()&fs.ModeSymlink == 0 {
				out = append(out, fmt.Sprintf("record %s is %04o, want %04o", p, st.Mode().Perm(), want))
			}
			return nil
		})
	}
	_ = filepath.WalkDir(d.state, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		st, err := e.Info()
		if err != nil || st.Mode().Type()&(fs.ModeSymlink|fs.ModeSocket|fs.ModeNamedPipe|fs.ModeDevice) != 0 {
			return nil
		}
		// a tmpfs root such as a pod's /dev/shm is 1777 by design
		if st.Mode().Perm()&0o022 != 0 && st.Mode()&fs.ModeSticky == 0 {
			out = append(out, fmt.Sprintf("%s is %04o: group- or world-writable below the state dir", p, st.Mode().Perm()))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func modeOf(st fs.FileInfo, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%04o", st.Mode().Perm())
}

// listeningSockets returns the paths of the unix sockets the processes
// hold open that are bound to a path (/proc/net/unix names them by inode).
func listeningSockets(pids ...int) []string {
	inodes := map[string]bool{}
	for _, pid := range pids {
		if pid <= 0 {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, f := range fds {
			l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, f.Name()))
			if err == nil && strings.HasPrefix(l, "socket:[") {
				inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
			}
		}
	}
	b, _ := os.ReadFile("/proc/net/unix")
	var out []string
	seen := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		// Num RefCount Protocol Flags Type St Inode Path; flags 00010000 is __SO_ACCEPTCON (listening)
		if len(f) < 8 || !inodes[f[6]] || f[3] != "00010000" || strings.HasPrefix(f[7], "@") || seen[f[7]] {
			continue
		}
		seen[f[7]] = true
		out = append(out, f[7])
	}
	sort.Strings(out)
	return out
}
