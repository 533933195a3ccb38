package transport

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
)

func TestListenMode0600AndParent0700(t *testing.T) {
	// Prove the mode does not depend on the umask.
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	path := filepath.Join(shortDir(t), "a", "b", "task.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want Srw-------", fi.Mode())
	}
	for _, d := range []string{filepath.Dir(path), filepath.Dir(filepath.Dir(path))} {
		di, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if di.Mode().Perm() != 0o700 {
			t.Errorf("created dir %s mode %v, want 0700", d, di.Mode().Perm())
		}
	}

	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial listener: %v", err)
	}
	c.Close()

	l.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file still there after Close: %v", err)
	}
}

func TestListenKeepsExistingParentMode(t *testing.T) {
	dir := shortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := Listen(filepath.Join(dir, "t.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	di, _ := os.Stat(dir)
	if di.Mode().Perm() != 0o755 {
		t.Errorf("existing parent mode changed to %v", di.Mode().Perm())
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := sockPath(t, "t.sock")
	staleSocket(t, path)
	l, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over stale socket: %v", err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil || b[0] != 'x' {
		t.Errorf("new listener did not answer: %q %v", b, err)
	}
}

func TestListenRefusesLiveSocket(t *testing.T) {
	path := sockPath(t, "t.sock")
	live, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	_, err = Listen(path)
	if !errdefs.IsAlreadyExists(err) || !strings.Contains(err.Error(), "live listener") {
		t.Fatalf("Listen on a live socket = %v, want ErrAlreadyExists (live listener)", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("live socket was disturbed: %v", err)
	}
	c.Close()
}

func TestListenRefusesNonSocket(t *testing.T) {
	dir := shortDir(t)

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	subdir := filepath.Join(dir, "dir")
	if err := os.Mkdir(subdir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A symlink to a stale socket is not a socket either: it is left alone.
	target := filepath.Join(dir, "target.sock")
	staleSocket(t, target)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}

	for _, p := range []string{file, subdir, link} {
		_, err := Listen(p)
		if !errdefs.IsAlreadyExists(err) || !strings.Contains(err.Error(), "is not a socket") {
			t.Errorf("Listen(%s) = %v, want ErrAlreadyExists (is not a socket)", p, err)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("regular file disturbed: %q %v", b, err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != os.ModeSymlink {
		t.Errorf("symlink disturbed: %v %v", fi, err)
	}
	if fi, err := os.Lstat(target); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("symlink target disturbed: %v %v", fi, err)
	}
	if fi, err := os.Stat(subdir); err != nil || !fi.IsDir() {
		t.Errorf("directory disturbed: %v %v", fi, err)
	}
}

func TestListenPathLength(t *testing.T) {
	dir := shortDir(t) + "/"
	pad := func(n int) string { return dir + strings.Repeat("s", n-len(dir)) }

	ok := pad(MaxUnixPathLen)
	l, err := Listen(ok)
	if err != nil {
		t.Fatalf("Listen on a %d-byte path: %v", len(ok), err)
	}
	l.Close()

	long := pad(MaxUnixPathLen + 1)
	_, err = Listen(long)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "108 bytes, longer than the unix socket limit of 107") {
		t.Fatalf("Listen on a 108-byte path = %v", err)
	}
	if _, err := os.Lstat(long); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("too-long path was created: %v", err)
	}

	if _, err := Listen(""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Listen(\"\") = %v, want ErrInvalidArgument", err)
	}
}
