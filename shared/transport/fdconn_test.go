package transport

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFDListener: descriptors sent with SCM_RIGHTS arrive with the bytes
// they came with, close-on-exec, and the ones nobody takes are closed with
// the connection.
func TestFDListener(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fd.sock")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l := FDListener(ul)
	defer l.Close()
	got := make(chan *FDConn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		got <- c.(*FDConn)
	}()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := os.CreateTemp(t.TempDir(), "passed")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, _, err := c.WriteMsgUnix([]byte("hello"), unix.UnixRights(int(f.Fd()), int(g.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(" world")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	s := <-got
	b, err := io.ReadAll(s)
	if err != nil || string(b) != "hello world" {
		t.Fatalf("read %q, %v", b, err)
	}
	fds := s.TakeFDs()
	if len(fds) != 2 {
		t.Fatalf("%d descriptors, want 2", len(fds))
	}
	var want, have syscall.Stat_t
	syscall.Fstat(int(f.Fd()), &want)
	syscall.Fstat(int(fds[0].Fd()), &have)
	if want.Ino != have.Ino || want.Dev != have.Dev {
		t.Error("the first descriptor is not the file sent")
	}
	if flags, err := unix.FcntlInt(fds[0].Fd(), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("received descriptor flags %#x, %v: want close-on-exec", flags, err)
	}
	if more := s.TakeFDs(); len(more) != 0 {
		t.Errorf("TakeFDs twice: %d", len(more))
	}
	for _, fd := range fds {
		fd.Close()
	}
	// an untaken descriptor is closed with the connection
	go func() {
		c2, err := l.Accept()
		if err == nil {
			got <- c2.(*FDConn)
		}
	}()
	c2, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, _, err := c2.WriteMsgUnix([]byte("x"), unix.UnixRights(int(f.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	s2 := <-got
	buf := make([]byte, 1)
	if _, err := s2.Read(buf); err != nil {
		t.Fatal(err)
	}
	s2.mu.Lock()
	kept := s2.fds[0]
	s2.mu.Unlock()
	s2.Close()
	if _, err := kept.Stat(); err == nil {
		t.Error("an untaken descriptor survived Close")
	}
}
