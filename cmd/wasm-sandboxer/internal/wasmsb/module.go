package wasmsb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// wasmMagic starts every WebAssembly binary module.
var wasmMagic = []byte("\x00asm")

// modulePath is where the module of a process is inside its rootfs:
// args[0] when absolute, else relative to cwd, and a bare name (no '/')
// is also looked up in PATH from env, as a shell would for a command.
func modulePaths(args0, cwd string, env []string) []string {
	if cwd == "" {
		cwd = "/"
	}
	if strings.HasPrefix(args0, "/") {
		return []string{path.Clean(args0)}
	}
	out := []string{path.Join(cwd, args0)}
	if strings.Contains(args0, "/") {
		return out
	}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			for _, dir := range strings.Split(v, ":") {
				if strings.HasPrefix(dir, "/") {
					out = append(out, path.Join(dir, args0))
				}
			}
		}
	}
	return out
}

// readModule reads the module args0 from the rootfs at root, resolving
// every path component inside it (symlinks included: openat2 with
// RESOLVE_IN_ROOT, so "/../.." and absolute links stay in the rootfs).
// It returns the guest path it found and the bytes. A missing file is
// FailedPrecondition, a file that is not a wasm module InvalidArgument; both
// name the path.
func readModule(root, args0, cwd string, env []string, max int64) (string, []byte, error) {
	if args0 == "" {
		return "", nil, fmt.Errorf("process.args[0]: empty: the module to run must be named: %w", errdefs.ErrInvalidArgument)
	}
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("container rootfs %s: %w", root, err)
	}
	defer unix.Close(rfd)
	cands := modulePaths(args0, cwd, env)
	for _, p := range cands {
		data, err := readInRoot(rfd, p, max)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return p, nil, fmt.Errorf("wasm module %s (process.args[0] %q) in the container rootfs: %w", p, args0, err)
		}
		if !bytes.HasPrefix(data, wasmMagic) {
			return p, nil, fmt.Errorf("wasm module %s (process.args[0] %q): not a WebAssembly module (the file does not start with \\0asm): %w", p, args0, errdefs.ErrInvalidArgument)
		}
		return p, data, nil
	}
	where := cands[0]
	if len(cands) > 1 {
		where = strings.Join(cands, ", ")
	}
	return "", nil, fmt.Errorf("wasm module %q (process.args[0]) not found in the container rootfs (looked at %s): %w", args0, where, errdefs.ErrFailedPrecondition)
}

func readInRoot(rfd int, p string, max int64) ([]byte, error) {
	fd, err := unix.Openat2(rfd, strings.TrimPrefix(p, "/"), &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s): %w", fi.Mode().Type(), errdefs.ErrInvalidArgument)
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%d bytes is more than wasm.max_module_bytes (%d): %w", fi.Size(), max, errdefs.ErrInvalidArgument)
	}
	// one allocation of the file's size: growing a buffer while reading
	// megabytes costs more (copies and GC work) than the read itself
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, err
	}
	return data, nil
}
