package exit

import (
	"sync"
	"time"
)

// Latch records one exit. The zero value is ready to use; a Latch must not be
// copied after first use.
type Latch struct {
	mu   sync.Mutex
	done chan struct{}
	set  bool
	code uint32
	at   time.Time
	// notify are the functions Notify registered before the exit.
	notify []func()
}

// doneChan returns the channel, making it on first use. Called with mu held.
func (l *Latch) doneChan() chan struct{} {
	if l.done == nil {
		l.done = make(chan struct{})
	}
	return l.done
}

// Set records the exit and wakes every waiter. Only the first call counts:
// it returns true; later calls change nothing and return false. A zero at
// is taken as now.
func (l *Latch) Set(code uint32, at time.Time) bool {
	if at.IsZero() {
		at = time.Now()
	}
	l.mu.Lock()
	if l.set {
		l.mu.Unlock()
		return false
	}
	l.set, l.code, l.at = true, code, at
	close(l.doneChan())
	fns := l.notify
	l.notify = nil
	l.mu.Unlock()
	for _, f := range fns {
		f()
	}
	return true
}

// Notifier is what calls back once it has exited: a Latch, or anything that
// embeds one. A waiter checks for it before parking a goroutine on Done.
type Notifier interface{ Notify(f func()) }

var _ Notifier = (*Latch)(nil)

// Notify has f called once the exit is recorded, after Done is closed: by
// the goroutine that calls Set (so f must not block: it starts a goroutine
// for anything longer), or on a goroutine of its own when the exit is
// recorded already. It is what a waiter uses instead of a goroutine
// parked on Done for the whole life of what it waits for.
func (l *Latch) Notify(f func()) {
	l.mu.Lock()
	if !l.set {
		l.notify = append(l.notify, f)
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	go f()
}

// Done is closed once the exit is recorded.
func (l *Latch) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.doneChan()
}

// Exited is Done, under the name task.Process and sandbox.Instance use.
func (l *Latch) Exited() <-chan struct{} { return l.Done() }

// IsSet reports whether the exit is recorded, without blocking.
func (l *Latch) IsSet() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.set
}

// ExitStatus is the recorded exit code and time (zero values before Set).
func (l *Latch) ExitStatus() (code uint32, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.code, l.at
}
