package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// openPTY opens a pty pair and returns the master (wrapped like a serial
// conn, standing in for the host end) and the slave's path (standing in for
// /dev/vportNpM in a guest).
func openPTY(t *testing.T) (*fileConn, string) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Skipf("no pty support: %v", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(fd)
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(fd)
		t.Skipf("ptsname: %v", err)
	}
	slave := fmt.Sprintf("/dev/pts/%d", n)
	m := newFileConn(os.NewFile(uintptr(fd), "ptmx"), fileAddr{"serial", "ptmx"}, fileAddr{"serial", slave})
	m.tty = true
	t.Cleanup(func() { m.Close() })
	return m, slave
}

const echoService = "magnetar.transport.test.Echo"

// serveEcho serves a ttrpc echo service on l until the test ends.
func serveEcho(t *testing.T, l net.Listener) {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	srv.RegisterService(echoService, &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"Echo": func(_ context.Context, unmarshal func(any) error) (any, error) {
			var req wrapperspb.BytesValue
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			return &wrapperspb.BytesValue{Value: req.Value}, nil
		},
	}})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), l) }()
	t.Cleanup(func() {
		srv.Close()
		select {
		case err := <-served:
			if !errors.Is(err, ttrpc.ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
}

// echoCalls makes ttrpc echo calls over c, including binary payloads that a
// cooked tty would mangle and one larger than a pty's buffer.
func echoCalls(t *testing.T, c net.Conn) {
	t.Helper()
	client := ttrpc.NewClient(c)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	payloads := [][]byte{
		[]byte("ping"),
		{0x00, 0x03, 0x04, 0x0a, 0x0d, 0x11, 0x13, 0x1a, 0x1c, 0x7f, 0x80, 0xff, '\r', '\n'},
		bytes.Repeat([]byte{0x0d, 0x0a, 0x03, 0xff, 'x'}, 64<<10/5),
	}
	for i := range 50 {
		payloads = append(payloads, fmt.Appendf(nil, "call %d", i))
	}
	for _, p := range payloads {
		var resp wrapperspb.BytesValue
		if err := client.Call(ctx, echoService, "Echo", &wrapperspb.BytesValue{Value: p}, &resp); err != nil {
			t.Fatalf("Echo(%d bytes): %v", len(p), err)
		}
		if !bytes.Equal(resp.Value, p) {
			t.Fatalf("Echo(%d bytes) returned %d different bytes", len(p), len(resp.Value))
		}
	}
}

// TestSerialTTRPCOverPTY runs a ttrpc server on OpenSerial(pty slave) through
// SerialListener, as the agent does on /dev/vportNpM, and a client on the
// master, as the host does.
func TestSerialTTRPCOverPTY(t *testing.T) {
	master, slave := openPTY(t)
	port, err := OpenSerial(slave)
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, SerialListener(port))
	echoCalls(t, master)
}

// TestSerialTTRPCOverChardevSocket has the host open the unix socket a QEMU
// chardev (server=on) exposes; the fake guest serves the accepted end.
func TestSerialTTRPCOverChardevSocket(t *testing.T) {
	path := sockPath(t, "agent.sock")
	chardev, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer chardev.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := chardev.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	host, err := OpenSerial(path)
	if err != nil {
		t.Fatal(err)
	}
	guest := <-accepted
	serveEcho(t, SerialListener(guest))
	echoCalls(t, host)
}

// TestSerialTTRPCOverSocketpair uses the fileConn wrapper over a socketpair.
func TestSerialTTRPCOverSocketpair(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a := newFileConn(os.NewFile(uintptr(fds[0]), "a"), fileAddr{"serial", "a"}, fileAddr{"serial", "b"})
	b := newFileConn(os.NewFile(uintptr(fds[1]), "b"), fileAddr{"serial", "b"}, fileAddr{"serial", "a"})
	defer a.Close()
	serveEcho(t, SerialListener(b))
	echoCalls(t, a)
}

func TestSerialConnDeadlinesAndClose(t *testing.T) {
	_, slave := openPTY(t)
	c, err := OpenSerial(slave)
	if err != nil {
		t.Fatal(err)
	}
	if c.LocalAddr().Network() != "serial" || c.LocalAddr().String() != slave || c.RemoteAddr().String() != slave {
		t.Errorf("addrs = %v %v", c.LocalAddr(), c.RemoteAddr())
	}

	// The port must be raw: no echo of what the host side would type, and
	// a read deadline works because the descriptor is non-blocking.
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatalf("SetReadDeadline: %v", err)
	}
	start := time.Now()
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past deadline = %v, want a timeout", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("deadline honoured after %v", d)
	}

	// Close unblocks a pending Read with net.ErrClosed.
	c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
}

func TestSerialRawMode(t *testing.T) {
	master, slave := openPTY(t)
	c, err := OpenSerial(slave)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*fileConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var tio *unix.Termios
	rc.Control(func(fd uintptr) { tio, err = unix.IoctlGetTermios(int(fd), unix.TCGETS) })
	if err != nil {
		t.Fatal(err)
	}
	if tio.Lflag&(unix.ECHO|unix.ICANON|unix.ISIG) != 0 || tio.Oflag&unix.OPOST != 0 || tio.Iflag&unix.ICRNL != 0 {
		t.Errorf("pty not raw: lflag %#x oflag %#x iflag %#x", tio.Lflag, tio.Oflag, tio.Iflag)
	}
	// Nothing written by the host comes back as echo.
	master.Write([]byte("abc\r\n"))
	buf := make([]byte, 5)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "abc\r\n" {
		t.Fatalf("guest read %q, %v", buf, err)
	}
	master.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := master.Read(buf); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("host read back %q (%v): echo is on", buf[:n], err)
	}
}

func TestSerialHangupIsEOF(t *testing.T) {
	master, slave := openPTY(t)
	c, err := OpenSerial(slave)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	master.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("Read after the host side closed = %v, want io.EOF", err)
	}
}

func TestOpenSerialErrors(t *testing.T) {
	if _, err := OpenSerial("/nonexistent/vport9p9"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenSerial(missing) = %v, want ErrNotExist", err)
	}
	// A stale chardev socket: nobody listening.
	path := sockPath(t, "agent.sock")
	staleSocket(t, path)
	if _, err := OpenSerial(path); err == nil {
		t.Error("OpenSerial on a stale socket succeeded")
	}
}

func TestSerialListener(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	l := SerialListener(a)
	if l.Addr() != a.LocalAddr() {
		t.Errorf("Addr = %v, want the conn's LocalAddr", l.Addr())
	}
	c, err := l.Accept()
	if err != nil || c != a {
		t.Fatalf("first Accept = %v, %v; want the conn", c, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("second Accept returned early: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
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
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on a closed listener = %v", err)
	}
	if err := l.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v, want net.ErrClosed", err)
	}
	// The accepted conn belongs to the server: Close left it open.
	go b.Write([]byte("x"))
	if _, err := a.Read(make([]byte, 1)); err != nil {
		t.Errorf("accepted conn was closed by the listener: %v", err)
	}
	a.Close()
}

func TestSerialListenerCloseBeforeAccept(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	l := SerialListener(a)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
	}
	if _, err := b.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("never-accepted conn still open: write = %v", err)
	}
}
