package wazero

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"

	"github.com/containerd/errdefs"
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
	mods *enginekit.Modules[*module]
}

// New builds a wazero engine (its compiler where wazero has one, amd64 and
// arm64; the interpreter elsewhere).
func New(cfg wasi.EngineConfig) (wasi.Engine, error) {
	mods, err := enginekit.NewModules(Name, cfg, Version+" "+runtime.GOOS+"/"+runtime.GOARCH, load, (*module).close)
	if err != nil {
		return nil, err
	}
	return &engine{mods: mods}, nil
}

func (e *engine) Name() string { return Name }

// Close kills the instances still running, waits for them (the engine's
// stores must not outlive it) and releases every module.
func (e *engine) Close() error { return e.mods.Close(nil) }

// module is one compiled module in a wazero Runtime of its own (so that its
// compilation cache can be the module's own cache entry), shared by every
// Load of the same bytes and every instance started from it.
type module struct {
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

func (e *engine) Load(ctx context.Context, wasm []byte) (wasi.Module, error) {
	h, err := e.mods.Load(ctx, wasm)
	if err != nil {
		return nil, err
	}
	return &handle{h}, nil
}

type handle struct {
	*enginekit.Handle[*module]
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
func load(c *modcache.Cache, digest string, wasm []byte) (*module, wasi.LoadSource, string, error) {
	ctx := context.Background()
	m := &module{}
	var cacheErr string
	dir, hit := "", false
	if c != nil {
		d, err := c.Lookup(digest)
		switch {
		case err == nil:
			dir, hit = d, true
		case !errors.Is(err, modcache.ErrMiss):
			cacheErr = err.Error()
		}
		if !hit {
			if d, err = c.Prepare(digest); err != nil {
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
		return nil, "", "", fmt.Errorf("wazero: wasi: %w", err)
	}
	cm, err := m.rt.CompileModule(ctx, wasm)
	if err != nil {
		m.close()
		if dir != "" {
			c.Discard(digest)
		}
		return nil, "", "", fmt.Errorf("%w: wazero: %s", wasi.ErrInvalidModule, err)
	}
	m.cm = cm
	if dir == "" {
		return m, wasi.LoadCompiled, cacheErr, nil
	}
	if hit && sameFiles(before, fileState(dir)) {
		return m, wasi.LoadDisk, "", nil
	}
	// A new entry, or one wazero did not take (it compiled and wrote
	// afresh): commit what is there now.
	if err := c.Commit(digest); err != nil && cacheErr == "" {
		cacheErr = err.Error()
	}
	return m, wasi.LoadCompiled, cacheErr, nil
}

func (h *handle) Start(ctx context.Context, cfg *wasi.RunConfig) (wasi.Instance, error) {
	return h.Handle.Start(ctx, cfg, func(m *module) error {
		if lim := cfg.MemoryLimit; lim > 0 {
			for _, md := range m.cm.ExportedMemories() {
				if uint64(md.Min())*65536 > uint64(lim) {
					return fmt.Errorf("wazero: the module's initial memory (%d pages) exceeds the limit of %d bytes: %w", md.Min(), lim, errdefs.ErrInvalidArgument)
				}
			}
		}
		return nil
	}, func(m *enginekit.Entry[*module]) enginekit.Instance { return newInstance(m, cfg) })
}
