package modcache

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultMaxBytes is the bound when none is configured.
const DefaultMaxBytes = 1 << 30

const (
	metaName   = "meta"
	metaMagic  = "magnetar-modcache 1"
	tempPrefix = ".tmp-"
)

var (
	// ErrMiss is returned by Lookup when there is no entry for the digest.
	ErrMiss = errors.New("no cache entry")
	// ErrCorrupt is wrapped by Lookup when an entry failed its checks; the
	// entry has been removed.
	ErrCorrupt = errors.New("corrupt cache entry")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Digest is the content digest of wasm bytes, "sha256:<hex>".
func Digest(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Cache is one engine's cache directory. It is safe for concurrent use
// within a process; a second process on the same directory is tolerated
// (renames are atomic) but not coordinated.
type Cache struct {
	dir string
	max int64
	tag string
	mu  sync.Mutex // serialises Prepare/Commit/evict
}

// Open makes dir if needed and removes leftovers of interrupted writes.
// tag names the engine and everything its compiled code depends on (its
// version, the architecture, code-affecting settings).
func Open(dir string, maxBytes int64, tag string) (*Cache, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("module cache: %w", err)
	}
	c := &Cache{dir: dir, max: maxBytes, tag: tag}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("module cache: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
	return c, nil
}

// Dir is the cache directory.
func (c *Cache) Dir() string { return c.dir }

func (c *Cache) entryDir(digest string) (string, error) {
	hexd, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexd) != 64 {
		return "", fmt.Errorf("module cache: bad digest %q", digest)
	}
	if _, err := hex.DecodeString(hexd); err != nil {
		return "", fmt.Errorf("module cache: bad digest %q", digest)
	}
	return filepath.Join(c.dir, hexd), nil
}

type fileSum struct {
	name string
	size int64
	crc  uint32
}

type meta struct {
	tag, digest string
	files       []fileSum
}

func (m *meta) marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\ntag %s\ndigest %s\n", metaMagic, m.tag, m.digest)
	for _, f := range m.files {
		fmt.Fprintf(&b, "file %d %08x %s\n", f.size, f.crc, f.name)
	}
	fmt.Fprintf(&b, "end %08x\n", crc32.Checksum(b.Bytes(), castagnoli))
	return b.Bytes()
}

func parseMeta(b []byte) (*meta, error) {
	i := bytes.LastIndex(b, []byte("end "))
	if i < 0 || !bytes.HasSuffix(b, []byte("\n")) {
		return nil, errors.New("meta truncated")
	}
	want, err := strconv.ParseUint(strings.TrimSpace(string(b[i+4:])), 16, 32)
	if err != nil || uint32(want) != crc32.Checksum(b[:i], castagnoli) {
		return nil, errors.New("meta checksum mismatch")
	}
	m := &meta{}
	sc := bufio.NewScanner(bytes.NewReader(b[:i]))
	line := 0
	for sc.Scan() {
		l := sc.Text()
		line++
		switch {
		case line == 1:
			if l != metaMagic {
				return nil, fmt.Errorf("meta format %q", l)
			}
		case strings.HasPrefix(l, "tag "):
			m.tag = l[4:]
		case strings.HasPrefix(l, "digest "):
			m.digest = l[7:]
		case strings.HasPrefix(l, "file "):
			parts := strings.SplitN(l[5:], " ", 3)
			if len(parts) != 3 {
				return nil, fmt.Errorf("meta line %q", l)
			}
			size, err1 := strconv.ParseInt(parts[0], 10, 64)
			crc, err2 := strconv.ParseUint(parts[1], 16, 32)
			name := parts[2]
			if err1 != nil || err2 != nil || !filepath.IsLocal(name) || name == metaName {
				return nil, fmt.Errorf("meta line %q", l)
			}
			m.files = append(m.files, fileSum{name: name, size: size, crc: uint32(crc)})
		default:
			return nil, fmt.Errorf("meta line %q", l)
		}
	}
	return m, nil
}

func sumFile(path string) (int64, uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, f)
	return n, h.Sum32(), err
}

// Lookup returns the directory of the verified entry for digest and marks
// it used. It returns ErrMiss when there is none, and an error wrapping
// ErrCorrupt (after removing the entry) when one failed its checks.
func (c *Cache) Lookup(digest string) (string, error) {
	dir, err := c.entryDir(digest)
	if err != nil {
		return "", err
	}
	mpath := filepath.Join(dir, metaName)
	b, err := os.ReadFile(mpath)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); serr == nil {
			// Uncommitted (a crash between Prepare and Commit).
			c.remove(dir)
		}
		return "", ErrMiss
	}
	if err != nil {
		return "", fmt.Errorf("module cache: %w", err)
	}
	if err := c.verify(b, digest, dir); err != nil {
		c.remove(dir)
		return "", fmt.Errorf("%w %s: %w", ErrCorrupt, digest, err)
	}
	now := time.Now()
	_ = os.Chtimes(mpath, now, now)
	return dir, nil
}

func (c *Cache) verify(b []byte, digest, dir string) error {
	m, err := parseMeta(b)
	if err != nil {
		return err
	}
	if m.tag != c.tag {
		return fmt.Errorf("written by %q, not %q", m.tag, c.tag)
	}
	if m.digest != digest {
		return fmt.Errorf("meta names %s", m.digest)
	}
	if len(m.files) == 0 {
		return errors.New("no files")
	}
	for _, f := range m.files {
		size, crc, err := sumFile(filepath.Join(dir, f.name))
		if err != nil {
			return err
		}
		if size != f.size || crc != f.crc {
			return fmt.Errorf("%s: %d bytes crc %08x, want %d bytes crc %08x", f.name, size, crc, f.size, f.crc)
		}
	}
	return nil
}

// Touch marks the entry for digest used (a Load served from memory), so
// that eviction spares the modules in use; a missing entry is left alone.
func (c *Cache) Touch(digest string) {
	if dir, err := c.entryDir(digest); err == nil {
		now := time.Now()
		_ = os.Chtimes(filepath.Join(dir, metaName), now, now)
	}
}

// Prepare removes any entry for digest and returns an empty directory for
// the engine to write the new entry's files into; Commit makes it an entry.
func (c *Cache) Prepare(digest string) (string, error) {
	dir, err := c.entryDir(digest)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.remove(dir)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("module cache: %w", err)
	}
	return dir, nil
}

// WriteFile writes one file of an entry atomically (temp + rename).
func WriteFile(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, tempPrefix+name+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// Commit checksums every file the engine wrote into the entry's directory,
// writes the meta file (the commit record) and evicts least recently used
// entries past the bound.
func (c *Cache) Commit(digest string) error {
	dir, err := c.entryDir(digest)
	if err != nil {
		return err
	}
	m := &meta{tag: c.tag, digest: digest}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if rel == metaName || strings.HasPrefix(d.Name(), tempPrefix) || strings.ContainsAny(rel, "\n") {
			return nil
		}
		size, crc, err := sumFile(path)
		if err != nil {
			return err
		}
		m.files = append(m.files, fileSum{name: rel, size: size, crc: crc})
		return nil
	})
	if err == nil && len(m.files) == 0 {
		err = errors.New("engine wrote no files")
	}
	if err == nil {
		err = WriteFile(dir, metaName, m.marshal())
	}
	if err != nil {
		c.mu.Lock()
		c.remove(dir)
		c.mu.Unlock()
		return fmt.Errorf("module cache: commit %s: %w", digest, err)
	}
	c.Evict(dir)
	return nil
}

// Discard removes the entry for digest, committed or not.
func (c *Cache) Discard(digest string) {
	if dir, err := c.entryDir(digest); err == nil {
		c.mu.Lock()
		c.remove(dir)
		c.mu.Unlock()
	}
}

func (c *Cache) remove(dir string) {
	// Rename first so that a concurrent reader never sees a half-removed
	// entry under the digest's name.
	tmp := filepath.Join(c.dir, tempPrefix+"rm-"+filepath.Base(dir)+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if os.Rename(dir, tmp) == nil {
		dir = tmp
	}
	os.RemoveAll(dir)
}

type entryUse struct {
	dir  string
	size int64
	used time.Time
}

// Size is the bytes the committed entries hold, by their meta files.
func (c *Cache) Size() int64 {
	var n int64
	for _, e := range c.entries() {
		n += e.size
	}
	return n
}

func (c *Cache) entries() []entryUse {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return nil
	}
	var out []entryUse
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		dir := filepath.Join(c.dir, e.Name())
		mpath := filepath.Join(dir, metaName)
		st, err := os.Stat(mpath)
		if err != nil {
			continue // uncommitted or being written; Lookup cleans it up
		}
		size := st.Size()
		if b, err := os.ReadFile(mpath); err == nil {
			if m, err := parseMeta(b); err == nil {
				for _, f := range m.files {
					size += f.size
				}
			}
		}
		out = append(out, entryUse{dir: dir, size: size, used: st.ModTime()})
	}
	return out
}

// Evict removes least recently used entries until the cache is under its
// bound, never the entry in keep.
func (c *Cache) Evict(keep string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ents := c.entries()
	var total int64
	for _, e := range ents {
		total += e.size
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].used.Before(ents[j].used) })
	for _, e := range ents {
		if total <= c.max {
			break
		}
		if e.dir == keep {
			continue
		}
		c.remove(e.dir)
		total -= e.size
	}
}
