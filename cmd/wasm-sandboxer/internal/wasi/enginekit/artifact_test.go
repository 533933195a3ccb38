package enginekit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/modcache"
	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
)

// codec is an Artifact whose "compiled module" is the wasm text upper-cased
// and whose artifact is that text.
type codec struct {
	compiles, deserializes int
	badSerialize           bool
	badArtifact            bool // Deserialize refuses what it reads
}

var errNotModule = errors.New("not a module")

func (c *codec) artifact() Artifact[string] {
	return Artifact[string]{
		File: "module.bin",
		Compile: func(wasm []byte) (string, error) {
			c.compiles++
			if string(wasm) == "bad" {
				return "", errNotModule
			}
			return strings.ToUpper(string(wasm)), nil
		},
		Serialize: func(m string) ([]byte, error) {
			if c.badSerialize {
				return nil, errors.New("no bytes")
			}
			return []byte(m), nil
		},
		Deserialize: func(path string) (string, error) {
			c.deserializes++
			b, err := os.ReadFile(path)
			if err == nil && c.badArtifact {
				err = errors.New("incompatible artifact")
			}
			return string(b), err
		},
	}
}

func openCache(t *testing.T, dir string) *modcache.Cache {
	t.Helper()
	c, err := modcache.Open(dir, 0, "codec/v1")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestArtifactCompileThenDisk(t *testing.T) {
	cache := openCache(t, t.TempDir())
	c := &codec{}
	a := c.artifact()
	wasm := []byte("hello")
	digest := modcache.Digest(wasm)
	m, src, cerr, err := a.Load(cache, digest, wasm)
	if err != nil || m != "HELLO" || src != wasi.LoadCompiled || cerr != "" {
		t.Fatalf("cold: %q %s %q %v", m, src, cerr, err)
	}
	dir, err := cache.Lookup(digest)
	if err != nil {
		t.Fatalf("no entry after a compile: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, a.File)); string(b) != "HELLO" {
		t.Fatalf("artifact %q", b)
	}
	m, src, cerr, err = a.Load(cache, digest, wasm)
	if err != nil || m != "HELLO" || src != wasi.LoadDisk || cerr != "" {
		t.Fatalf("warm: %q %s %q %v", m, src, cerr, err)
	}
	if c.compiles != 1 || c.deserializes != 1 {
		t.Fatalf("%d compiles, %d deserializes; want 1, 1", c.compiles, c.deserializes)
	}
}

func TestArtifactBadEntryRecompiled(t *testing.T) {
	cache := openCache(t, t.TempDir())
	c := &codec{}
	a := c.artifact()
	wasm := []byte("hello")
	digest := modcache.Digest(wasm)
	if _, _, _, err := a.Load(cache, digest, wasm); err != nil {
		t.Fatal(err)
	}
	c.badArtifact = true
	m, src, cerr, err := a.Load(cache, digest, wasm)
	if err != nil || m != "HELLO" || src != wasi.LoadCompiled || !strings.Contains(cerr, "deserialize: incompatible artifact") {
		t.Fatalf("bad artifact: %q %s %q %v", m, src, cerr, err)
	}
	// The entry was written again, and is good.
	c.badArtifact = false
	if _, src, _, err := a.Load(cache, digest, wasm); err != nil || src != wasi.LoadDisk {
		t.Fatalf("after the rewrite: %s %v", src, err)
	}
	if c.compiles != 2 {
		t.Fatalf("%d compiles, want 2", c.compiles)
	}
}

func TestArtifactCacheFailuresAreNotErrors(t *testing.T) {
	cache := openCache(t, t.TempDir())
	c := &codec{badSerialize: true}
	a := c.artifact()
	wasm := []byte("hello")
	digest := modcache.Digest(wasm)
	m, src, cerr, err := a.Load(cache, digest, wasm)
	if err != nil || m != "HELLO" || src != wasi.LoadCompiled || !strings.Contains(cerr, "serialize: no bytes") {
		t.Fatalf("serialize failure: %q %s %q %v", m, src, cerr, err)
	}
	if _, err := cache.Lookup(digest); !errors.Is(err, modcache.ErrMiss) {
		t.Fatalf("an entry after a failed serialize: %v", err)
	}
}

func TestArtifactCompileError(t *testing.T) {
	c := &codec{}
	a := c.artifact()
	for _, cache := range []*modcache.Cache{nil, openCache(t, t.TempDir())} {
		wasm := []byte("bad")
		if _, _, _, err := a.Load(cache, modcache.Digest(wasm), wasm); err != errNotModule {
			t.Fatalf("compile error: %v, want Compile's own", err)
		}
	}
}

func TestArtifactNoCache(t *testing.T) {
	c := &codec{}
	wasm := []byte("hello")
	m, src, cerr, err := c.artifact().Load(nil, modcache.Digest(wasm), wasm)
	if err != nil || m != "HELLO" || src != wasi.LoadCompiled || cerr != "" || c.deserializes != 0 {
		t.Fatalf("no cache: %q %s %q %v", m, src, cerr, err)
	}
}
