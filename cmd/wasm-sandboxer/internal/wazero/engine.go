package wazero

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	wz "github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/modcache"
	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi/enginekit"
)

// Name is the engine's name in the sandboxer's configuration.
const Name = "wazero"

// Version is the wazero release linked in; part of the cache tag.
const Version = "wazero/v1.12.0"

var _ wasi.New = New

type engine struct {
	cache *modcache.Cache

	mu     sync.Mutex
	mods   map[string]*module
	insts  map[*instance]struct{} // running, for Close
	closed bool
}

// New builds a wazero engine (its compiler where wazero has one, amd64 and
// arm64; the interpreter elsewhere).
func New(cfg wasi.EngineConfig) (wasi.Engine, error) {
	e := &engine{mods: map[string]*module{}, insts: map[*instance]struct{}{}}
	if cfg.CacheDir != "" {
		cache, err := modcache.Open(cfg.CacheDir, cfg.CacheMaxBytes, Version+" "+runtime.GOOS+"/"+runtime.GOARCH)
		if err != nil {
			return nil, err
		}
		e.cache = cache
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
		m.close()
		delete(e.mods, d)
	}
	return nil
}

// module is one compiled module in a wazero Runtime of its own (so that its
// compilation cache can be the module's own cache entry), shared by every
// Load of the same bytes and every instance started from it.
type module struct {
	e      *engine
	digest string
	ready  chan struct{}
	err    error
	refs   int

	rt wz.Runtime
	cc wz.CompilationCache
	cm wz.CompiledModule
}

func (m *module) close() {
	ctx := context.Background()
	if m.rt != nil {
		m.rt.Close(ctx)
	}
	if m.cc != nil {
		m.cc.Close(ctx)
	}
}

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
	if !e.closed {
		m.close()
	}
}

func (m *module) acquire() error {
	m.e.mu.Lock()
	defer m.e.mu.Unlock()
	if m.e.closed {
		return errors.New("wazero: engine closed")
	}
	m.refs++
	return nil
}

func (e *engine) Load(ctx context.Context, wasm []byte) (wasi.Module, error) {
	start := time.Now()
	digest := modcache.Digest(wasm)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, errors.New("wazero: engine closed")
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

	var info wasi.LoadInfo
	info.Source, info.CacheError, m.err = m.load(wasm)
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

// fileState is what a cache directory held: to tell whether wazero wrote
// (compiled) or only read its file cache.
func fileState(dir string) map[string]string {
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if st, err := d.Info(); err == nil {
				out[p] = fmt.Sprint(st.Size(), st.ModTime().UnixNano())
			}
		}
		return nil
	})
	return out
}

func sameFiles(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// load compiles the module in a new Runtime whose compilation cache is the
// module's cache entry: wazero reads its compiled code back from a good
// entry, and writes it into a new one.
func (m *module) load(wasm []byte) (wasi.LoadSource, string, error) {
	ctx := context.Background()
	var cacheErr string
	dir, hit := "", false
	if c := m.e.cache; c != nil {
		d, err := c.Lookup(m.digest)
		switch {
		case err == nil:
			dir, hit = d, true
		case !errors.Is(err, modcache.ErrMiss):
			cacheErr = err.Error()
		}
		if !hit {
			if d, err = c.Prepare(m.digest); err != nil {
				cacheErr = err.Error()
			} else {
				dir = d
			}
		}
	}
	cfg := wz.NewRuntimeConfig().WithCloseOnContextDone(true)
	var before map[string]string
	if dir != "" {
		cc, err := wz.NewCompilationCacheWithDir(dir)
		if err != nil {
			cacheErr = err.Error()
			dir = ""
		} else {
			m.cc = cc
			cfg = cfg.WithCompilationCache(cc)
			before = fileState(dir)
		}
	}
	m.rt = wz.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, m.rt); err != nil {
		m.close()
		return "", "", fmt.Errorf("wazero: wasi: %w", err)
	}
	cm, err := m.rt.CompileModule(ctx, wasm)
	if err != nil {
		m.close()
		if dir != "" {
			m.e.cache.Discard(m.digest)
		}
		return "", "", fmt.Errorf("%w: wazero: %s", wasi.ErrInvalidModule, err)
	}
	m.cm = cm
	if dir == "" {
		return wasi.LoadCompiled, cacheErr, nil
	}
	if hit && sameFiles(before, fileState(dir)) {
		return wasi.LoadDisk, "", nil
	}
	// A new entry, or one wazero did not take (it compiled and wrote
	// afresh): commit what is there now.
	if err := m.e.cache.Commit(m.digest); err != nil && cacheErr == "" {
		cacheErr = err.Error()
	}
	return wasi.LoadCompiled, cacheErr, nil
}

func (h *handle) Start(ctx context.Context, cfg *wasi.RunConfig) (wasi.Instance, error) {
	if h.closed.Load() {
		return nil, fmt.Errorf("wazero: start of a closed module: %w", errdefs.ErrFailedPrecondition)
	}
	if err := h.acquire(); err != nil {
		return nil, err
	}
	if err := enginekit.CheckPreopens(cfg); err != nil {
		h.e.release(h.module)
		return nil, fmt.Errorf("wazero: %w", err)
	}
	if lim := cfg.MemoryLimit; lim > 0 {
		for _, md := range h.cm.ExportedMemories() {
			if uint64(md.Min())*65536 > uint64(lim) {
				h.e.release(h.module)
				return nil, fmt.Errorf("wazero: the module's initial memory (%d pages) exceeds the limit of %d bytes: %w", md.Min(), lim, errdefs.ErrInvalidArgument)
			}
		}
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
