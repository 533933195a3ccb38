package proc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Stat is what the sandboxers read of /proc/<pid>/stat.
type Stat struct {
	// State is field 3: R, S, D, Z, ...
	State string
	// PPid is field 4, the parent's pid.
	PPid int
	// StartTime is field 22: when the process started, in clock ticks
	// after boot. With the pid it names one process across daemon
	// restarts: a pid may be reused, a pid with its start time may not.
	StartTime uint64
}

// ReadStat reads /proc/<pid>/stat. A pid that does not exist fails with
// errdefs.ErrNotFound.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return Stat{}, fmt.Errorf("pid %d: %w", pid, errdefs.ErrNotFound)
		}
		return Stat{}, err
	}
	return parseStat(string(b))
}

// StartTime is the start time (Stat.StartTime) of pid.
func StartTime(pid int) (uint64, error) {
	st, err := ReadStat(pid)
	return st.StartTime, err
}

// parseStat parses a /proc/<pid>/stat line. The command name (field 2) is
// in parentheses and may itself hold spaces and ')': fields are counted
// after the last ')'.
func parseStat(stat string) (Stat, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("proc stat %q: no command name: %w", stat, errdefs.ErrUnknown)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 20 {
		return Stat{}, fmt.Errorf("proc stat: %d fields after the command name: %w", len(f), errdefs.ErrUnknown)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return Stat{}, fmt.Errorf("proc stat: ppid %q: %w", f[1], errdefs.ErrUnknown)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("proc stat: start time %q: %w", f[19], errdefs.ErrUnknown)
	}
	return Stat{State: f[0], PPid: ppid, StartTime: start}, nil
}

// Reopen watches a process found again after a daemon restart: the one
// pid and start name if it still runs, else one that is over (Exited:
// status unknown).
func Reopen(pid int, start uint64) *Watch {
	if pid > 0 {
		if st, err := StartTime(pid); err == nil && st == start {
			if w, err := Open(pid); err == nil {
				return w
			}
		}
	}
	return Exited(pid)
}

// Children lists the live children of this process whose command line
// match accepts: the processes that the children of its threads list
// (/proc/self/task/<tid>/children), or, on a kernel without those files,
// those whose parent /proc/<pid>/stat names. A daemon that is a child
// subreaper learns this way the processes re-parented to it (the helpers
// a runtime's command left running), to watch and reap them.
func Children(match func(args []string) bool) []Process {
	var out []Process
	for _, pid := range childPids() {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil || len(b) == 0 {
			continue // gone, or a zombie
		}
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if match(args) {
			out = append(out, Process{PID: pid, Args: args})
		}
	}
	return out
}

// childPids lists the children of this process (see Children), zombies too.
func childPids() []int {
	self := os.Getpid()
	var pids []int
	files, _ := filepath.Glob("/proc/self/task/*/children")
	if len(files) > 0 {
		for _, f := range files {
			b, _ := os.ReadFile(f)
			for _, s := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(s); err == nil {
					pids = append(pids, pid)
				}
			}
		}
	} else {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if st, err := ReadStat(pid); err == nil && st.PPid == self {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}
