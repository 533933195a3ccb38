package proc

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// UnknownStatus is reported when a process exited but was not our child.
const UnknownStatus = 255

// Watch is one watched process.
type Watch struct {
	pid    int
	done   chan struct{}
	status int
	known  bool
	at     time.Time
}

// Open starts watching pid. The pid must be alive or an unreaped zombie.
func Open(pid int) (*Watch, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("pid %d: invalid", pid)
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	w := &Watch{pid: pid, done: make(chan struct{})}
	claim(pid)
	f := os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid))
	go w.wait(f)
	return w, nil
}

// Exited returns a watch that is already over (status unknown).
func Exited(pid int) *Watch {
	w := &Watch{pid: pid, done: make(chan struct{}), status: UnknownStatus, at: time.Now()}
	close(w.done)
	return w
}

func (w *Watch) wait(f *os.File) {
	defer f.Close()
	defer close(w.done)
	rc, err := f.SyscallConn()
	if err == nil {
		err = rc.Read(func(fd uintptr) bool { return exited(int32(fd)) })
	}
	if err != nil {
		// cannot poll: fall back to a blocking wait on a thread
		_ = waitBlocking(w.pid)
	}
	w.at = time.Now()
	w.status, w.known = reap(w.pid)
	release(w.pid)
}

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
func (w *Watch) Done() <-chan struct{} { return w.done }

// Status is the exit status (valid after Done); known is false when the
// process was not our child.
func (w *Watch) Status() (code int, known bool, at time.Time) { return w.status, w.known, w.at }
