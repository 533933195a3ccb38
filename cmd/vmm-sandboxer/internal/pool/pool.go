package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/log"
)

// Shape is what a pooled VM is booted as; a pod takes a VM of exactly its
// own shape.
type Shape struct {
	Hypervisor string
	VCPUs      int
	MemoryMiB  int
}

func (s Shape) String() string {
	return fmt.Sprintf("%s/%dcpu/%dMiB", s.Hypervisor, s.VCPUs, s.MemoryMiB)
}

// Item is one pooled VM.
type Item interface {
	// Done is closed when the VM has ended by itself.
	Done() <-chan struct{}
	// Destroy ends the VM and removes everything of it. Idempotent.
	Destroy(ctx context.Context) error
}

// BootFunc boots a VM of shape s, ready to be taken (its agent answers).
// On error it leaves nothing behind.
type BootFunc func(ctx context.Context, s Shape) (Item, error)

// Config sizes a pool.
type Config struct {
	// Sizes is the number of ready VMs to keep per shape.
	Sizes map[Shape]int
	// MaxMemoryMiB bounds the guest memory of ready and booting VMs
	// together; 0 is no bound beyond Sizes.
	MaxMemoryMiB int
	// Concurrency is the number of boots at a time (at least 1).
	Concurrency int
	// MinBackoff and MaxBackoff bound the wait after a failed boot
	// (defaults 1 s and 1 min).
	MinBackoff, MaxBackoff time.Duration
}

// Stat is a shape's count.
type Stat struct {
	Want, Ready, Booting int
	// Failures counts failed boots since the last successful one.
	Failures int
}

// Pool is a warm pool. Its methods are safe for concurrent use.
type Pool struct {
	cfg  Config
	boot BootFunc
	life context.Context
	stop context.CancelFunc

	mu      sync.Mutex
	ready   map[Shape][]*entry
	booting map[Shape]int
	fails   map[Shape]int
	retryAt map[Shape]time.Time
	holds   int
	closed  bool
	wg      sync.WaitGroup
	wake    chan struct{}
}

// entry is a ready Item and the end of its watch.
type entry struct {
	item  Item
	taken chan struct{}
}

// New starts a pool: its refill runs until life ends or Close.
func New(life context.Context, cfg Config, boot BootFunc) *Pool {
	if cfg.Concurrency < 1 {
		cfg.Concurrency = 1
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(time.Minute, cfg.MinBackoff)
	}
	ctx, stop := context.WithCancel(life)
	p := &Pool{cfg: cfg, boot: boot, life: ctx, stop: stop,
		ready: map[Shape][]*entry{}, booting: map[Shape]int{}, fails: map[Shape]int{}, retryAt: map[Shape]time.Time{},
		wake: make(chan struct{}, 1)}
	p.wg.Add(1)
	go p.refill()
	return p
}

// Wants reports whether the pool keeps VMs of shape s.
func (p *Pool) Wants(s Shape) bool { return p.cfg.Sizes[s] > 0 }

// Take hands out a ready VM of shape s, nil when there is none; the caller
// owns it from then on. It starts the refill.
func (p *Pool) Take(s Shape) Item {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	q := p.ready[s]
	if len(q) == 0 {
		return nil
	}
	// the oldest first: every VM gets used, none waits for ever
	e := q[0]
	p.ready[s] = q[1:]
	close(e.taken)
	p.kick()
	return e.item
}

// Hold keeps the refill from starting a boot until release is called
// (release is idempotent): a pod start holds the pool while it runs.
func (p *Pool) Hold() (release func()) {
	p.mu.Lock()
	p.holds++
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			p.holds--
			p.kick()
			p.mu.Unlock()
		})
	}
}

// Stats reports every configured shape.
func (p *Pool) Stats() map[Shape]Stat {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[Shape]Stat{}
	for s, n := range p.cfg.Sizes {
		out[s] = Stat{Want: n, Ready: len(p.ready[s]), Booting: p.booting[s], Failures: p.fails[s]}
	}
	return out
}

// Close stops the refill, waits for the boots in progress and destroys
// every ready VM (and those whose boot ends meanwhile).
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	var items []Item
	for s, q := range p.ready {
		for _, e := range q {
			close(e.taken)
			items = append(items, e.item)
		}
		delete(p.ready, s)
	}
	p.mu.Unlock()
	p.stop()
	var errs []error
	for _, it := range items {
		errs = append(errs, it.Destroy(ctx))
	}
	p.wg.Wait()
	return errors.Join(errs...)
}

// kick wakes the refill loop; p.mu is held or not, either is fine.
func (p *Pool) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// memoryLocked is the guest memory of ready and booting VMs.
func (p *Pool) memoryLocked() int {
	m := 0
	for s, q := range p.ready {
		m += len(q) * s.MemoryMiB
	}
	for s, n := range p.booting {
		m += n * s.MemoryMiB
	}
	return m
}

// next picks the shape to boot now: the one furthest below its size that
// fits the limits; ok is false when none may start now, and wait is when to
// look again for a shape that waits out a backoff (0: only when woken).
func (p *Pool) nextLocked(now time.Time) (s Shape, ok bool, wait time.Duration) {
	if p.closed || p.holds > 0 {
		return Shape{}, false, 0
	}
	total := 0
	for _, n := range p.booting {
		total += n
	}
	if total >= p.cfg.Concurrency {
		return Shape{}, false, 0
	}
	best := 0
	for sh, want := range p.cfg.Sizes {
		deficit := want - len(p.ready[sh]) - p.booting[sh]
		if deficit <= 0 {
			continue
		}
		if p.cfg.MaxMemoryMiB > 0 && p.memoryLocked()+sh.MemoryMiB > p.cfg.MaxMemoryMiB {
			continue
		}
		if at := p.retryAt[sh]; at.After(now) {
			if d := at.Sub(now); wait == 0 || d < wait {
				wait = d
			}
			continue
		}
		// ties: the smaller shape first (deterministic; cheaper)
		if deficit > best || (deficit == best && less(sh, s)) {
			s, best, ok = sh, deficit, true
		}
	}
	return s, ok, wait
}

func less(a, b Shape) bool {
	if a.MemoryMiB != b.MemoryMiB {
		return a.MemoryMiB < b.MemoryMiB
	}
	if a.VCPUs != b.VCPUs {
		return a.VCPUs < b.VCPUs
	}
	return a.Hypervisor < b.Hypervisor
}

// refill starts boots while the pool is below its sizes.
func (p *Pool) refill() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		s, ok, wait := p.nextLocked(time.Now())
		if ok {
			p.booting[s]++
			p.wg.Add(1)
			go p.bootOne(s)
		}
		p.mu.Unlock()
		if ok {
			continue
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			fire = timer.C
		}
		select {
		case <-p.life.Done():
			return
		case <-p.wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// bootOne boots one VM of shape s and adds it, or counts the failure.
func (p *Pool) bootOne(s Shape) {
	defer p.wg.Done()
	lg := log.G(p.life).WithField("shape", s.String())
	t0 := time.Now()
	it, err := p.boot(p.life, s)
	p.mu.Lock()
	p.booting[s]--
	if err != nil {
		p.fails[s]++
		back := p.cfg.MinBackoff << min(p.fails[s]-1, 16)
		back = min(back, p.cfg.MaxBackoff)
		p.retryAt[s] = time.Now().Add(back)
		closed := p.closed
		p.kick()
		p.mu.Unlock()
		// a boot cut by the pool's end is no failure to report
		if !closed && p.life.Err() == nil {
			lg.WithError(err).WithField("retry_in", back).Warn("pool: booting a VM failed")
		}
		return
	}
	p.fails[s] = 0
	if p.closed {
		p.mu.Unlock()
		_ = it.Destroy(context.WithoutCancel(p.life))
		return
	}
	e := &entry{item: it, taken: make(chan struct{})}
	p.ready[s] = append(p.ready[s], e)
	p.wg.Add(1)
	go p.watch(s, e)
	p.kick()
	p.mu.Unlock()
	lg.WithField("boot_ms", time.Since(t0).Milliseconds()).Debug("pool: VM ready")
}

// watch replaces a ready VM that ends by itself.
func (p *Pool) watch(s Shape, e *entry) {
	defer p.wg.Done()
	select {
	case <-e.taken:
		return
	case <-e.item.Done():
	}
	p.mu.Lock()
	select {
	case <-e.taken: // taken or closed meanwhile: theirs
		p.mu.Unlock()
		return
	default:
	}
	q := p.ready[s]
	for i, x := range q {
		if x == e {
			p.ready[s] = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	close(e.taken)
	p.kick()
	p.mu.Unlock()
	log.G(p.life).WithField("shape", s.String()).Warn("pool: a ready VM ended by itself: replacing it")
	_ = e.item.Destroy(context.WithoutCancel(p.life))
}
