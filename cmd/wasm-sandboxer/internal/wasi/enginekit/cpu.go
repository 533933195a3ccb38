package enginekit

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// CPUMeter adds up the CPU time of the OS threads an instance ran on. The
// instance's goroutine calls Start after runtime.LockOSThread and Stop
// before unlocking (or before it blocks for long, to give the thread back);
// Read is safe from any goroutine at any time.
type CPUMeter struct {
	mu      sync.Mutex
	tid     int
	base    time.Duration
	total   time.Duration
	running bool
}

// threadClock is the per-thread CPU clock of tid in this process: Linux's
// MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED).
func threadClock(tid int) (time.Duration, bool) {
	id := int32((^uint32(tid))<<3) | 4 | 2
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}

// Start begins counting the calling (locked) thread.
func (m *CPUMeter) Start() {
	tid := unix.Gettid()
	now, _ := threadClock(tid)
	m.mu.Lock()
	m.tid, m.base, m.running = tid, now, true
	m.mu.Unlock()
}

// Stop ends counting the thread Start recorded.
func (m *CPUMeter) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.running {
		return
	}
	if now, ok := threadClock(m.tid); ok && now > m.base {
		m.total += now - m.base
	}
	m.running = false
}

// Read is the CPU time so far.
func (m *CPUMeter) Read() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.total
	if m.running {
		if now, ok := threadClock(m.tid); ok && now > m.base {
			t += now - m.base
		}
	}
	return t
}
