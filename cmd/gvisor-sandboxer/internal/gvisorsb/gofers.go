package gvisorsb

import (
	"slices"
	"sync"

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
		go func() {
			<-w.Done()
			g.forget(k.PID)
		}()
	}
}

func (g *gofers) forget(pid int) {
	g.mu.Lock()
	delete(g.watched, pid)
	g.mu.Unlock()
}
