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
	defer l.mu.Unlock()
	if l.set {
		return false
	}
	l.set, l.code, l.at = true, code, at
	close(l.doneChan())
	return true
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
