package reaper

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
)

// Exit is one reaped child.
type Exit struct {
	Pid int
	// Status is the exit code, or 128+signal for a child killed by a signal.
	Status int
	At     time.Time
}

// keep bounds the exits kept for late waiters.
const keep = 1024

// Reaper dispatches exits of children to waiters by pid.
type Reaper struct {
	mu        sync.Mutex
	waiters   map[int][]waiter
	unclaimed map[int]Exit
	order     []int // unclaimed pids, oldest first
	kick      chan struct{}
}

type waiter struct {
	ch    chan Exit
	since time.Time
}

// New makes a reaper; call Run to start reaping.
func New() *Reaper {
	return &Reaper{waiters: map[int][]waiter{}, unclaimed: map[int]Exit{}, kick: make(chan struct{}, 1)}
}

// Run reaps on every SIGCHLD (and every 2 s, in case a signal was
// coalesced before Notify) until ctx ends.
func (r *Reaper) Run(ctx context.Context) {
	sig := make(chan os.Signal, 32)
	signal.Notify(sig, unix.SIGCHLD)
	defer signal.Stop(sig)
	tk := time.NewTicker(2 * time.Second)
	defer tk.Stop()
	for {
		r.Reap()
		select {
		case <-ctx.Done():
			return
		case <-sig:
		case <-r.kick:
		case <-tk.C:
		}
	}
}

// Reap collects every child that has exited, without blocking.
func (r *Reaper) Reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		status := ws.ExitStatus()
		if ws.Signaled() {
			status = 128 + int(ws.Signal())
		}
		r.dispatch(Exit{Pid: pid, Status: status, At: time.Now()})
	}
}

func (r *Reaper) dispatch(e Exit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ws := r.waiters[e.Pid]; len(ws) > 0 {
		delete(r.waiters, e.Pid)
		for _, w := range ws {
			w.ch <- e // buffered 1
		}
		return
	}
	if _, ok := r.unclaimed[e.Pid]; !ok {
		r.order = append(r.order, e.Pid)
	}
	r.unclaimed[e.Pid] = e
	for len(r.order) > keep {
		delete(r.unclaimed, r.order[0])
		r.order = r.order[1:]
	}
}

// WaitPid returns a channel that receives the exit of pid once, counting
// only exits reaped at or after since (zero: any kept exit).
func (r *Reaper) WaitPid(pid int, since time.Time) <-chan Exit {
	ch := make(chan Exit, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.unclaimed[pid]; ok && !e.At.Before(since) {
		delete(r.unclaimed, pid)
		for i, p := range r.order {
			if p == pid {
				r.order = append(r.order[:i], r.order[i+1:]...)
				break
			}
		}
		ch <- e
		return ch
	}
	r.waiters[pid] = append(r.waiters[pid], waiter{ch: ch, since: since})
	return ch
}

// Kick makes Run reap now (after a start, in case SIGCHLD was missed).
func (r *Reaper) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Start starts cmd and returns the channel its exit will arrive on.
func (r *Reaper) Start(cmd *exec.Cmd) (chan runc.Exit, error) {
	return r.start(cmd, nil)
}

func (r *Reaper) start(cmd *exec.Cmd, exited func()) (chan runc.Exit, error) {
	before := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	out := make(chan runc.Exit, 1)
	in := r.WaitPid(cmd.Process.Pid, before)
	go func() {
		e := <-in
		if exited != nil {
			exited()
		}
		out <- runc.Exit{Timestamp: e.At, Pid: e.Pid, Status: e.Status}
		close(out)
	}()
	return out, nil
}

// StartLocked is Start from a goroutine locked to its OS thread, which it
// keeps until the child exits (a parent-death signal fires when the
// starting thread ends).
func (r *Reaper) StartLocked(cmd *exec.Cmd) (chan runc.Exit, error) {
	type res struct {
		ch  chan runc.Exit
		err error
	}
	done := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		exited := make(chan struct{})
		ch, err := r.start(cmd, func() { close(exited) })
		done <- res{ch, err}
		if err == nil {
			<-exited
		}
		runtime.UnlockOSThread()
	}()
	x := <-done
	return x.ch, x.err
}

// Wait waits for the exit from Start, then flushes cmd's I/O.
func (r *Reaper) Wait(cmd *exec.Cmd, ec chan runc.Exit) (int, error) {
	e, ok := <-ec
	if !ok {
		return -1, errors.New("reaper: exit channel closed without an exit")
	}
	_ = cmd.Wait() // ECHILD: we reaped it; this only waits for the I/O copies
	return e.Status, nil
}

var _ runc.ProcessMonitor = (*Reaper)(nil)
