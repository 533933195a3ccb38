package wasmtime

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	wt "github.com/bytecodealliance/wasmtime-go/v39"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/modcache"
	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi/enginekit"
)

// Name is the engine's name in the sandboxer's configuration.
const Name = "wasmtime"

// Version is the wasmtime-go release linked in; part of the cache tag.
const Version = "wasmtime-go/v39.0.1"

const cacheFile = "module.cwasm"

var _ wasi.New = New

type engine struct {
	eng    *wt.Engine
	linker *wt.Linker // WASI with the blocking calls shadowed
	orig   *wt.Linker // plain WASI: the originals the shadows call
	tramp  *wt.Module // calls the originals with the guest's memory
	cache  *modcache.Cache

	mu     sync.Mutex
	mods   map[string]*module
	insts  map[*instance]struct{} // running, for Close
	closed bool
}

// New builds a wasmtime engine. Modules are compiled with Cranelift and
// epoch interruption; see the package doc for the kill design.
func New(cfg wasi.EngineConfig) (wasi.Engine, error) {
	if !storeLayoutOK {
		return nil, errStoreLayout
	}
	c := wt.NewConfig()
	c.SetEpochInterruption(true)
	e := &engine{eng: wt.NewEngineWithConfig(c), mods: map[string]*module{}, insts: map[*instance]struct{}{}}
	if cfg.CacheDir != "" {
		cache, err := modcache.Open(cfg.CacheDir, cfg.CacheMaxBytes, Version+" "+runtime.GOOS+"/"+runtime.GOARCH+" epoch")
		if err != nil {
			return nil, err
		}
		e.cache = cache
	}
	e.orig = wt.NewLinker(e.eng)
	if err := e.orig.DefineWasi(); err != nil {
		return nil, fmt.Errorf("wasmtime: define wasi: %w", err)
	}
	tb, err := wt.Wat2Wasm(trampolineWAT())
	if err == nil {
		e.tramp, err = wt.NewModule(e.eng, tb)
	}
	if err != nil {
		return nil, fmt.Errorf("wasmtime: wasi trampoline: %w", err)
	}
	e.linker = wt.NewLinker(e.eng)
	if err := e.linker.DefineWasi(); err != nil {
		return nil, fmt.Errorf("wasmtime: define wasi: %w", err)
	}
	e.linker.AllowShadowing(true)
	if err := defineShadows(e.linker); err != nil {
		return nil, fmt.Errorf("wasmtime: shadow wasi: %w", err)
	}
	return e, nil
}

func (e *engine) Name() string { return Name }

// closeWait bounds how long Close waits for the instances it killed.
const closeWait = 5 * time.Second

// Close kills the instances still running, waits for them (the engine's
// stores must not outlive it) and releases every module.
func (e *engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	running := make([]*instance, 0, len(e.insts))
	for i := range e.insts {
		running = append(running, i)
	}
	e.mu.Unlock()
	for _, i := range running {
		i.Kill()
	}
	deadline := time.After(closeWait)
	for _, i := range running {
		select {
		case <-i.done:
		case <-deadline:
			return fmt.Errorf("%s: close: instances still running %v after Kill", Name, closeWait)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for d, m := range e.mods {
		if m.wm != nil {
			m.wm.Close()
		}
		delete(e.mods, d)
	}
	e.linker.Close()
	e.orig.Close()
	e.tramp.Close()
	e.eng.Close()
	return nil
}

// module is one compiled module, shared by every Load of the same bytes and
// every instance started from it; refs counts both.
type module struct {
	e      *engine
	digest string
	ready  chan struct{}
	wm     *wt.Module
	err    error
	refs   int
}

// handle is what one Load returns.
type handle struct {
	*module
	info   wasi.LoadInfo
	once   sync.Once
	closed atomic.Bool
}

func (h *handle) Digest() string      { return h.digest }
func (h *handle) Info() wasi.LoadInfo { return h.info }
func (h *handle) Close() error {
	h.once.Do(func() {
		h.closed.Store(true)
		h.e.release(h.module)
	})
	return nil
}

func (e *engine) release(m *module) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	if e.mods[m.digest] == m {
		delete(e.mods, m.digest)
	}
	if m.wm != nil && !e.closed {
		m.wm.Close()
	}
}

func (e *engine) Load(ctx context.Context, wasm []byte) (wasi.Module, error) {
	start := time.Now()
	digest := modcache.Digest(wasm)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, errors.New("wasmtime: engine closed")
	}
	if m, ok := e.mods[digest]; ok {
		m.refs++
		e.mu.Unlock()
		<-m.ready
		if m.err != nil {
			e.release(m)
			return nil, m.err
		}
		if e.cache != nil {
			e.cache.Touch(digest)
		}
		return &handle{module: m, info: wasi.LoadInfo{Source: wasi.LoadMemory, Duration: time.Since(start)}}, nil
	}
	m := &module{e: e, digest: digest, ready: make(chan struct{}), refs: 1}
	e.mods[digest] = m
	e.mu.Unlock()

	info := wasi.LoadInfo{}
	m.wm, info.Source, info.CacheError, m.err = e.load(digest, wasm)
	close(m.ready)
	if m.err != nil {
		e.release(m)
		return nil, m.err
	}
	info.Duration = time.Since(start)
	l := log.G(ctx).WithFields(log.Fields{"engine": Name, "digest": digest, "source": info.Source, "duration": info.Duration})
	if info.CacheError != "" {
		l = l.WithField("cache_error", info.CacheError)
	}
	l.Debug("wasm module loaded")
	return &handle{module: m, info: info}, nil
}

// load deserializes the module from the cache or compiles it (and writes
// it to the cache).
func (e *engine) load(digest string, wasm []byte) (*wt.Module, wasi.LoadSource, string, error) {
	var cacheErr []string
	if e.cache != nil {
		dir, err := e.cache.Lookup(digest)
		if err == nil {
			wm, derr := wt.NewModuleDeserializeFile(e.eng, filepath.Join(dir, cacheFile))
			if derr == nil {
				return wm, wasi.LoadDisk, "", nil
			}
			e.cache.Discard(digest)
			cacheErr = append(cacheErr, fmt.Sprintf("deserialize: %v", derr))
		} else if !errors.Is(err, modcache.ErrMiss) {
			cacheErr = append(cacheErr, err.Error())
		}
	}
	wm, err := wt.NewModule(e.eng, wasm)
	if err != nil {
		return nil, "", "", fmt.Errorf("%w: wasmtime: %s", wasi.ErrInvalidModule, err)
	}
	if e.cache != nil {
		if err := e.store(digest, wm); err != nil {
			cacheErr = append(cacheErr, err.Error())
		}
	}
	msg := ""
	if len(cacheErr) > 0 {
		msg = fmt.Sprint(cacheErr)
	}
	return wm, wasi.LoadCompiled, msg, nil
}

func (e *engine) store(digest string, wm *wt.Module) error {
	b, err := wm.Serialize()
	if err != nil {
		return fmt.Errorf("serialize: %w", err)
	}
	dir, err := e.cache.Prepare(digest)
	if err != nil {
		return err
	}
	if err := modcache.WriteFile(dir, cacheFile, b); err != nil {
		e.cache.Discard(digest)
		return fmt.Errorf("module cache: %w", err)
	}
	return e.cache.Commit(digest)
}

func (m *module) acquire() error {
	m.e.mu.Lock()
	defer m.e.mu.Unlock()
	if m.e.closed {
		return errors.New("wasmtime: engine closed")
	}
	m.refs++
	return nil
}

func (h *handle) Start(ctx context.Context, cfg *wasi.RunConfig) (wasi.Instance, error) {
	if h.closed.Load() {
		return nil, fmt.Errorf("wasmtime: start of a closed module: %w", errdefs.ErrFailedPrecondition)
	}
	if err := h.acquire(); err != nil {
		return nil, err
	}
	if err := enginekit.CheckPreopens(cfg); err != nil {
		h.e.release(h.module)
		return nil, fmt.Errorf("wasmtime: %w", err)
	}
	i := newInstance(h.module, cfg)
	h.e.mu.Lock()
	if h.e.closed {
		h.e.mu.Unlock()
		h.e.release(h.module)
		return nil, fmt.Errorf("%s: engine closed: %w", Name, errdefs.ErrFailedPrecondition)
	}
	h.e.insts[i] = struct{}{}
	h.e.mu.Unlock()
	ready := make(chan error, 1)
	go i.run(ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	log.G(ctx).WithFields(log.Fields{"engine": Name, "digest": h.digest}).Debug("wasm instance started")
	return i, nil
}
