package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
)

// entry is one archive member.
type entry struct {
	path  string // absolute guest path, cleaned
	mode  uint32 // full st_mode (type bits included)
	rdevM uint32 // character device major
	rdevm uint32 // character device minor
	src   string // host file (regular files only)
}

const (
	sIFDIR = 0o040000
	sIFREG = 0o100000
	sIFCHR = 0o020000
)

// fileInfo is a manifest line for one regular file.
type fileInfo struct {
	Path   string `json:"path"`
	Mode   string `json:"mode"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// manifest is what -manifest writes.
type manifest struct {
	Meta      map[string]string `json:"meta,omitempty"`
	Hashes    map[string]string `json:"hashes,omitempty"`
	Files     []fileInfo        `json:"files"`
	Initramfs struct {
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"initramfs"`
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	out := flag.String("o", "", "output cpio file (required)")
	manPath := flag.String("manifest", "", "write a JSON manifest here")
	var metas, hashes multiFlag
	flag.Var(&metas, "meta", "key=value recorded in the manifest (repeatable)")
	flag.Var(&hashes, "hash", "name=/host/file whose sha256 the manifest records (repeatable)")
	flag.Parse()
	if err := run(*out, *manPath, metas, hashes, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "mkinitramfs:", err)
		os.Exit(1)
	}
}

func run(out, manPath string, metas, hashes, args []string) error {
	if out == "" {
		return errors.New("-o is required")
	}
	entries, err := collect(args)
	if err != nil {
		return err
	}
	mtime, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	h := sha256.New()
	w := &countWriter{w: io.MultiWriter(f, h)}
	files, err := write(w, entries, mtime)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	if manPath == "" {
		return nil
	}
	m := manifest{Files: files, Meta: map[string]string{}, Hashes: map[string]string{}}
	m.Initramfs.Size = w.n
	m.Initramfs.SHA256 = hex.EncodeToString(h.Sum(nil))
	for _, kv := range metas {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("-meta %q: want key=value", kv)
		}
		m.Meta[k] = v
	}
	for _, kv := range hashes {
		k, p, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("-hash %q: want name=path", kv)
		}
		sum, _, err := fileSHA256(p)
		if err != nil {
			return err
		}
		m.Hashes[k] = sum
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(manPath, append(b, '\n'), 0o644)
}

// collect parses the arguments, adds the skeleton and the implied parents, and
// returns the entries sorted by path.
func collect(args []string) ([]entry, error) {
	byPath := map[string]entry{}
	addDir := func(p string, mode uint32) {
		if _, ok := byPath[p]; !ok {
			byPath[p] = entry{path: p, mode: sIFDIR | mode}
		}
	}
	for _, d := range []string{"/dev", "/proc", "/sys", "/run", "/mnt"} {
		addDir(d, 0o755)
	}
	addDir("/tmp", 0o1777)
	byPath["/dev/console"] = entry{path: "/dev/console", mode: sIFCHR | 0o600, rdevM: 5, rdevm: 1}
	for _, a := range args {
		dst, src, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(dst, "/") || src == "" {
			return nil, fmt.Errorf("argument %q: want /guest/path=/host/path[:mode]", a)
		}
		dst = path.Clean(dst)
		if dst == "/" {
			return nil, fmt.Errorf("argument %q: the root is implied", a)
		}
		var mode uint32
		if i := strings.LastIndexByte(src, ':'); i > 0 {
			m, err := strconv.ParseUint(src[i+1:], 8, 32)
			if err != nil || m > 0o7777 {
				return nil, fmt.Errorf("argument %q: bad mode %q", a, src[i+1:])
			}
			mode, src = uint32(m), src[:i]
		}
		st, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file", src)
		}
		if mode == 0 {
			mode = 0o644
			if st.Mode().Perm()&0o111 != 0 {
				mode = 0o755
			}
		}
		if prev, ok := byPath[dst]; ok {
			return nil, fmt.Errorf("%s given twice (%s, %s)", dst, prev.src, src)
		}
		byPath[dst] = entry{path: dst, mode: sIFREG | mode, src: src}
		for p := path.Dir(dst); p != "/"; p = path.Dir(p) {
			if e, ok := byPath[p]; ok && e.mode&sIFDIR == 0 {
				return nil, fmt.Errorf("%s: parent %s is not a directory", dst, p)
			}
			addDir(p, 0o755)
		}
	}
	out := make([]entry, 0, len(byPath))
	for _, e := range byPath {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out, nil
}

// write emits the archive and returns the manifest lines of its files.
func write(w io.Writer, entries []entry, mtime uint32) ([]fileInfo, error) {
	var files []fileInfo
	for i, e := range entries {
		name := strings.TrimPrefix(e.path, "/")
		var data []byte
		nlink := uint32(1)
		switch {
		case e.mode&sIFDIR != 0:
			nlink = 2
		case e.mode&sIFREG != 0:
			b, err := os.ReadFile(e.src)
			if err != nil {
				return nil, err
			}
			data = b
			sum := sha256.Sum256(b)
			files = append(files, fileInfo{Path: e.path, Mode: fmt.Sprintf("%04o", e.mode&0o7777),
				Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
		}
		if err := header(w, uint32(i+1), e.mode, nlink, mtime, uint32(len(data)), e.rdevM, e.rdevm, name); err != nil {
			return nil, err
		}
		if err := padded(w, data); err != nil {
			return nil, err
		}
	}
	if err := header(w, 0, 0, 1, 0, 0, 0, 0, "TRAILER!!!"); err != nil {
		return nil, err
	}
	return files, nil
}

// header writes a newc header and the NUL-terminated name, padded so that the
// data starts on a 4-byte boundary (header is 110 bytes).
func header(w io.Writer, ino, mode, nlink, mtime, size, rmaj, rmin uint32, name string) error {
	if len(name) >= 1<<16 {
		return fmt.Errorf("name too long: %s", name)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, mtime, size, 0, 0, rmaj, rmin, len(name)+1, 0)
	b.WriteString(name)
	b.WriteByte(0)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func padded(w io.Writer, data []byte) error {
	if _, err := w.Write(data); err != nil {
		return err
	}
	if n := len(data) % 4; n != 0 {
		_, err := w.Write(make([]byte, 4-n))
		return err
	}
	return nil
}

func sourceDateEpoch() (uint32, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", v, err)
	}
	return uint32(n), nil
}

func fileSHA256(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
