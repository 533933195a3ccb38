package proc

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/poll"

	"golang.org/x/sys/unix"
)

// UnknownStatus is reported when a process exited but was not our child.
const UnknownStatus = 255

// Watch is one watched process.
type Watch struct {
	pid int
	// exit is set once the process is gone: its status (UnknownStatus if
	// it was not our child) and when it was seen.
	exit  exit.Latch
	known atomic.Bool // set before exit
}

// Open starts watching pid. The pid must be alive or an unreaped zombie.
// The pidfd is registered on the process-wide poll loop: a watch costs no
// goroutine while its process runs.
func Open(pid int) (*Watch, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("pid %d: invalid", pid)
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	w := &Watch{pid: pid}
	claim(pid)
	_, err = poll.Add(fd, func(r *poll.Reg) {
		if !exited(int32(fd)) {
			return // not yet: re-armed
		}
		r.Close()
		unix.Close(fd)
		w.finish()
	})
	if err != nil {
		// cannot poll: fall back to a blocking wait on a goroutine
		unix.Close(fd)
		go func() {
			_ = waitBlocking(pid)
			w.finish()
		}()
	}
	return w, nil
}

// Exited returns a watch that is already over (status unknown).
func Exited(pid int) *Watch {
	w := &Watch{pid: pid}
	w.exit.Set(UnknownStatus, time.Now())
	return w
}

// finish records the exit once the process is gone: reaps it if it is our
// child, then sets the exit (Done closes, what Notify registered runs).
func (w *Watch) finish() {
	at := time.Now()
	status, known := reap(w.pid)
	release(w.pid)
	w.known.Store(known)
	w.exit.Set(uint32(status), at)
}

// Notify has f called once the process has exited, after Done is closed:
// on the poll loop's goroutine (so f must not block), or on a goroutine of
// its own if the process has exited already (exit.Latch.Notify).
func (w *Watch) Notify(f func()) { w.exit.Notify(f) }

// exited polls a pidfd without blocking: it is readable once the process
// has exited. EINTR (Go's preemption signals) is retried, never taken as exit.
func exited(fd int32) bool {
	for {
		fds := []unix.PollFd{{Fd: fd, Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false
		}
		return n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0
	}
}

func waitBlocking(pid int) error {
	for {
		if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reap collects the exit status of pid if it is our child.
func reap(pid int) (int, bool) {
	var ws unix.WaitStatus
	for {
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || got != pid {
			return UnknownStatus, false
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus(), true
		case ws.Signaled():
			return 128 + int(ws.Signal()), true
		}
		return UnknownStatus, false
	}
}

// Pid is the watched pid.
func (w *Watch) Pid() int { return w.pid }

// Done is closed when the process has exited.
func (w *Watch) Done() <-chan struct{} { return w.exit.Done() }

// Status is the exit status (valid after Done); known is false when the
// process was not our child.
func (w *Watch) Status() (code int, known bool, at time.Time) {
	c, at := w.exit.ExitStatus()
	return int(c), w.known.Load(), at
}
