package enginekit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/modcache"
	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
)

// CloseWait bounds how long Modules.Close waits for the instances it killed.
const CloseWait = 5 * time.Second

// Instance is a running instance as the module table knows it.
type Instance interface {
	wasi.Instance
	// Run is the instance's goroutine. It sends nil on ready once the
	// module runs, or the error that fails Start; either way, when it ends
	// it closes Done and calls its Entry's Finished.
	Run(ready chan<- error)
}

// LoadFunc makes the compiled module for wasm, whose modcache.Digest is
// digest: from the cache c (nil when the engine has none) or compiled. It
// says where the module came from and, in cacheErr, why the cache could not
// be used (Load still succeeds). On error it leaves nothing to free.
type LoadFunc[M any] func(c *modcache.Cache, digest string, wasm []byte) (m M, src wasi.LoadSource, cacheErr string, err error)

// Modules is an engine's module table: one compiled module M per digest of
// wasm bytes, shared by every Load of those bytes and every instance started
// from it (reference counted, freed with the last), compiled once however
// many Loads ask for it at the same time; and the instances running, which
// Close kills. It is what both engines' Load, Start and Close have in
// common; the engine gives it how to make (LoadFunc) and free a module.
type Modules[M any] struct {
	name  string
	cache *modcache.Cache
	load  LoadFunc[M]
	free  func(M)

	mu     sync.Mutex
	mods   map[string]*Entry[M]
	insts  map[Instance]struct{}
	closed bool
}

// NewModules makes the table of the engine called name, and opens its
// on-disk cache when cfg has a CacheDir (tag: see modcache.Open).
func NewModules[M any](name string, cfg wasi.EngineConfig, tag string, load LoadFunc[M], free func(M)) (*Modules[M], error) {
	t := &Modules[M]{name: name, load: load, free: free, mods: map[string]*Entry[M]{}, insts: map[Instance]struct{}{}}
	if cfg.CacheDir != "" {
		c, err := modcache.Open(cfg.CacheDir, cfg.CacheMaxBytes, tag)
		if err != nil {
			return nil, err
		}
		t.cache = c
	}
	return t, nil
}

// Entry is one compiled module of the table.
type Entry[M any] struct {
	t      *Modules[M]
	digest string
	ready  chan struct{} // closed once mod or err is set
	mod    M
	err    error
	refs   int // Handles and instances
}

// Digest is the module's digest, "sha256:<hex>".
func (e *Entry[M]) Digest() string { return e.digest }

// Module is the engine's compiled module.
func (e *Entry[M]) Module() M { return e.mod }

// Finished is the end of an instance's run: it leaves the table and gives
// back the reference Start took for it.
func (e *Entry[M]) Finished(i Instance) {
	e.t.mu.Lock()
	delete(e.t.insts, i)
	e.t.mu.Unlock()
	e.t.release(e)
}

// Handle is what one Load returns: the Digest, Info and Close of a
// wasi.Module; the engine adds Start (with Handle.Start).
type Handle[M any] struct {
	*Entry[M]
	info   wasi.LoadInfo
	once   sync.Once
	closed atomic.Bool
}

// Info says how the Load found the module.
func (h *Handle[M]) Info() wasi.LoadInfo { return h.info }

// Close gives back the Load's reference; it is idempotent.
func (h *Handle[M]) Close() error {
	h.once.Do(func() {
		h.closed.Store(true)
		h.t.release(h.Entry)
	})
	return nil
}

func (t *Modules[M]) errClosed() error { return errors.New(t.name + ": engine closed") }

// Load returns the module for wasm: shared from memory when the table holds
// it (or is loading it: then it waits for that load), else made by the
// LoadFunc. A failed load is not kept: the next Load tries again.
func (t *Modules[M]) Load(ctx context.Context, wasm []byte) (*Handle[M], error) {
	start := time.Now()
	digest := modcache.Digest(wasm)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, t.errClosed()
	}
	if e, ok := t.mods[digest]; ok {
		e.refs++
		t.mu.Unlock()
		<-e.ready
		if e.err != nil {
			t.release(e)
			return nil, e.err
		}
		if t.cache != nil {
			t.cache.Touch(digest)
		}
		return &Handle[M]{Entry: e, info: wasi.LoadInfo{Source: wasi.LoadMemory, Duration: time.Since(start)}}, nil
	}
	e := &Entry[M]{t: t, digest: digest, ready: make(chan struct{}), refs: 1}
	t.mods[digest] = e
	t.mu.Unlock()

	var info wasi.LoadInfo
	e.mod, info.Source, info.CacheError, e.err = t.load(t.cache, digest, wasm)
	close(e.ready)
	if e.err != nil {
		t.release(e)
		return nil, e.err
	}
	info.Duration = time.Since(start)
	l := log.G(ctx).WithFields(log.Fields{"engine": t.name, "digest": digest, "source": info.Source, "duration": info.Duration})
	if info.CacheError != "" {
		l = l.WithField("cache_error", info.CacheError)
	}
	l.Debug("wasm module loaded")
	return &Handle[M]{Entry: e, info: info}, nil
}

func (t *Modules[M]) release(e *Entry[M]) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e.refs--
	if e.refs > 0 {
		return
	}
	if t.mods[e.digest] == e {
		delete(t.mods, e.digest)
	}
	if e.err == nil && !t.closed {
		t.free(e.mod)
	}
}

// Start is what every engine's Start does around its instance: it refuses
// a closed handle or engine, checks the preopens and then, when check is
// not nil, the module against cfg (check's error is returned as it is),
// takes the reference the instance holds, registers the instance newInst
// makes and runs it until it says it is running.
func (h *Handle[M]) Start(ctx context.Context, cfg *wasi.RunConfig, check func(M) error, newInst func(*Entry[M]) Instance) (wasi.Instance, error) {
	t := h.t
	if h.closed.Load() {
		return nil, fmt.Errorf("%s: start of a closed module: %w", t.name, errdefs.ErrFailedPrecondition)
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, t.errClosed()
	}
	h.refs++
	t.mu.Unlock()
	if err := CheckPreopens(cfg); err != nil {
		t.release(h.Entry)
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	if check != nil {
		if err := check(h.mod); err != nil {
			t.release(h.Entry)
			return nil, err
		}
	}
	i := newInst(h.Entry)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.release(h.Entry)
		return nil, fmt.Errorf("%s: engine closed: %w", t.name, errdefs.ErrFailedPrecondition)
	}
	t.insts[i] = struct{}{}
	t.mu.Unlock()
	ready := make(chan error, 1)
	go i.Run(ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	log.G(ctx).WithFields(log.Fields{"engine": t.name, "digest": h.digest}).Debug("wasm instance started")
	return i, nil
}

// Close kills the instances still running, waits for them (CloseWait at
// most: an engine's stores must not outlive it) and frees every module;
// then, with the table's lock held, it runs after (the engine's own
// resources) when not nil. Load and Start fail from the start of the first
// Close; a second Close does nothing.
func (t *Modules[M]) Close(after func()) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	running := make([]Instance, 0, len(t.insts))
	for i := range t.insts {
		running = append(running, i)
	}
	t.mu.Unlock()
	for _, i := range running {
		i.Kill()
	}
	deadline := time.After(CloseWait)
	for _, i := range running {
		select {
		case <-i.Done():
		case <-deadline:
			return fmt.Errorf("%s: close: instances still running %v after Kill", t.name, CloseWait)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for d, e := range t.mods {
		select {
		case <-e.ready:
			if e.err == nil {
				t.free(e.mod)
			}
		default: // still loading
		}
		delete(t.mods, d)
	}
	if after != nil {
		after()
	}
	return nil
}
