package runcsb

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/podinit"
	"github.com/magnetar-runtime/magnetar/shared/proc"
)

// The pod init of a pod with its own user namespace and one PID namespace
// for its containers. runc joins a container's user namespace before its
// other namespaces, and joining a PID namespace takes CAP_SYS_ADMIN in the
// user namespace that owns it: so the pod's PID namespace must be made from
// inside the pod's user namespace. A Go process cannot enter a user
// namespace (setns needs a single thread), so util-linux (essential on
// Debian and every distribution containerd runs on) does the two steps:
//
//	nsenter --user=<pod userns> -- unshare --pid --kill-child -- magnetar-podinit __magnetar_pod_init <id>
//
// nsenter becomes the namespace's root (uid 0 inside, the pod's mapped uid
// outside) so that unshare keeps the capabilities it needs there; unshare
// stays as the init's parent and kills it if it dies. The pod's init pid is
// unshare's child: PID 1 of the new PID namespace.
const (
	nsenterBinary = "nsenter"
	unshareBinary = "unshare"
)

// userNSInitTools checks that the tools a user-namespaced pod init needs
// are there: FailedPrecondition naming them when not.
func userNSInitTools() error {
	for _, b := range []string{nsenterBinary, unshareBinary} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("the pod init is started in the pod's user namespace by util-linux's %s, not found in PATH (install util-linux): %w", b, errdefs.ErrFailedPrecondition)
		}
	}
	return nil
}

// startPodInitInUserNS starts it (Create checked the tools: userNSInitTools).
func startPodInitInUserNS(ctx context.Context, bin, id, userns string) (int, *proc.Watch, error) {
	args := append([]string{"--user=" + userns, "--", unshareBinary, "--pid", "--kill-child", "--", bin}, podinit.Args(id)...)
	cmd := exec.Command(nsenterBinary, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	parent := make(chan struct{})
	go func() {
		// unshare ends when the init does (or kills it when it dies)
		_ = cmd.Wait()
		close(parent)
	}()
	fail := func(err error) (int, *proc.Watch, error) {
		_ = cmd.Process.Kill()
		<-parent
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return 0, nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pid := childRunning(cmd.Process.Pid, id); pid > 0 {
			w, err := proc.Open(pid)
			if err != nil {
				return fail(err)
			}
			log.G(ctx).WithFields(log.Fields{"sandbox_id": id, "pid": pid, "parent": cmd.Process.Pid}).Debug("pod init started in the pod's user namespace")
			return pid, w, nil
		}
		select {
		case <-parent:
			return fail(fmt.Errorf("%s/%s ended before the pod init ran (%s): %w", nsenterBinary, unshareBinary, cmd.ProcessState, errdefs.ErrFailedPrecondition))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("the pod init did not start in 10s: %w", errdefs.ErrUnavailable))
		}
	}
}

// childRunning is the pid of parent's child that runs pod id's init (0
// until it does).
func childRunning(parent int, id string) int {
	for _, p := range proc.Find(isPodInit(id)) {
		if st, err := proc.ReadStat(p.PID); err == nil && st.PPid == parent {
			return p.PID
		}
	}
	return 0
}
