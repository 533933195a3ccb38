package cgroups

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/magnetar-runtime/magnetar/shared/poll"
	"golang.org/x/sys/unix"
)

// oomRecheck bounds how long a watcher goes without re-reading the kill
// counter and checking that the cgroup still exists, for the cases the
// kernel does not signal (a v2 cgroup removed, a kill counted after its
// notification). Tests shorten it.
var oomRecheck = 2 * time.Second

// oomQuickRecheck is the retry interval after a notification that the kill
// counter did not reflect yet (v1 signals before the victim is chosen).
const oomQuickRecheck = 20 * time.Millisecond

// oomWatch turns notifications on a pollable descriptor into one call of
// kill per increment of the cgroup's oom_kill counter. It holds no
// goroutine: the descriptor is registered on the process-wide poll loop
// (shared/poll) and the rechecks are timers.
type oomWatch struct {
	path string
	// fd is an eventfd (v1) or inotify descriptor (v2) in non-blocking
	// mode, the watch's own: registered on the poll loop only (an os.File
	// would park it on Go's netpoller as well), closed by close.
	fd int
	// counter returns the oom_kill counter; ok is false on kernels without
	// one, where each notification counts as one kill.
	counter func() (n uint64, ok bool, err error)
	alive   func() bool

	// kill is called once per kill, end (may be nil) once when the watch
	// ends; both with mu held, never after end.
	kill, end func()

	mu       sync.Mutex
	closed   bool
	last     uint64
	counting bool
	quick    int
	reg      *poll.Reg
	timer    *time.Timer
	stopCtx  func() bool
}

func oomEventsV1(ctx context.Context, path, memRoot, memDir string, kill, end func()) error {
	if !isDir(memRoot) {
		return fmt.Errorf("cgroup %s: memory controller not mounted: %w", path, errdefs.ErrNotImplemented)
	}
	if !isDir(memDir) {
		return fmt.Errorf("cgroup %s: %w", path, errdefs.ErrNotFound)
	}
	control := filepath.Join(memDir, "memory.oom_control")
	cf, err := os.Open(control)
	if err != nil {
		return fmt.Errorf("cgroup %s: open oom control: %w", path, err)
	}
	defer cf.Close()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("cgroup %s: eventfd: %w", path, err)
	}
	// The kernel takes its own references to both descriptors.
	reg := fmt.Sprintf("%d %d", efd, cf.Fd())
	if err := writeControl(filepath.Join(memDir, "cgroup.event_control"), reg); err != nil {
		unix.Close(efd)
		return fmt.Errorf("cgroup %s: register oom notification: %w", path, err)
	}
	w := &oomWatch{
		path:    path,
		fd:      efd,
		counter: func() (uint64, bool, error) { return readKV(control, "oom_kill") },
		alive:   func() bool { return isDir(memDir) },
		kill:    kill,
		end:     end,
	}
	return w.start(ctx)
}

func oomEventsV2(ctx context.Context, path, dir string, kill, end func()) error {
	events := filepath.Join(dir, "memory.events")
	if !exists(events) {
		if !isDir(dir) {
			return fmt.Errorf("cgroup %s: %w", path, errdefs.ErrNotFound)
		}
		return fmt.Errorf("cgroup %s: memory controller not enabled: %w", path, errdefs.ErrNotImplemented)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("cgroup %s: inotify: %w", path, err)
	}
	if _, err := unix.InotifyAddWatch(fd, events, unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return fmt.Errorf("cgroup %s: watch %s: %w", path, events, err)
	}
	// cgroup.events changes when the cgroup empties, the usual prelude to
	// its removal; best effort.
	_, _ = unix.InotifyAddWatch(fd, filepath.Join(dir, "cgroup.events"), unix.IN_MODIFY)
	w := &oomWatch{
		path:    path,
		fd:      fd,
		counter: func() (uint64, bool, error) { return readKV(events, "oom_kill") },
		alive:   func() bool { return isDir(dir) },
		kill:    kill,
		end:     end,
	}
	return w.start(ctx)
}

// oomBacklog is how many kills an OOMEvents channel holds unread; more
// coalesce (a consumer that reads them late learns of at least one).
const oomBacklog = 8

// oomChannel makes the channel of OOMEvents over a watch that start
// starts with the two callbacks.
func oomChannel(start func(kill, end func()) error) (<-chan struct{}, error) {
	ch := make(chan struct{}, oomBacklog)
	kill := func() {
		select {
		case ch <- struct{}{}:
		default: // a backlog unread: this kill coalesces with it
		}
	}
	if err := start(kill, func() { close(ch) }); err != nil {
		return nil, err
	}
	return ch, nil
}

func (w *oomWatch) start(ctx context.Context) error {
	last, counting, err := w.counter()
	if err != nil {
		unix.Close(w.fd)
		return fmt.Errorf("cgroup %s: read oom_kill: %w", w.path, err)
	}
	w.last, w.counting = last, counting
	w.mu.Lock()
	defer w.mu.Unlock()
	reg, err := poll.Add(w.fd, w.ready)
	if err != nil {
		unix.Close(w.fd)
		return fmt.Errorf("cgroup %s: watch oom: %w", w.path, err)
	}
	w.reg = reg
	w.timer = time.AfterFunc(oomRecheck, w.recheck)
	w.stopCtx = context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.closed {
			// the kills counted by now still count: a container's watch
			// ends as it exits, which an OOM kill is the cause of
			w.check(false)
		}
		w.close()
	})
	return nil
}

// ready runs on the poll loop when the descriptor is readable: it drains
// it and checks the counter.
func (w *oomWatch) ready(*poll.Reg) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	var buf [4096]byte // >= 8 for an eventfd, several inotify events
	for {
		_, err := unix.Read(w.fd, buf[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			log.L.WithError(err).WithField("cgroup", w.path).Warn("oom watch stopped")
			w.close()
			return
		}
		if err != nil {
			break
		}
	}
	w.check(true)
}

// recheck runs on a timer: oomRecheck apart, or oomQuickRecheck after a
// notification the counter did not show yet.
func (w *oomWatch) recheck() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.check(false)
	if w.closed {
		return
	}
	wait := oomRecheck
	if w.quick > 0 {
		wait = oomQuickRecheck
		w.quick--
	}
	w.timer.Reset(wait)
}

// check reads the counter and delivers the kills since the last check; it
// ends the watch once the cgroup is gone. counting says whether the kernel
// keeps an oom_kill counter (since Linux 4.13); without one, each
// notification is taken as one kill. w.mu is held.
func (w *oomWatch) check(woke bool) {
	if !w.alive() {
		w.close()
		return
	}
	n, ok, err := w.counter()
	if err != nil {
		if !w.alive() {
			w.close()
			return
		}
		log.L.WithError(err).WithField("cgroup", w.path).Debug("read oom_kill")
		return
	}
	var kills uint64
	switch {
	case !w.counting && woke:
		kills = 1
	case !w.counting || !ok:
		// no counter, or a read that caught the file mid-rewrite
	case n > w.last:
		kills, w.last = n-w.last, n
	case woke:
		w.quick = 10
		w.timer.Reset(oomQuickRecheck)
	}
	for ; kills > 0; kills-- {
		w.kill()
	}
}

// close ends the watch: no more notifications or timers, the descriptor
// closed, end called. w.mu is held; idempotent.
func (w *oomWatch) close() {
	if w.closed {
		return
	}
	w.closed = true
	w.reg.Close()
	unix.Close(w.fd)
	w.timer.Stop()
	w.stopCtx()
	if w.end != nil {
		w.end()
	}
}
