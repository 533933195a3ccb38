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

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
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
// It returns the guest path it found, the file's identity and the bytes;
// when known returns a module for that identity, the bytes are not read and
// the module is returned instead. A missing file is FailedPrecondition, a
// file that is not a wasm module InvalidArgument; both name the path.
func readModule(root, args0, cwd string, env []string, max int64, known func(fileKey) wasi.Module) (string, []byte, fileKey, wasi.Module, error) {
	if args0 == "" {
		return "", nil, fileKey{}, nil, fmt.Errorf("process.args[0]: empty: the module to run must be named: %w", errdefs.ErrInvalidArgument)
	}
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return "", nil, fileKey{}, nil, fmt.Errorf("container rootfs %s: %v: %w", root, err, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return "", nil, fileKey{}, nil, fmt.Errorf("container rootfs %s: %w", root, err)
	}
	defer unix.Close(rfd)
	cands := modulePaths(args0, cwd, env)
	for _, p := range cands {
		data, key, mod, err := readInRoot(rfd, p, max, known)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return p, nil, key, nil, fmt.Errorf("wasm module %s (process.args[0] %q) in the container rootfs: %w", p, args0, err)
		}
		if mod != nil {
			return p, nil, key, mod, nil
		}
		if !bytes.HasPrefix(data, wasmMagic) {
			return p, nil, key, nil, fmt.Errorf("wasm module %s (process.args[0] %q): not a WebAssembly module (the file does not start with \\0asm): %w", p, args0, errdefs.ErrInvalidArgument)
		}
		return p, data, key, nil, nil
	}
	where := cands[0]
	if len(cands) > 1 {
		where = strings.Join(cands, ", ")
	}
	return "", nil, fileKey{}, nil, fmt.Errorf("wasm module %q (process.args[0]) not found in the container rootfs (looked at %s): %w", args0, where, errdefs.ErrFailedPrecondition)
}

// fileKey identifies a module file's content without reading it: its inode
// number, size, modification and change times. overlayfs reports the lower
// layer's inode for a file of the image in every container (and keeps it
// across copy-up), so the containers of one image share the key; any write
// changes the ctime, which no program can set back.
type fileKey struct {
	Ino, Size    int64
	Mtime, Ctime int64
}

func readInRoot(rfd int, p string, max int64, known func(fileKey) wasi.Module) ([]byte, fileKey, wasi.Module, error) {
	fd, err := unix.Openat2(rfd, strings.TrimPrefix(p, "/"), &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, fileKey{}, nil, err
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fileKey{}, nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fileKey{}, nil, fmt.Errorf("not a regular file (%s): %w", os.FileMode(st.Mode).Type(), errdefs.ErrInvalidArgument)
	}
	if st.Size > max {
		return nil, fileKey{}, nil, fmt.Errorf("%d bytes is more than wasm.max_module_bytes (%d): %w", st.Size, max, errdefs.ErrInvalidArgument)
	}
	key := fileKey{Ino: int64(st.Ino), Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
	if known != nil {
		if mod := known(key); mod != nil {
			return nil, key, mod, nil
		}
	}
	// one allocation of the file's size: growing a buffer while reading
	// megabytes costs more (copies and GC work) than the read itself
	data := make([]byte, st.Size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, key, nil, err
	}
	return data, key, nil, nil
}
