package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestDialSerialAddress(t *testing.T) {
	path := sockPath(t, "agent.sock")
	serveUnix(t, path, echo)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, SerialAddress(path))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "over the chardev")
}

// aliveAfter is a DialOptions.Alive that reports the peer gone from its
// n+1th call on, and fails the test if two calls overlap.
func aliveAfter(t *testing.T, n int32, why string) (func() error, *atomic.Int32) {
	var calls, inside atomic.Int32
	return func() error {
		if inside.Add(1) != 1 {
			t.Error("Alive calls overlap")
		}
		defer inside.Add(-1)
		if calls.Add(1) > n {
			return errors.New(why)
		}
		return nil
	}, &calls
}

// holdSetup blocks until its attempt's context ends.
func holdSetup(ctx context.Context, c net.Conn) (net.Conn, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestDialWithAliveBeforeTheFirstAttempt(t *testing.T) {
	var connects atomic.Int32
	o := DialOptions{
		Alive: func() error { return errors.New("qemu exited with status 1") },
		Connect: func(context.Context, Address) (net.Conn, error) {
			connects.Add(1)
			return nil, syscall.ENOENT
		},
	}
	_, err := DialWith(context.Background(), SerialAddress("/nonexistent/agent.sock"), o, keepConn)
	if !errors.Is(err, ErrPeerExited) || !strings.Contains(err.Error(), "qemu exited with status 1") ||
		!strings.Contains(err.Error(), "before the first attempt") {
		t.Fatalf("err = %v, want ErrPeerExited before the first attempt with the reason", err)
	}
	if n := connects.Load(); n != 0 {
		t.Errorf("%d connection attempts to a peer known dead", n)
	}
}

// TestDialWithAliveEndsTheLoopAtOnce: a peer that dies while the address
// does not answer ends Dial long before its deadline, with the last dial
// error.
func TestDialWithAliveEndsTheLoopAtOnce(t *testing.T) {
	path := sockPath(t, "agent.sock") // never created
	alive, calls := aliveAfter(t, 3, "qemu exited with status 1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := DialWith(ctx, SerialAddress(path), DialOptions{Alive: alive}, keepConn)
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s after the peer died", d)
	}
	if !errors.Is(err, ErrPeerExited) || !errors.Is(err, syscall.ENOENT) ||
		!strings.Contains(err.Error(), "qemu exited with status 1") || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want ErrPeerExited with the reason, the address and the last error (ENOENT)", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v: a dead peer is not a deadline", err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := calls.Load(); n != 4 {
		t.Errorf("Alive called %d times, want 4: none after it failed, none after DialWith returned", n)
	}
}

// TestDialWithAliveEndsAnAttempt: the peer dies while an attempt waits
// (connected, the setup waiting for an answer that will not come).
func TestDialWithAliveEndsAnAttempt(t *testing.T) {
	path := sockPath(t, "agent.sock")
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	serveUnix(t, path, func(c net.Conn) { <-hold; c.Close() })
	dead := time.Now().Add(200 * time.Millisecond)
	alive := func() error {
		if time.Now().After(dead) {
			return errors.New("qemu killed by SIGKILL")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := DialWith(ctx, SerialAddress(path), DialOptions{Alive: alive, AlivePoll: 20 * time.Millisecond}, holdSetup)
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s: the attempt was not ended when the peer died", d)
	}
	if !errors.Is(err, ErrPeerExited) || !strings.Contains(err.Error(), "SIGKILL") || !strings.Contains(err.Error(), "after 1 attempts") {
		t.Fatalf("err = %v, want ErrPeerExited after the one attempt with the reason", err)
	}
}

// TestDialWithSetupPerAttempt: setup runs on every connection; its
// retryable failures are retried (the connection closed), its result is
// DialWith's.
func TestDialWithSetupPerAttempt(t *testing.T) {
	path := sockPath(t, "agent.sock")
	closed := make(chan struct{}, 8)
	conns := serveUnix(t, path, func(c net.Conn) {
		defer c.Close()
		if _, err := io.Copy(io.Discard, c); err == nil {
			closed <- struct{}{} // EOF: the client closed it
		}
	})
	var setups atomic.Int32
	setup := func(ctx context.Context, c net.Conn) (string, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("setup's context has no deadline: not the attempt's")
		}
		if n := setups.Add(1); n < 3 {
			return "", fmt.Errorf("agent not up yet (%d): %w", n, errdefs.ErrUnavailable)
		}
		return "agent " + c.RemoteAddr().String(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := DialWith(ctx, SerialAddress(path), DialOptions{AttemptTimeout: time.Second}, setup)
	if err != nil {
		t.Fatal(err)
	}
	if got != "agent "+path {
		t.Errorf("DialWith = %q, want setup's result", got)
	}
	for end := time.Now().Add(2 * time.Second); conns.Load() < 3 && time.Now().Before(end); {
		time.Sleep(time.Millisecond) // the server counts after Accept
	}
	if setups.Load() != 3 || conns.Load() != 3 {
		t.Errorf("%d setups on %d connections, want 3 on 3", setups.Load(), conns.Load())
	}
	for i := 0; i < 2; i++ {
		select {
		case <-closed:
		case <-time.After(2 * time.Second):
			t.Fatalf("the connection of failed setup %d was not closed", i+1)
		}
	}
}

func TestDialWithSetupPermanentError(t *testing.T) {
	path := sockPath(t, "agent.sock")
	serveUnix(t, path, echo)
	var setups atomic.Int32
	setup := func(context.Context, net.Conn) (net.Conn, error) {
		setups.Add(1)
		return nil, fmt.Errorf("agent speaks protocol 9: %w", errdefs.ErrFailedPrecondition)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := DialWith(ctx, SerialAddress(path), DialOptions{}, setup)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "protocol 9") {
		t.Fatalf("err = %v, want the setup's FailedPrecondition", err)
	}
	if n := setups.Load(); n != 1 {
		t.Errorf("a permanent setup error was retried: %d setups", n)
	}
}

// TestDialWithAttemptTimeout: a connection whose setup never answers is
// dropped after AttemptTimeout and retried; the error of such an attempt is
// Unavailable, not a deadline.
func TestDialWithAttemptTimeout(t *testing.T) {
	path := sockPath(t, "vsock.sock")
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	conns := serveUnix(t, path, func(c net.Conn) { <-hold; c.Close() })
	o := DialOptions{AttemptTimeout: 50 * time.Millisecond}

	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	_, err := DialWith(ctx, UnixAddress(path), o, holdSetup)
	if !errdefs.IsDeadlineExceeded(err) || !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "attempt timeout of 50ms") {
		t.Fatalf("err = %v, want the caller's deadline with the attempts' timeouts as the last error", err)
	}
	if n := conns.Load(); n < 3 {
		t.Errorf("%d connections in 400ms with a 50ms attempt timeout, want retries", n)
	}

	// With the peer gone the error says so, and no deadline passed.
	alive, _ := aliveAfter(t, 4, "qemu exited")
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	o.Alive, o.AlivePoll = alive, time.Hour
	_, err = DialWith(ctx2, UnixAddress(path), o, holdSetup)
	if !errors.Is(err, ErrPeerExited) || !errdefs.IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrPeerExited after Unavailable attempts, no deadline", err)
	}
}

// TestDialWithConnectHook: Connect replaces the transport's dialer, with
// DialWith's retries around it.
func TestDialWithConnectHook(t *testing.T) {
	var tries atomic.Int32
	o := DialOptions{Connect: func(ctx context.Context, a Address) (net.Conn, error) {
		if a != VsockAddress(7, 2048) {
			t.Errorf("Connect(%v)", a)
		}
		if tries.Add(1) < 3 {
			return nil, syscall.ECONNRESET // not listening yet
		}
		c, peer := net.Pipe()
		go echo(peer)
		return c, nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := DialWith(ctx, VsockAddress(7, 2048), o, keepConn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := tries.Load(); n != 3 {
		t.Errorf("tries = %d, want 3", n)
	}
	roundTrip(t, c, "through the hook")
}
