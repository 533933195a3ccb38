package enginekit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/modcache"
	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
)

// fakeMod is a compiled module of the tests' engine.
type fakeMod struct {
	wasm  string
	freed atomic.Int32
}

// fakeEngine counts what its table asks of it.
type fakeEngine struct {
	loads atomic.Int32
	gate  chan struct{} // when set, a load waits for it to close
	fail  error
	mu    sync.Mutex
	freed []*fakeMod
}

func (f *fakeEngine) load(c *modcache.Cache, digest string, wasm []byte) (*fakeMod, wasi.LoadSource, string, error) {
	f.loads.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	if f.fail != nil {
		return nil, "", "", f.fail
	}
	return &fakeMod{wasm: string(wasm)}, wasi.LoadCompiled, "", nil
}

func (f *fakeEngine) free(m *fakeMod) {
	m.freed.Add(1)
	f.mu.Lock()
	f.freed = append(f.freed, m)
	f.mu.Unlock()
}

func (f *fakeEngine) nfreed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.freed)
}

func newTable(t *testing.T, f *fakeEngine, cfg wasi.EngineConfig) *Modules[*fakeMod] {
	t.Helper()
	tab, err := NewModules("fake", cfg, "fake/v1", f.load, f.free)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func mustLoad(t *testing.T, tab *Modules[*fakeMod], wasm string) *Handle[*fakeMod] {
	t.Helper()
	h, err := tab.Load(context.Background(), []byte(wasm))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestModulesShareAndFree(t *testing.T) {
	f := &fakeEngine{}
	tab := newTable(t, f, wasi.EngineConfig{})
	h1 := mustLoad(t, tab, "a")
	h2 := mustLoad(t, tab, "a")
	hb := mustLoad(t, tab, "b")
	if h1.Info().Source != wasi.LoadCompiled || h2.Info().Source != wasi.LoadMemory || hb.Info().Source != wasi.LoadCompiled {
		t.Fatalf("sources %s %s %s", h1.Info().Source, h2.Info().Source, hb.Info().Source)
	}
	if h1.Module() != h2.Module() || h1.Module() == hb.Module() {
		t.Fatal("the same bytes must share one module, other bytes not")
	}
	if h1.Digest() != modcache.Digest([]byte("a")) {
		t.Fatalf("digest %s", h1.Digest())
	}
	if n := f.loads.Load(); n != 2 {
		t.Fatalf("%d loads, want 2", n)
	}
	h1.Close()
	h1.Close() // idempotent: one reference only
	if f.nfreed() != 0 {
		t.Fatal("freed while a Load still holds it")
	}
	h2.Close()
	if f.nfreed() != 1 || h1.Module().freed.Load() != 1 {
		t.Fatal("not freed with the last Load")
	}
	// Gone from memory: the next Load makes it again.
	h3 := mustLoad(t, tab, "a")
	if h3.Info().Source != wasi.LoadCompiled || f.loads.Load() != 3 {
		t.Fatalf("after the last Close: %s, %d loads", h3.Info().Source, f.loads.Load())
	}
	h3.Close()
	hb.Close()
	if err := tab.Close(nil); err != nil {
		t.Fatal(err)
	}
	if f.nfreed() != 3 {
		t.Fatalf("%d freed, want 3", f.nfreed())
	}
}

func TestModulesConcurrentLoadsCompileOnce(t *testing.T) {
	f := &fakeEngine{gate: make(chan struct{})}
	tab := newTable(t, f, wasi.EngineConfig{})
	const n = 8
	hs := make([]*Handle[*fakeMod], n)
	var wg sync.WaitGroup
	for k := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := tab.Load(context.Background(), []byte("a"))
			if err != nil {
				t.Error(err)
				return
			}
			hs[k] = h
		}()
	}
	// Let the others find the load in flight before it ends.
	for f.loads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(f.gate)
	wg.Wait()
	if t.Failed() {
		return
	}
	if got := f.loads.Load(); got != 1 {
		t.Fatalf("%d loads, want 1", got)
	}
	compiled := 0
	for _, h := range hs {
		if h.Module() != hs[0].Module() {
			t.Fatal("concurrent Loads got different modules")
		}
		if h.Info().Source == wasi.LoadCompiled {
			compiled++
		}
	}
	if compiled != 1 {
		t.Fatalf("%d Loads say compiled, want 1", compiled)
	}
	for _, h := range hs {
		h.Close()
	}
	if f.nfreed() != 1 {
		t.Fatalf("%d freed, want 1", f.nfreed())
	}
}

func TestModulesFailedLoadNotKept(t *testing.T) {
	bad := errors.New("bad module")
	f := &fakeEngine{gate: make(chan struct{}), fail: bad}
	tab := newTable(t, f, wasi.EngineConfig{})
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := tab.Load(context.Background(), []byte("a"))
			errs <- err
		}()
	}
	for f.loads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(f.gate)
	for range 2 {
		if err := <-errs; !errors.Is(err, bad) {
			t.Fatalf("err %v, want %v", err, bad)
		}
	}
	f.fail = nil
	h := mustLoad(t, tab, "a")
	if h.Info().Source != wasi.LoadCompiled {
		t.Fatalf("after a failed load: %s", h.Info().Source)
	}
	h.Close()
	if f.nfreed() != 1 {
		t.Fatalf("%d freed, want 1 (a failed load has nothing to free)", f.nfreed())
	}
}

func TestModulesTouchOnMemoryHit(t *testing.T) {
	dir := t.TempDir()
	f := &fakeEngine{}
	tab := newTable(t, f, wasi.EngineConfig{CacheDir: dir})
	// An entry for "a", as an engine's load would have written it.
	c, err := modcache.Open(dir, 0, "fake/v1")
	if err != nil {
		t.Fatal(err)
	}
	digest := modcache.Digest([]byte("a"))
	d, err := c.Prepare(digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := modcache.WriteFile(d, "m", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(digest); err != nil {
		t.Fatal(err)
	}
	meta := filepath.Join(d, "meta")
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(meta, old, old); err != nil {
		t.Fatal(err)
	}
	h1 := mustLoad(t, tab, "a")
	defer h1.Close()
	h2 := mustLoad(t, tab, "a")
	defer h2.Close()
	st, err := os.Stat(meta)
	if err != nil {
		t.Fatal(err)
	}
	if !st.ModTime().After(old.Add(time.Minute)) {
		t.Fatal("a Load from memory did not mark the cache entry used")
	}
}

// fakeInst runs until killed (or, with ready set, fails its start).
type fakeInst struct {
	m      *Entry[*fakeMod]
	kill   chan struct{}
	once   sync.Once
	done   chan struct{}
	failed error
}

func newFakeInst(m *Entry[*fakeMod]) *fakeInst {
	return &fakeInst{m: m, kill: make(chan struct{}), done: make(chan struct{})}
}

func (i *fakeInst) Kill()                 { i.once.Do(func() { close(i.kill) }) }
func (i *fakeInst) Done() <-chan struct{} { return i.done }
func (i *fakeInst) Result() wasi.Result   { <-i.done; return Killed() }
func (i *fakeInst) Stats() wasi.Stats     { return wasi.Stats{} }
func (i *fakeInst) Run(ready chan<- error) {
	defer close(i.done)
	defer i.m.Finished(i)
	ready <- i.failed
	if i.failed == nil {
		<-i.kill
	}
}

func TestModulesStartHoldsTheModule(t *testing.T) {
	f := &fakeEngine{}
	tab := newTable(t, f, wasi.EngineConfig{})
	h := mustLoad(t, tab, "a")
	var made *fakeInst
	inst, err := h.Start(context.Background(), &wasi.RunConfig{}, nil, func(m *Entry[*fakeMod]) Instance {
		made = newFakeInst(m)
		return made
	})
	if err != nil {
		t.Fatal(err)
	}
	if inst != Instance(made) {
		t.Fatal("Start did not return the instance it made")
	}
	h.Close()
	if f.nfreed() != 0 {
		t.Fatal("freed while an instance runs")
	}
	inst.Kill()
	<-inst.Done()
	if f.nfreed() != 1 {
		t.Fatal("not freed at the end of the last instance")
	}
	// A closed handle starts nothing.
	if _, err := h.Start(context.Background(), &wasi.RunConfig{}, nil, nil); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("start of a closed module: %v", err)
	}
}

func TestModulesStartFailures(t *testing.T) {
	f := &fakeEngine{}
	tab := newTable(t, f, wasi.EngineConfig{})
	h := mustLoad(t, tab, "a")
	cfg := &wasi.RunConfig{}
	bad := errors.New("over the limit")
	if _, err := h.Start(context.Background(), cfg, func(*fakeMod) error { return bad }, nil); err != bad {
		t.Fatalf("check's error: %v", err)
	}
	preopen := &wasi.RunConfig{Preopens: []wasi.Preopen{{Host: t.TempDir(), Guest: "relative"}}}
	if _, err := h.Start(context.Background(), preopen, nil, nil); !errdefs.IsInvalidArgument(err) || !strings.HasPrefix(err.Error(), "fake: ") {
		t.Fatalf("bad preopen: %v", err)
	}
	failed := errors.New("instantiate")
	if _, err := h.Start(context.Background(), cfg, nil, func(m *Entry[*fakeMod]) Instance {
		i := newFakeInst(m)
		i.failed = failed
		return i
	}); err != failed {
		t.Fatalf("run's error: %v", err)
	}
	// Every failed Start gave its reference back.
	h.Close()
	if f.nfreed() != 1 {
		t.Fatalf("%d freed after failed starts and Close, want 1", f.nfreed())
	}
}

func TestModulesClose(t *testing.T) {
	f := &fakeEngine{}
	tab := newTable(t, f, wasi.EngineConfig{})
	h := mustLoad(t, tab, "a")
	var insts []wasi.Instance
	for range 3 {
		inst, err := h.Start(context.Background(), &wasi.RunConfig{}, nil, func(m *Entry[*fakeMod]) Instance { return newFakeInst(m) })
		if err != nil {
			t.Fatal(err)
		}
		insts = append(insts, inst)
	}
	afters := 0
	if err := tab.Close(func() { afters++ }); err != nil {
		t.Fatal(err)
	}
	for _, inst := range insts {
		select {
		case <-inst.Done():
		default:
			t.Fatal("Close returned before an instance ended")
		}
	}
	if afters != 1 || f.nfreed() != 1 {
		t.Fatalf("after ran %d times, %d freed; want 1, 1", afters, f.nfreed())
	}
	// Nothing is freed twice, and a second Close does nothing.
	h.Close()
	if err := tab.Close(func() { afters++ }); err != nil || afters != 1 || f.nfreed() != 1 {
		t.Fatalf("second Close: %v, after %d, %d freed", err, afters, f.nfreed())
	}
	if _, err := tab.Load(context.Background(), []byte("a")); err == nil {
		t.Fatal("Load after Close")
	}
	h2 := &Handle[*fakeMod]{Entry: h.Entry}
	if _, err := h2.Start(context.Background(), &wasi.RunConfig{}, nil, nil); err == nil {
		t.Fatal("Start after Close")
	}
}
