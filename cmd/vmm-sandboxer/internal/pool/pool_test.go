package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeVM is an Item; die ends it by itself.
type fakeVM struct {
	shape     Shape
	done      chan struct{}
	once      sync.Once
	destroyed atomic.Int32
}

func (f *fakeVM) Done() <-chan struct{} { return f.done }
func (f *fakeVM) die()                  { f.once.Do(func() { close(f.done) }) }
func (f *fakeVM) Destroy(context.Context) error {
	f.destroyed.Add(1)
	f.die()
	return nil
}

// booter boots fakeVMs, gated when gate is set.
type booter struct {
	mu      sync.Mutex
	made    []*fakeVM
	active  int
	peak    int
	fail    atomic.Int32 // boots left to fail
	gate    chan struct{}
	started chan Shape
}

func (b *booter) boot(ctx context.Context, s Shape) (Item, error) {
	b.mu.Lock()
	b.active++
	b.peak = max(b.peak, b.active)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.active--
		b.mu.Unlock()
	}()
	if b.started != nil {
		b.started <- s
	}
	if b.gate != nil {
		select {
		case <-b.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if b.fail.Load() > 0 {
		b.fail.Add(-1)
		return nil, errors.New("boot failed")
	}
	v := &fakeVM{shape: s, done: make(chan struct{})}
	b.mu.Lock()
	b.made = append(b.made, v)
	b.mu.Unlock()
	return v, nil
}

func (b *booter) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.made)
}

var small = Shape{Hypervisor: "qemu", VCPUs: 1, MemoryMiB: 256}
var big = Shape{Hypervisor: "qemu", VCPUs: 2, MemoryMiB: 1024}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func ready(p *Pool, s Shape) func() bool {
	return func() bool { return p.Stats()[s].Ready == p.cfg.Sizes[s] }
}

func TestFillTakeRefill(t *testing.T) {
	b := &booter{}
	p := New(context.Background(), Config{Sizes: map[Shape]int{small: 2, big: 1}, Concurrency: 2}, b.boot)
	defer p.Close(context.Background())
	waitFor(t, "a full pool", func() bool { return ready(p, small)() && ready(p, big)() })
	if b.peak > 2 {
		t.Errorf("%d boots at once, Concurrency is 2", b.peak)
	}
	if p.Take(Shape{Hypervisor: "qemu", VCPUs: 1, MemoryMiB: 512}) != nil {
		t.Fatal("Take of a shape the pool does not keep returned a VM")
	}
	a, c := p.Take(small), p.Take(small)
	if a == nil || c == nil || a == c {
		t.Fatalf("Take: %v %v", a, c)
	}
	if a.(*fakeVM).shape != small {
		t.Errorf("took a %v", a.(*fakeVM).shape)
	}
	waitFor(t, "the refill", ready(p, small))
	if n := b.count(); n != 5 {
		t.Errorf("%d boots, want 5 (3 + 2 refills)", n)
	}
	// a VM taken is the taker's: its end is not the pool's business
	a.(*fakeVM).die()
	time.Sleep(20 * time.Millisecond)
	if n := b.count(); n != 5 || a.(*fakeVM).destroyed.Load() != 0 {
		t.Errorf("a taken VM's end made the pool act: %d boots, destroyed %d", n, a.(*fakeVM).destroyed.Load())
	}
}

func TestHoldDefersRefill(t *testing.T) {
	b := &booter{}
	p := New(context.Background(), Config{Sizes: map[Shape]int{small: 1}}, b.boot)
	defer p.Close(context.Background())
	waitFor(t, "a full pool", ready(p, small))
	release := p.Hold()
	if p.Take(small) == nil {
		t.Fatal("no VM")
	}
	time.Sleep(30 * time.Millisecond)
	if n := b.count(); n != 1 {
		t.Fatalf("%d boots while a pod start held the pool, want 1", n)
	}
	release()
	release() // idempotent
	waitFor(t, "the refill after release", ready(p, small))
	if p.holds != 0 {
		t.Errorf("holds = %d after release twice", p.holds)
	}
}

func TestMemoryBound(t *testing.T) {
	b := &booter{}
	// room for the small ones and not the big one
	p := New(context.Background(), Config{Sizes: map[Shape]int{small: 2, big: 1}, MaxMemoryMiB: 600, Concurrency: 3}, b.boot)
	defer p.Close(context.Background())
	waitFor(t, "the small ones", ready(p, small))
	time.Sleep(30 * time.Millisecond)
	if st := p.Stats()[big]; st.Ready+st.Booting != 0 {
		t.Errorf("big shape booted beyond max memory: %+v", st)
	}
	if n := b.count(); n != 2 {
		t.Errorf("%d boots, want 2", n)
	}
}

func TestDeadReadyVMReplaced(t *testing.T) {
	b := &booter{}
	p := New(context.Background(), Config{Sizes: map[Shape]int{small: 1}}, b.boot)
	defer p.Close(context.Background())
	waitFor(t, "a full pool", ready(p, small))
	first := b.made[0]
	first.die()
	waitFor(t, "a replacement", func() bool { return b.count() == 2 && ready(p, small)() })
	if first.destroyed.Load() != 1 {
		t.Errorf("the dead VM was destroyed %d times, want 1", first.destroyed.Load())
	}
	if it := p.Take(small); it == first {
		t.Error("Take returned the dead VM")
	}
}

func TestBootFailureBacksOff(t *testing.T) {
	b := &booter{}
	b.fail.Store(2)
	p := New(context.Background(), Config{Sizes: map[Shape]int{small: 1}, MinBackoff: 20 * time.Millisecond, MaxBackoff: 30 * time.Millisecond}, b.boot)
	defer p.Close(context.Background())
	t0 := time.Now()
	waitFor(t, "a VM after two failures", ready(p, small))
	// 20 ms, then 30 ms (the bound, not 40)
	if d := time.Since(t0); d < 50*time.Millisecond {
		t.Errorf("ready after %v: the backoff was not waited", d)
	}
	if st := p.Stats()[small]; st.Failures != 0 {
		t.Errorf("failures = %d after a success", st.Failures)
	}
}

func TestCloseDestroysAll(t *testing.T) {
	b := &booter{gate: make(chan struct{})}
	p := New(context.Background(), Config{Sizes: map[Shape]int{small: 2}, Concurrency: 1}, b.boot)
	close(b.gate)
	waitFor(t, "a full pool", ready(p, small))
	// one more boot held at its gate while Close runs
	b.mu.Lock()
	b.gate = make(chan struct{})
	b.mu.Unlock()
	taken := p.Take(small)
	waitFor(t, "the refill to start", func() bool { return p.Stats()[small].Booting == 1 })
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, v := range b.made {
		want := int32(1)
		if Item(v) == taken {
			want = 0
		}
		if got := v.destroyed.Load(); got != want {
			t.Errorf("VM %d destroyed %d times, want %d", i, got, want)
		}
	}
	if p.Take(small) != nil {
		t.Error("Take after Close returned a VM")
	}
}
