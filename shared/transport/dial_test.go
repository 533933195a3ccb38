package transport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// echo copies everything c sends back to it.
func echo(c net.Conn) {
	defer c.Close()
	io.Copy(c, c)
}

// serveUnix accepts on a unix socket at path and runs handle for each
// connection until the test ends. It returns the number of connections seen.
func serveUnix(t *testing.T, path string, handle func(net.Conn)) *atomic.Int32 {
	t.Helper()
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go handle(c)
		}
	}()
	return &n
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	b := make([]byte, len(msg))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(b) != msg {
		t.Fatalf("echo = %q, want %q", b, msg)
	}
	c.SetDeadline(time.Time{})
}

func TestDialUnixListenerAppearsLate(t *testing.T) {
	path := sockPath(t, "late.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	start := time.Now()
	go func() {
		time.Sleep(200 * time.Millisecond)
		serveUnix(t, path, echo)
	}()
	c, err := Dial(ctx, UnixAddress(path))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("connected after %v, before the listener existed", d)
	}
	roundTrip(t, c, "hello")
}

func TestDialDeadline(t *testing.T) {
	path := sockPath(t, "none.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, UnixAddress(path))
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("Dial to nothing succeeded")
	}
	if !errdefs.IsDeadlineExceeded(err) || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("err = %v, want DeadlineExceeded wrapping ENOENT", err)
	}
	if !strings.Contains(err.Error(), "gave up after") {
		t.Errorf("err = %v, want the attempt count", err)
	}
	if elapsed < 290*time.Millisecond || elapsed > time.Second {
		t.Errorf("Dial returned after %v, want about 300ms", elapsed)
	}
}

func TestDialCanceled(t *testing.T) {
	path := sockPath(t, "none.sock")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := Dial(ctx, UnixAddress(path))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestDialInvalidAddressFailsFast(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, a := range []Address{
		{},
		{Protocol: "ttrpc", Scheme: "tcp", Path: "/x"},
		UnixAddress("relative.sock"),
		UnixAddress("/" + strings.Repeat("x", MaxUnixPathLen)),
		VsockAddress(0xFFFFFFFF, 1024),
		HybridVsockAddress("/a:b", 1024),
	} {
		start := time.Now()
		_, err := Dial(ctx, a)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("Dial(%+v) = %v, want ErrInvalidArgument", a, err)
		}
		if time.Since(start) > 100*time.Millisecond {
			t.Errorf("Dial(%+v) retried an invalid address", a)
		}
	}
}

func TestPermanent(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{syscall.ENOENT, false},
		{syscall.ECONNREFUSED, false},
		{syscall.ECONNRESET, false},
		{syscall.ETIMEDOUT, false},
		{errors.New(`unexpected reply "ERR"`), false},
		{io.EOF, false},
		{&net.OpError{Op: "dial", Err: syscall.EACCES}, true},
		{syscall.EAFNOSUPPORT, true},
		{errdefs.ErrInvalidArgument, true},
		{errdefs.ErrFailedPrecondition, true},
	} {
		if got := permanent(tc.err); got != tc.want {
			t.Errorf("permanent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// hvsockServer is a fake Cloud Hypervisor vsock muxer: it checks the
// CONNECT line and then hands the connection to after.
func hvsockServer(t *testing.T, path string, reply string, after func(net.Conn)) *atomic.Int32 {
	t.Helper()
	return serveUnix(t, path, func(c net.Conn) {
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		if err != nil {
			c.Close()
			return
		}
		if line != "CONNECT 1024\n" {
			t.Errorf("handshake line = %q, want %q", line, "CONNECT 1024\n")
			c.Close()
			return
		}
		if _, err := c.Write([]byte(reply)); err != nil {
			c.Close()
			return
		}
		if after == nil {
			c.Close()
			return
		}
		if r.Buffered() > 0 {
			t.Errorf("client sent %d bytes before the OK reply", r.Buffered())
		}
		after(c)
	})
}

func TestDialHybridVsock(t *testing.T) {
	path := sockPath(t, "vsock.sock")
	hvsockServer(t, path, "OK 1073741824\n", echo)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, HybridVsockAddress(path, 1024))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*net.UnixConn); !ok {
		t.Errorf("hvsock conn is %T, want the *net.UnixConn itself", c)
	}
	roundTrip(t, c, "ping over hybrid vsock")
}

func TestDialHybridVsockKeepsBytesAfterOK(t *testing.T) {
	path := sockPath(t, "vsock.sock")
	const early = "early bytes from the guest\x00\n\xff"
	// The reply and the first payload bytes arrive in one write.
	hvsockServer(t, path, "OK 1073741824\n"+early, echo)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, HybridVsockAddress(path, 1024))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, len(early))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading bytes sent with the OK line: %v", err)
	}
	if string(b) != early {
		t.Fatalf("got %q, want %q", b, early)
	}
	roundTrip(t, c, "and then echo")
}

func TestDialHybridVsockGarbageRetriedUntilDeadline(t *testing.T) {
	path := sockPath(t, "vsock.sock")
	conns := hvsockServer(t, path, "ERR no listener on port 1024\n", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, HybridVsockAddress(path, 1024))
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("Dial accepted a garbage handshake reply")
	}
	if !errdefs.IsDeadlineExceeded(err) || !strings.Contains(err.Error(), `unexpected reply "ERR no listener on port 1024"`) {
		t.Errorf("err = %v, want DeadlineExceeded with the unexpected reply", err)
	}
	if elapsed < 390*time.Millisecond || elapsed > 1500*time.Millisecond {
		t.Errorf("Dial returned after %v, want about 400ms", elapsed)
	}
	if n := conns.Load(); n < 2 {
		t.Errorf("server saw %d connections, want retries", n)
	}
}

func TestDialHybridVsockRetriesUntilGuestListens(t *testing.T) {
	path := sockPath(t, "vsock.sock")
	// Like Cloud Hypervisor before the guest listens: the muxer closes
	// the connection right after CONNECT, twice; then the guest is up.
	var n atomic.Int32
	serveUnix(t, path, func(c net.Conn) {
		r := bufio.NewReader(c)
		if _, err := r.ReadString('\n'); err != nil || n.Add(1) <= 2 {
			c.Close()
			return
		}
		c.Write([]byte("OK 1073741825\n"))
		echo(c)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, HybridVsockAddress(path, 1024))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n.Load() != 3 {
		t.Errorf("connected on attempt %d, want 3", n.Load())
	}
	roundTrip(t, c, "up")
}

func TestDialHybridVsockSilentServer(t *testing.T) {
	path := sockPath(t, "vsock.sock")
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	serveUnix(t, path, func(c net.Conn) { <-hold; c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, HybridVsockAddress(path, 1024))
	if !errdefs.IsDeadlineExceeded(err) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("silent handshake held Dial for %v", d)
	}

	// Cancellation without a deadline unblocks the handshake too.
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel2)
	if _, err := Dial(ctx2, HybridVsockAddress(path, 1024)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestDialHybridVsockOverlongReply(t *testing.T) {
	path := sockPath(t, "vsock.sock")
	hvsockServer(t, path, strings.Repeat("A", 200), func(c net.Conn) { time.Sleep(time.Second); c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, HybridVsockAddress(path, 1024))
	if err == nil || !strings.Contains(err.Error(), "reply longer than 64 bytes") {
		t.Fatalf("err = %v, want an over-long reply error", err)
	}
}
