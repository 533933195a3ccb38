package transport

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Never dial CID 2 (the host) in these tests: on a machine that is itself a
// VM guest that reaches the real host.

func TestVsockSockaddrs(t *testing.T) {
	if sa := listenSockaddr(1024); sa.CID != unix.VMADDR_CID_ANY || sa.Port != 1024 {
		t.Errorf("listenSockaddr(1024) = %+v, want VMADDR_CID_ANY:1024", sa)
	}
	if sa := dialSockaddr(3, 1024); sa.CID != 3 || sa.Port != 1024 {
		t.Errorf("dialSockaddr(3, 1024) = %+v", sa)
	}
	if vsockCIDAny != unix.VMADDR_CID_ANY || vsockPortAny != unix.VMADDR_PORT_ANY {
		t.Error("vsock constants disagree with x/sys/unix")
	}
}

func TestVsockErrClassification(t *testing.T) {
	for _, errno := range []syscall.Errno{unix.EAFNOSUPPORT, unix.ENODEV} {
		err := vsockErr(errno)
		if !errdefs.IsFailedPrecondition(err) || !errors.Is(err, errno) || !permanent(err) {
			t.Errorf("vsockErr(%v) = %v: want FailedPrecondition, the errno kept, permanent", errno, err)
		}
	}
	for _, errno := range []syscall.Errno{unix.ECONNRESET, unix.ETIMEDOUT, unix.ECONNREFUSED} {
		err := vsockErr(errno)
		if err != errno || permanent(err) {
			t.Errorf("vsockErr(%v) = %v, permanent=%v: want the errno unchanged and retryable", errno, err, permanent(err))
		}
	}
}

// requireVsock skips the test when this kernel has no AF_VSOCK.
func requireVsock(t *testing.T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("AF_VSOCK unavailable on this kernel: %v", err)
	}
	unix.Close(fd)
}

func TestListenVsock(t *testing.T) {
	requireVsock(t)
	l, err := ListenVsock(unix.VMADDR_PORT_ANY)
	if err != nil {
		if errdefs.IsFailedPrecondition(err) {
			t.Skipf("cannot bind vsock here: %v", err)
		}
		t.Fatal(err)
	}
	a, ok := l.Addr().(*VsockAddr)
	if !ok || a.Port == unix.VMADDR_PORT_ANY || a.Network() != "vsock" {
		t.Fatalf("Addr() = %#v, want a kernel-assigned port", l.Addr())
	}

	if _, err := ListenVsock(a.Port); !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("second ListenVsock(%d) = %v, want EADDRINUSE", a.Port, err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock Accept")
	}
	if err := l.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v, want net.ErrClosed", err)
	}
}

// localCID returns this machine's vsock CID, or skips the test.
func localCID(t *testing.T) uint32 {
	t.Helper()
	f, err := os.Open("/dev/vsock")
	if err != nil {
		t.Skipf("cannot read the local vsock CID: %v", err)
	}
	defer f.Close()
	cid, err := unix.IoctlGetUint32(int(f.Fd()), unix.IOCTL_VM_SOCKETS_GET_LOCAL_CID)
	if err != nil || cid == unix.VMADDR_CID_ANY {
		t.Skipf("no local vsock CID (%d, %v)", cid, err)
	}
	return cid
}

// TestDialVsockNoTransport checks that a missing vsock transport fails at
// once with a clear error instead of retrying until the deadline. Dialling
// the local CID has no transport unless vsock_loopback is loaded.
func TestDialVsockNoTransport(t *testing.T) {
	requireVsock(t)
	cid := localCID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := Dial(ctx, VsockAddress(cid, 1024))
	if err == nil {
		c.Close()
		t.Skipf("something answers on local CID %d port 1024", cid)
	}
	if !errdefs.IsFailedPrecondition(err) {
		t.Skipf("this machine has a vsock transport to its own CID %d (err %v); the no-transport path is not reachable", cid, err)
	}
	if !errors.Is(err, unix.ENODEV) || !strings.Contains(err.Error(), "vhost_vsock") {
		t.Errorf("err = %v, want ENODEV with a hint about vhost_vsock", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("no-transport Dial took %v; it should not retry", d)
	}
}

// TestVsockLoopbackRoundTrip dials this machine's own CID, which needs
// vsock_loopback (or a host with vhost-vsock loopback).
func TestVsockLoopbackRoundTrip(t *testing.T) {
	requireVsock(t)
	cid := localCID(t)
	l, err := ListenVsock(unix.VMADDR_PORT_ANY)
	if err != nil {
		t.Skipf("cannot bind vsock here: %v", err)
	}
	defer l.Close()
	port := l.Addr().(*VsockAddr).Port
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go echo(c)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	c, err := Dial(ctx, VsockAddress(cid, port))
	if err != nil {
		t.Skipf("no vsock loopback transport to local CID %d here (vsock_loopback not loaded): %v", cid, err)
	}
	defer c.Close()
	if r, ok := c.RemoteAddr().(*VsockAddr); !ok || r.CID != cid || r.Port != port {
		t.Errorf("RemoteAddr = %v", c.RemoteAddr())
	}
	roundTrip(t, c, "ping over vsock")
}

// TestWaitConnected exercises the non-blocking connect wait with TCP on
// loopback, which (unlike unix sockets) returns EINPROGRESS, since a vsock
// peer that connects asynchronously is not available on every test host.
func TestWaitConnected(t *testing.T) {
	tcpConnect := func(t *testing.T, port int) *os.File {
		t.Helper()
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
		if err != nil && err != unix.EINPROGRESS {
			unix.Close(fd)
			t.Fatalf("connect: %v", err)
		}
		f := os.NewFile(uintptr(fd), "tcp")
		t.Cleanup(func() { f.Close() })
		return f
	}

	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := waitConnected(ctx, tcpConnect(t, port)); err != nil {
		t.Errorf("waitConnected to a listener = %v", err)
	}

	l.Close()
	if err := waitConnected(ctx, tcpConnect(t, port)); !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("waitConnected to a closed port = %v, want ECONNREFUSED", err)
	}

	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	if err := waitConnected(done, tcpConnect(t, port)); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("waitConnected with a cancelled context = %v", err)
	}
}
