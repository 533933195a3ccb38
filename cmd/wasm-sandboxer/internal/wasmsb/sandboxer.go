package wasmsb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// Sandboxer describes the wasm sandboxer to the daemon, with the engines
// compiled into the binary.
func Sandboxer(factories map[string]wasi.New) daemon.Sandboxer {
	known := make([]string, 0, len(factories))
	for k := range factories {
		known = append(known, k)
	}
	sort.Strings(known)
	return daemon.Sandboxer{
		Name:      Name,
		NewConfig: func() daemon.Config { return DefaultConfig(known...) },
		Build: func(env *daemon.Env, c daemon.Config) (sandbox.Driver, task.Backend, error) {
			return build(env, c.(*Config), factories)
		},
		ShimDelete: shimDelete,
	}
}

// engines holds the engines in use, built lazily: a daemon configured for
// two engines whose pods all use one never builds the other.
type engines struct {
	cfg       *Config
	factories map[string]wasi.New
	mu        sync.Mutex
	built     map[string]wasi.Engine
}

// get returns the engine of that name, building it on first use.
func (e *engines) get(ctx context.Context, name string) (wasi.Engine, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if eng, ok := e.built[name]; ok {
		return eng, nil
	}
	f, ok := e.factories[name]
	if !ok {
		return nil, fmt.Errorf("engine %q: not in this binary", name)
	}
	ec := wasi.EngineConfig{CacheDir: e.cfg.CacheDir(name), CacheMaxBytes: e.cfg.Cache.MaxBytes}
	if ec.CacheDir != "" {
		if err := os.MkdirAll(ec.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("engine %s: module cache: %w", name, err)
		}
	}
	eng, err := f(ec)
	if err != nil {
		return nil, fmt.Errorf("engine %s: %w", name, err)
	}
	log.G(ctx).WithFields(log.Fields{"engine": name, "cache_dir": ec.CacheDir, "cache_max_bytes": ec.CacheMaxBytes}).Info("engine ready")
	e.built[name] = eng
	return eng, nil
}

func build(env *daemon.Env, cfg *Config, factories map[string]wasi.New) (sandbox.Driver, task.Backend, error) {
	if err := os.MkdirAll(filepath.Join(env.Dir), 0o700); err != nil {
		return nil, nil, err
	}
	engs := &engines{cfg: cfg, factories: factories, built: map[string]wasi.Engine{}}
	// the default engine is built at once: a broken engine shows at start,
	// not at the first pod
	if _, err := engs.get(env.Life, cfg.Wasm.DefaultEngine); err != nil {
		return nil, nil, err
	}
	be := &backend{cfg: cfg, life: env.Life, engines: engs, mods: newModTable(),
		keep: newKeeper(time.Duration(cfg.Cache.Keep), cfg.Cache.KeepModules)}
	return &driver{env: env, cfg: cfg, engines: engs}, be, nil
}
