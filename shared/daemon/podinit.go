package daemon

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// podInit is PID 1 of a pod's shared PID namespace: it reaps orphans and
// exits on SIGTERM or SIGINT. It holds no other state.
func podInit() error { return RunPodInit() }

// RunPodInit is the body of the pod init (exported for test binaries that
// re-execute themselves as it).
func RunPodInit() error {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return nil
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
	return nil
}
