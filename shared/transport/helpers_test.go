package transport

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// shortDir returns a fresh directory with a short path, so socket paths stay
// well under MaxUnixPathLen whatever the test name.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "mgt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// staleSocket leaves a socket file at path that nobody accepts on.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("stale socket not left behind: %v %v", fi, err)
	}
}

func sockPath(t *testing.T, name string) string {
	return filepath.Join(shortDir(t), name)
}
