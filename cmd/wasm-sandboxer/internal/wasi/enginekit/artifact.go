package enginekit

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/modcache"
	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
)

// Artifact is the disk side of an engine whose compiled module serializes
// to bytes (wasmtime; an AOT compiler's output): a cache entry holds them in
// one file, File, read back by Deserialize. Its Load is the engine's
// LoadFunc.
type Artifact[M any] struct {
	// File is the artifact's name in the entry directory.
	File string
	// Compile compiles the wasm bytes; its error is Load's as it is (it
	// wraps wasi.ErrInvalidModule for bytes that are not a module).
	Compile func(wasm []byte) (M, error)
	// Serialize returns the bytes Deserialize reads back.
	Serialize func(M) ([]byte, error)
	// Deserialize loads the module from the artifact at path, in an entry
	// modcache has verified.
	Deserialize func(path string) (M, error)
}

// Load deserializes the module from c's entry for digest or compiles it
// (and writes a new entry). An entry that does not deserialize is removed
// and the module compiled; cache failures are reported in cacheErr, not as
// an error.
func (a Artifact[M]) Load(c *modcache.Cache, digest string, wasm []byte) (M, wasi.LoadSource, string, error) {
	var cacheErr []string
	if c != nil {
		dir, err := c.Lookup(digest)
		if err == nil {
			m, derr := a.Deserialize(filepath.Join(dir, a.File))
			if derr == nil {
				return m, wasi.LoadDisk, "", nil
			}
			c.Discard(digest)
			cacheErr = append(cacheErr, fmt.Sprintf("deserialize: %v", derr))
		} else if !errors.Is(err, modcache.ErrMiss) {
			cacheErr = append(cacheErr, err.Error())
		}
	}
	m, err := a.Compile(wasm)
	if err != nil {
		var zero M
		return zero, "", "", err
	}
	if c != nil {
		if err := a.store(c, digest, m); err != nil {
			cacheErr = append(cacheErr, err.Error())
		}
	}
	msg := ""
	if len(cacheErr) > 0 {
		msg = fmt.Sprint(cacheErr)
	}
	return m, wasi.LoadCompiled, msg, nil
}

func (a Artifact[M]) store(c *modcache.Cache, digest string, m M) error {
	b, err := a.Serialize(m)
	if err != nil {
		return fmt.Errorf("serialize: %w", err)
	}
	dir, err := c.Prepare(digest)
	if err != nil {
		return err
	}
	if err := modcache.WriteFile(dir, a.File, b); err != nil {
		c.Discard(digest)
		return fmt.Errorf("module cache: %w", err)
	}
	return c.Commit(digest)
}
