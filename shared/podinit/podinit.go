package podinit

import (
	"os"
	"os/signal"
	"syscall"
)

// Binary is the name of the pod init executable, installed beside the
// sandboxer binaries.
const Binary = "magnetar-podinit"

// Arg is the first argument a pod init runs with, whichever binary it is
// (it names the process's role in ps and to the benchmarks).
const Arg = "__magnetar_pod_init"

// Args are the arguments of the init of pod id: Arg, then the id, which Run
// ignores but which lets a sandboxer find the process again from its
// command line (after a restart that lost its pid).
func Args(id string) []string { return []string{Arg, id} }

// Run reaps children until SIGTERM or SIGINT.
func Run() error {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)
	reap() // children that exited before Notify sent no signal we saw
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return nil
		}
		reap()
	}
	return nil
}

// reap collects every child that has exited.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
