package cgroups

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
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

// oomWatch turns notifications on a pollable descriptor into one channel
// value per increment of the cgroup's oom_kill counter.
type oomWatch struct {
	path string
	// f is an eventfd (v1) or inotify descriptor (v2) in non-blocking mode,
	// so reads park in the runtime poller instead of holding a thread.
	f *os.File
	// counter returns the oom_kill counter; ok is false on kernels without
	// one, where each notification counts as one kill.
	counter func() (n uint64, ok bool, err error)
	alive   func() bool
}

func oomEventsV1(ctx context.Context, path, memRoot, memDir string) (<-chan struct{}, error) {
	if !isDir(memRoot) {
		return nil, fmt.Errorf("cgroup %s: memory controller not mounted: %w", path, errdefs.ErrNotImplemented)
	}
	if !isDir(memDir) {
		return nil, fmt.Errorf("cgroup %s: %w", path, errdefs.ErrNotFound)
	}
	control := filepath.Join(memDir, "memory.oom_control")
	cf, err := os.Open(control)
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: open oom control: %w", path, err)
	}
	defer cf.Close()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: eventfd: %w", path, err)
	}
	ef := os.NewFile(uintptr(efd), "oom-eventfd")
	// The kernel takes its own references to both descriptors.
	reg := fmt.Sprintf("%d %d", efd, cf.Fd())
	if err := writeControl(filepath.Join(memDir, "cgroup.event_control"), reg); err != nil {
		ef.Close()
		return nil, fmt.Errorf("cgroup %s: register oom notification: %w", path, err)
	}
	w := &oomWatch{
		path:    path,
		f:       ef,
		counter: func() (uint64, bool, error) { return readKV(control, "oom_kill") },
		alive:   func() bool { return isDir(memDir) },
	}
	return w.start(ctx)
}

func oomEventsV2(ctx context.Context, path, dir string) (<-chan struct{}, error) {
	events := filepath.Join(dir, "memory.events")
	if !exists(events) {
		if !isDir(dir) {
			return nil, fmt.Errorf("cgroup %s: %w", path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("cgroup %s: memory controller not enabled: %w", path, errdefs.ErrNotImplemented)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: inotify: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), "oom-inotify")
	if _, err := unix.InotifyAddWatch(fd, events, unix.IN_MODIFY); err != nil {
		f.Close()
		return nil, fmt.Errorf("cgroup %s: watch %s: %w", path, events, err)
	}
	// cgroup.events changes when the cgroup empties, the usual prelude to
	// its removal; best effort.
	_, _ = unix.InotifyAddWatch(fd, filepath.Join(dir, "cgroup.events"), unix.IN_MODIFY)
	w := &oomWatch{
		path:    path,
		f:       f,
		counter: func() (uint64, bool, error) { return readKV(events, "oom_kill") },
		alive:   func() bool { return isDir(dir) },
	}
	return w.start(ctx)
}

func (w *oomWatch) start(ctx context.Context) (<-chan struct{}, error) {
	last, counting, err := w.counter()
	if err != nil {
		w.f.Close()
		return nil, fmt.Errorf("cgroup %s: read oom_kill: %w", w.path, err)
	}
	ch := make(chan struct{}, 8)
	go w.run(ctx, ch, last, counting)
	return ch, nil
}

// run delivers kills until ctx ends or the cgroup goes away. counting says
// whether the kernel keeps an oom_kill counter (since Linux 4.13); without
// one, each notification is taken as one kill.
func (w *oomWatch) run(ctx context.Context, ch chan<- struct{}, last uint64, counting bool) {
	defer close(ch)
	defer w.f.Close()
	// A read deadline in the past wakes the pending Read when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = w.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	buf := make([]byte, 4096) // >= 8 for an eventfd, several inotify events
	quick := 0
	for {
		wait := oomRecheck
		if quick > 0 {
			wait = oomQuickRecheck
			quick--
		}
		_ = w.f.SetReadDeadline(time.Now().Add(wait))
		if ctx.Err() != nil {
			return
		}
		_, err := w.f.Read(buf)
		if ctx.Err() != nil {
			return
		}
		woke := err == nil
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			log.L.WithError(err).WithField("cgroup", w.path).Warn("oom watch stopped")
			return
		}
		if !w.alive() {
			return
		}
		n, ok, err := w.counter()
		if err != nil {
			if !w.alive() {
				return
			}
			log.L.WithError(err).WithField("cgroup", w.path).Debug("read oom_kill")
			continue
		}
		var kills uint64
		switch {
		case !counting && woke:
			kills = 1
		case !counting || !ok:
			// no counter, or a read that caught the file mid-rewrite
		case n > last:
			kills, last = n-last, n
		case woke:
			quick = 10
		}
		for ; kills > 0; kills-- {
			select {
			case ch <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}
}
