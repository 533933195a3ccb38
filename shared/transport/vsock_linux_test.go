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
	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"
)

// Never dial CID 2 (the host) in these tests: on a machine that is itself a
// VM guest that reaches the real host.

func TestVsockConstants(t *testing.T) {
	if vsockCIDAny != unix.VMADDR_CID_ANY || vsockPortAny != unix.VMADDR_PORT_ANY {
		t.Error("vsock constants disagree with x/sys/unix")
	}
	if a := toVsockAddr(&vsock.Addr{ContextID: 3, Port: 1024}); a.CID != 3 || a.Port != 1024 {
		t.Errorf("toVsockAddr = %v, want 3:1024", a)
	}
	if a := toVsockAddr(nil); a.CID != vsockCIDAny || a.Port != vsockPortAny {
		t.Errorf("toVsockAddr(nil) = %v, want the any address", a)
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
	if l0, err := ListenVsock(0); err != nil {
		t.Errorf("ListenVsock(0) = %v", err)
	} else {
		if p := l0.Addr().(*VsockAddr).Port; p == 0 || p == unix.VMADDR_PORT_ANY {
			t.Errorf("ListenVsock(0) bound port %d, want a kernel-assigned one", p)
		}
		l0.Close()
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

// stallVsock replaces the AF_VSOCK connect with one that blocks until
// release is closed and then returns c, for the rest of the test.
func stallVsock(t *testing.T, c net.Conn) (release chan struct{}, started chan struct{}) {
	t.Helper()
	release, started = make(chan struct{}), make(chan struct{}, 16)
	orig := vsockConnect
	vsockConnect = func(cid, port uint32) (net.Conn, error) {
		started <- struct{}{}
		<-release
		return c, nil
	}
	t.Cleanup(func() { vsockConnect = orig })
	return release, started
}

// closeRecorder is a net.Conn that records Close.
type closeRecorder struct {
	net.Conn
	closed chan struct{}
}

func (c *closeRecorder) Close() error {
	close(c.closed)
	return c.Conn.Close()
}

// TestDialVsockContext checks that a connect stuck in the kernel does not
// hold dialVsock past its context, and that a connection made after the
// caller gave up is closed rather than leaked.
func TestDialVsockContext(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	late := &closeRecorder{Conn: a, closed: make(chan struct{})}
	release, started := stallVsock(t, late)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := dialVsock(ctx, 3, 1024)
	if err == nil {
		c.Close()
		t.Fatal("dialVsock returned a connection although connect never finished")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "3:1024") {
		t.Errorf("err = %v, want DeadlineExceeded naming 3:1024", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("dialVsock took %v after its deadline of 50ms", d)
	}
	<-started
	close(release)
	select {
	case <-late.closed:
	case <-time.After(2 * time.Second):
		t.Fatal("a connection made after the caller gave up was not closed")
	}

	// An ended context fails before connecting at all.
	done, stop := context.WithCancel(context.Background())
	stop()
	if _, err := dialVsock(done, 3, 1024); !errors.Is(err, context.Canceled) {
		t.Errorf("dialVsock with a cancelled context = %v, want Canceled", err)
	}
	select {
	case <-started:
		t.Error("dialVsock connected with a cancelled context")
	default:
	}
}

// TestDialVsockSuccessAndErrors checks that a connection is handed over as
// it is, and that the errors of package vsock are classified: no transport
// is permanent (FailedPrecondition), a reset is retried.
func TestDialVsockSuccessAndErrors(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	release, _ := stallVsock(t, a)
	close(release)
	c, err := dialVsock(context.Background(), 3, 1024)
	if err != nil || c != a {
		t.Fatalf("dialVsock = %v, %v; want the connection made", c, err)
	}
	c.Close()

	orig := vsockConnect
	t.Cleanup(func() { vsockConnect = orig })
	for _, tc := range []struct {
		errno     syscall.Errno
		permanent bool
	}{
		{unix.ENODEV, true},
		{unix.EAFNOSUPPORT, true},
		{unix.ECONNRESET, false},
		{unix.ETIMEDOUT, false},
	} {
		vsockConnect = func(cid, port uint32) (net.Conn, error) {
			// what vsock.Dial returns
			return nil, &net.OpError{Op: "dial", Net: "vsock", Addr: &vsock.Addr{ContextID: cid, Port: port},
				Err: os.NewSyscallError("connect", tc.errno)}
		}
		_, err := dialVsock(context.Background(), 3, 1024)
		if !errors.Is(err, tc.errno) || permanent(err) != tc.permanent || errdefs.IsFailedPrecondition(err) != tc.permanent {
			t.Errorf("%v: err = %v, permanent=%v; want the errno kept, permanent=%v", tc.errno, err, permanent(err), tc.permanent)
		}
		if want := "connect vsock 3:1024: connect: " + tc.errno.Error(); !strings.HasPrefix(err.Error(), want) {
			t.Errorf("err = %q, want it to begin %q", err, want)
		}
	}
}
