package transport

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

const (
	socketMode    fs.FileMode = 0o600
	socketDirMode fs.FileMode = 0o700
	// staleProbeTimeout bounds the connect used to tell a live socket from a
	// stale one.
	staleProbeTimeout = time.Second
)

// Listen creates a unix socket listener at path with mode 0600. A missing
// parent directory is created with mode 0700 (an existing one is left as it
// is). A stale socket file (nobody accepting on it) is replaced; a live socket
// or anything that is not a socket is left alone and reported as
// errdefs.ErrAlreadyExists. Paths longer than MaxUnixPathLen bytes are
// rejected with errdefs.ErrInvalidArgument. Closing the listener removes the
// socket file.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, fmt.Errorf("listen: empty socket path: %w", errdefs.ErrInvalidArgument)
	}
	if err := checkSocketPathLen(path); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), socketDirMode); err != nil {
		return nil, fmt.Errorf("listen %s: create parent directory: %w", path, err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	lc := net.ListenConfig{
		// Linux gives the bound socket file the mode of the socket inode
		// (minus umask), so setting it before bind leaves no window in
		// which the socket is reachable by others.
		Control: func(_, _ string, c syscall.RawConn) error {
			var err error
			if cerr := c.Control(func(fd uintptr) {
				err = syscall.Fchmod(int(fd), uint32(socketMode))
			}); cerr != nil {
				return cerr
			}
			return err
		},
	}
	l, err := lc.Listen(context.Background(), "unix", path)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("listen %s: %w: %w", path, err, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	// Make the mode exact whatever the umask was.
	if err := os.Chmod(path, socketMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen %s: chmod %o: %w", path, socketMode, err)
	}
	return l, nil
}

// removeStaleSocket removes path if it is a socket nobody accepts on. It
// refuses to remove anything else.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("listen %s: path exists and is not a socket (%s), leaving it alone: %w",
			path, fi.Mode().Type(), errdefs.ErrAlreadyExists)
	}
	c, err := net.DialTimeout("unix", path, staleProbeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("listen %s: socket is in use by a live listener: %w", path, errdefs.ErrAlreadyExists)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("listen %s: cannot tell whether the existing socket is stale: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("listen %s: remove stale socket: %w", path, err)
	}
	return nil
}
