package wasmtime

import (
	"context"
	"fmt"
	"runtime"

	wt "github.com/bytecodealliance/wasmtime-go/v39"

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
	mods   *enginekit.Modules[*wt.Module]
}

// New builds a wasmtime engine. Modules are compiled with Cranelift and
// epoch interruption; see the package doc for the kill design.
func New(cfg wasi.EngineConfig) (wasi.Engine, error) {
	if !storeLayoutOK {
		return nil, errStoreLayout
	}
	c := wt.NewConfig()
	c.SetEpochInterruption(true)
	e := &engine{eng: wt.NewEngineWithConfig(c)}
	art := enginekit.Artifact[*wt.Module]{
		File:        cacheFile,
		Compile:     e.compile,
		Serialize:   (*wt.Module).Serialize,
		Deserialize: func(path string) (*wt.Module, error) { return wt.NewModuleDeserializeFile(e.eng, path) },
	}
	var err error
	e.mods, err = enginekit.NewModules(Name, cfg, Version+" "+runtime.GOOS+"/"+runtime.GOARCH+" epoch", art.Load, (*wt.Module).Close)
	if err != nil {
		return nil, err
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

// Close kills the instances still running, waits for them (the engine's
// stores must not outlive it) and releases every module.
func (e *engine) Close() error {
	return e.mods.Close(func() {
		e.linker.Close()
		e.orig.Close()
		e.tramp.Close()
		e.eng.Close()
	})
}

func (e *engine) compile(wasm []byte) (*wt.Module, error) {
	wm, err := wt.NewModule(e.eng, wasm)
	if err != nil {
		return nil, fmt.Errorf("%w: wasmtime: %s", wasi.ErrInvalidModule, err)
	}
	return wm, nil
}

func (e *engine) Load(ctx context.Context, wasm []byte) (wasi.Module, error) {
	h, err := e.mods.Load(ctx, wasm)
	if err != nil {
		return nil, err
	}
	return &handle{Handle: h, e: e}, nil
}

// handle is what one Load returns; the module it holds is shared by every
// Load of the same bytes and every instance started from it.
type handle struct {
	*enginekit.Handle[*wt.Module]
	e *engine
}

func (h *handle) Start(ctx context.Context, cfg *wasi.RunConfig) (wasi.Instance, error) {
	return h.Handle.Start(ctx, cfg, nil, func(m *enginekit.Entry[*wt.Module]) enginekit.Instance {
		return newInstance(h.e, m, cfg)
	})
}
