package modcache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func put(t *testing.T, c *Cache, wasm []byte, payload []byte) string {
	t.Helper()
	d := Digest(wasm)
	dir, err := c.Prepare(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(dir, "module.bin", payload); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestLookupCommitCorrupt(t *testing.T) {
	root := t.TempDir()
	c, err := Open(root, 0, "test v1")
	if err != nil {
		t.Fatal(err)
	}
	d := Digest([]byte("a"))
	if _, err := c.Lookup(d); !errors.Is(err, ErrMiss) {
		t.Fatalf("lookup of nothing: %v", err)
	}
	put(t, c, []byte("a"), bytes.Repeat([]byte{1}, 1000))
	dir, err := c.Lookup(d)
	if err != nil {
		t.Fatalf("lookup after commit: %v", err)
	}
	// Another engine version sees it as stale.
	c2, _ := Open(root, 0, "test v2")
	if _, err := c2.Lookup(d); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("other tag: %v", err)
	}
	if _, err := c.Lookup(d); !errors.Is(err, ErrMiss) {
		t.Fatalf("stale entry not removed: %v", err)
	}

	for name, damage := range map[string]func(p string){
		"flipped":   func(p string) { b, _ := os.ReadFile(p); b[10] ^= 0xff; os.WriteFile(p, b, 0o600) },
		"truncated": func(p string) { os.Truncate(p, 500) },
		"meta":      func(string) { os.Truncate(filepath.Join(dir, metaName), 20) },
	} {
		put(t, c, []byte("a"), bytes.Repeat([]byte{1}, 1000))
		damage(filepath.Join(dir, "module.bin"))
		if _, err := c.Lookup(d); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: lookup = %v, want ErrCorrupt", name, err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("%s: corrupt entry left behind: %v", name, err)
		}
	}
	// Uncommitted entry (crash mid-write) is a miss and is removed.
	if _, err := c.Prepare(d); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(d); !errors.Is(err, ErrMiss) {
		t.Fatalf("uncommitted: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("uncommitted entry left behind")
	}
}

func TestEvictLRU(t *testing.T) {
	root := t.TempDir()
	c, err := Open(root, 3500, "t")
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte{7}, 1000)
	base := time.Now().Add(-time.Hour)
	// used sets an entry's last use explicitly rather than sleeping
	// between steps for distinct mtimes.
	used := func(d string, minutes int) {
		dir, _ := c.entryDir(d)
		ts := base.Add(time.Duration(minutes) * time.Minute)
		if err := os.Chtimes(filepath.Join(dir, metaName), ts, ts); err != nil {
			t.Fatal(err)
		}
	}
	a := put(t, c, []byte("a"), payload)
	used(a, 1)
	b := put(t, c, []byte("b"), payload)
	used(b, 2)
	c.Touch(a) // a Load served from memory: a is now more recent than b (and c)
	used(put(t, c, []byte("c"), payload), 4)
	put(t, c, []byte("d"), payload) // over 3500: b goes first, then a
	if got := c.Size(); got > 3500 {
		t.Fatalf("size %d over the bound", got)
	}
	if _, err := c.Lookup(b); !errors.Is(err, ErrMiss) {
		t.Fatalf("least recently used entry kept: %v", err)
	}
	if _, err := c.Lookup(a); err != nil {
		t.Fatalf("touched entry evicted: %v", err)
	}
	if _, err := c.Lookup(Digest([]byte("d"))); err != nil {
		t.Fatalf("newest entry evicted: %v", err)
	}
}
