package gvisorsb

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/proc"
)

// gofers reaps the gofers the daemon inherits. `runsc create` and `runsc
// start` leave a gofer running per container (the root container's and
// each application container's) and exit; the gofer is then re-parented
// to the daemon, a child subreaper, and would stay a zombie of it once it
// exits. After each of those calls the daemon looks for its new runsc-gofer
// children and watches each with a pidfd (shared/proc), which reaps it.
// (The sandbox process is the pod's own watch; the exec helpers are their
// exec's.)
type gofers struct {
	mu      sync.Mutex
	watched map[int]bool
}

func newGofers() *gofers { return &gofers{watched: map[int]bool{}} }

// adopt watches the daemon's runsc-gofer children of the runsc root.
func (g *gofers) adopt(root string) {
	arg := rootArg(root)
	kids := proc.Children(func(args []string) bool { return args[0] == "runsc-gofer" && slices.Contains(args, arg) })
	for _, k := range kids {
		g.mu.Lock()
		seen := g.watched[k.PID]
		g.watched[k.PID] = true
		g.mu.Unlock()
		if seen {
			continue
		}
		w, err := proc.Open(k.PID)
		if err != nil {
			g.forget(k.PID)
			continue
		}
		w.Notify(func() { g.forget(k.PID) })
	}
}

func (g *gofers) forget(pid int) {
	g.mu.Lock()
	delete(g.watched, pid)
	g.mu.Unlock()
}

// orphanSweep is how often sweepOrphans runs.
const orphanSweep = 10 * time.Second

// sweepOrphans reaps, until ctx ends, the zombie children of runsc's that
// nothing reaps: processes runsc leaves behind (re-executions of its own
// binary, named "exe") are re-parented to the daemon and may exit unseen. A
// zombie found on two sweeps in a row has no watcher (one reaps at once)
// and is reaped by pid.
func sweepOrphans(ctx context.Context) {
	seen := map[int]bool{}
	t := time.NewTicker(orphanSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := map[int]bool{}
		for _, pid := range zombieChildren() {
			if !seen[pid] {
				now[pid] = true
				continue
			}
			var info unix.Siginfo
			if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG, nil); err == nil {
				log.G(ctx).WithField("pid", pid).Debug("reaped an orphan of runsc")
			}
		}
		seen = now
	}
}

// zombieChildren are the daemon's zombie children of runsc's binary.
func zombieChildren() []int {
	var out []int
	files, _ := filepath.Glob("/proc/self/task/*/children")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(s)
			if err != nil {
				continue
			}
			comm, _ := os.ReadFile("/proc/" + s + "/comm")
			name := strings.TrimSpace(string(comm))
			if st, err := proc.ReadStat(pid); err == nil && st.State == "Z" && (name == "exe" || strings.HasPrefix(name, "runsc")) {
				out = append(out, pid)
			}
		}
	}
	return out
}
