package wasmsb

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/config"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
)

// Name is the sandboxer's short name.
const Name = "wasm"

// Runtime handlers (= containerd proxy plugin names) served by default.
const (
	HandlerWasmtime = "magnetar-wasm"
	HandlerWazero   = "magnetar-wasm-wazero"
)

// Config is the wasm sandboxer's configuration (/etc/magnetar/wasm.toml).
// It names nothing on the host that must exist (the engines are compiled in,
// cache.dir is made at start-up), so it has no CheckHost.
type Config struct {
	config.Daemon
	// Engines maps a containerd proxy plugin name (the `sandboxer` of a CRI
	// runtime handler, sent with every Controller.Create) to an engine.
	Engines map[string]string `toml:"engines"`
	Wasm    WasmConfig        `toml:"wasm"`
	Cache   CacheConfig       `toml:"cache"`

	// known is the set of engines compiled into the binary.
	known map[string]bool
}

// WasmConfig holds the defaults for modules.
type WasmConfig struct {
	// DefaultEngine runs the pods of a sandboxer name missing from Engines
	// (e.g. `ctr sandbox run`, which names none).
	DefaultEngine string `toml:"default_engine"`
	// MaxModuleBytes bounds the size of a module file read from a rootfs.
	MaxModuleBytes int64 `toml:"max_module_bytes"`
}

// CacheConfig is the compiled-module cache.
type CacheConfig struct {
	// Dir holds one subdirectory per engine; "" is <dir>/modcache.
	Dir string `toml:"dir"`
	// MaxBytes bounds each engine's cache (least recently used entries are
	// evicted past it); 0 is the engine's default (1 GiB).
	MaxBytes int64 `toml:"max_bytes"`
	// Disabled compiles every module at each container start.
	Disabled bool `toml:"disabled"`
	// Keep is how long the compiled module of a container that ended
	// stays in memory for the next container of the same image (0: closed
	// at once).
	Keep config.Duration `toml:"keep"`
	// KeepSeconds is the former key of Keep, in seconds (nil: not set).
	// Deprecated: read for one release, with a warning; Migrate moves it to
	// Keep.
	KeepSeconds *int64 `toml:"keep_seconds"`
	// KeepModules bounds how many such modules stay in memory.
	KeepModules int `toml:"keep_modules"`
}

// DefaultConfig is the configuration with every default, for a binary that
// has the engines named in known.
func DefaultConfig(known ...string) *Config {
	c := &Config{
		Daemon:  config.DefaultDaemon(Name),
		Engines: map[string]string{HandlerWasmtime: "wasmtime", HandlerWazero: "wazero"},
		Wasm:    WasmConfig{DefaultEngine: "wasmtime", MaxModuleBytes: 256 << 20},
		Cache:   CacheConfig{Keep: config.Duration(5 * time.Minute), KeepModules: 32},
		known:   map[string]bool{},
	}
	for _, k := range known {
		c.known[k] = true
	}
	return c
}

// Common returns the keys every sandboxer has.
func (c *Config) Common() *config.Daemon { return &c.Daemon }

// CacheDir is the compiled-module cache directory of one engine ("" when
// the cache is disabled).
func (c *Config) CacheDir(engine string) string {
	if c.Cache.Disabled {
		return ""
	}
	dir := c.Cache.Dir
	if dir == "" {
		dir = filepath.Join(c.Dir, "modcache")
	}
	return filepath.Join(dir, engine)
}

// EngineFor is the engine that runs the pods of a sandboxer name.
func (c *Config) EngineFor(sandboxer string) string {
	if e, ok := c.Engines[sandboxer]; ok {
		return e
	}
	return c.Wasm.DefaultEngine
}

// UsedEngines lists every engine the configuration refers to, sorted.
func (c *Config) UsedEngines() []string {
	set := map[string]bool{c.Wasm.DefaultEngine: true}
	for _, e := range c.Engines {
		set[e] = true
	}
	out := make([]string, 0, len(set))
	for e := range set {
		out = append(out, e)
	}
	sort.Strings(out)
	return out
}

func (c *Config) knownList() string {
	var ks []string
	for k := range c.known {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	errs = append(errs, c.Daemon.Validate())
	names := make([]string, 0, len(c.Engines))
	for h := range c.Engines {
		names = append(names, h)
	}
	sort.Strings(names)
	for _, h := range names {
		e := c.Engines[h]
		if h == "" {
			errs = append(errs, fmt.Errorf("engines: a sandboxer name must not be empty"))
		}
		if !c.known[e] {
			errs = append(errs, fmt.Errorf("engines.%s = %q: unknown engine (this binary has: %s)", h, e, c.knownList()))
		}
	}
	if !c.known[c.Wasm.DefaultEngine] {
		errs = append(errs, fmt.Errorf("wasm.default_engine = %q: unknown engine (this binary has: %s)", c.Wasm.DefaultEngine, c.knownList()))
	}
	if c.Wasm.MaxModuleBytes <= 0 {
		errs = append(errs, fmt.Errorf("wasm.max_module_bytes = %d: must be positive", c.Wasm.MaxModuleBytes))
	}
	if c.Cache.Dir != "" && !filepath.IsAbs(c.Cache.Dir) {
		errs = append(errs, fmt.Errorf("cache.dir = %q: must be an absolute path", c.Cache.Dir))
	}
	if c.Cache.Keep < 0 {
		errs = append(errs, fmt.Errorf("cache.keep = %q: must not be negative", c.Cache.Keep))
	}
	if c.Cache.KeepModules < 0 {
		errs = append(errs, fmt.Errorf("cache.keep_modules = %d: must not be negative", c.Cache.KeepModules))
	}
	if c.Cache.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("cache.max_bytes = %d: must not be negative", c.Cache.MaxBytes))
	}
	return config.Join(errs...)
}

// Migrate moves the deprecated cache.keep_seconds to cache.keep.
func (c *Config) Migrate(defined func(key ...string) bool) ([]config.Warning, error) {
	if c.Cache.KeepSeconds == nil {
		return nil, nil
	}
	s := *c.Cache.KeepSeconds
	c.Cache.KeepSeconds = nil
	switch {
	case defined("cache", "keep"):
		return nil, fmt.Errorf("cache.keep_seconds and cache.keep are both set: keep only cache.keep (keep_seconds is deprecated)")
	case s < 0:
		return nil, fmt.Errorf("cache.keep_seconds = %d: must not be negative", s)
	case s > math.MaxInt64/int64(time.Second):
		return nil, fmt.Errorf("cache.keep_seconds = %d: out of range", s)
	}
	c.Cache.Keep = config.Duration(time.Duration(s) * time.Second)
	return []config.Warning{{Key: "cache.keep_seconds", Msg: fmt.Sprintf(
		"deprecated, and a later release will refuse it: write keep = %q in [cache] instead", c.Cache.Keep)}}, nil
}

var (
	_ daemon.Config   = (*Config)(nil)
	_ config.Migrator = (*Config)(nil)
)
