package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// Backoff between dial attempts.
const (
	dialBackoffMin = 5 * time.Millisecond
	dialBackoffMax = 100 * time.Millisecond
)

// hybridVsockReplyMax bounds the hybrid vsock handshake reply line
// ("OK <host port>\n" is at most 14 bytes).
const hybridVsockReplyMax = 64

// aLongTimeAgo is a deadline in the past, used to unblock I/O on cancel.
var aLongTimeAgo = time.Unix(1, 0)

// Dial connects to a, retrying with capped backoff until it succeeds or ctx
// ends: a VM guest's agent is often not listening yet when the host first
// dials. Errors that a retry cannot fix (an invalid address, permission
// denied, no vsock support on this host) are returned at once. When ctx ends
// first, the error wraps ctx.Err() (so errdefs.IsDeadlineExceeded reports a
// deadline) and the last attempt error that was not caused by ctx ending
// (such as ENOENT or an unexpected hvsock reply), which says why.
//
// unix: connect to a.Path. vsock: AF_VSOCK connect to a.CID:a.Port. hvsock:
// connect to the unix socket a.Path, write "CONNECT <port>\n" and read one
// line that must begin with "OK "; any other reply is retried. Bytes sent
// after the OK line are not consumed.
func Dial(ctx context.Context, a Address) (net.Conn, error) {
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("dial %s: %w", a, err)
	}
	once := dialOnceFunc(a)

	var lastErr error // the last failure not caused by ctx ending
	backoff := dialBackoffMin
	for attempt := 1; ; attempt++ {
		c, err := once(ctx)
		if err == nil {
			return c, nil
		}
		if ctx.Err() == nil || lastErr == nil {
			lastErr = err
		}
		if permanent(err) && ctx.Err() == nil {
			return nil, fmt.Errorf("dial %s: %w", a, err)
		}
		if ctx.Err() == nil {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("dial %s: gave up after %d attempts: %w: last error: %w", a, attempt, cerr, lastErr)
		}
		backoff = min(2*backoff, dialBackoffMax)
	}
}

// DialOnce makes a single connection attempt to a, without Dial's retry
// loop, for callers that run their own (the agent client checks between
// attempts that the VMM still runs). hvsock includes the CONNECT handshake.
func DialOnce(ctx context.Context, a Address) (net.Conn, error) {
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("dial %s: %w", a, err)
	}
	c, err := dialOnceFunc(a)(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", a, err)
	}
	return c, nil
}

func dialOnceFunc(a Address) func(context.Context) (net.Conn, error) {
	switch a.Scheme {
	case SchemeVsock:
		return func(ctx context.Context) (net.Conn, error) { return dialVsock(ctx, a.CID, a.Port) }
	case SchemeHybridVsock:
		return func(ctx context.Context) (net.Conn, error) { return dialHybridVsock(ctx, a.Path, a.Port) }
	default:
		return func(ctx context.Context) (net.Conn, error) { return dialUnix(ctx, a.Path) }
	}
}

// permanent reports whether a dial error cannot be fixed by retrying.
func permanent(err error) bool {
	switch {
	case errdefs.IsInvalidArgument(err), errdefs.IsFailedPrecondition(err), errdefs.IsNotImplemented(err):
		return true
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM),
		errors.Is(err, syscall.EAFNOSUPPORT), errors.Is(err, syscall.EPROTONOSUPPORT),
		errors.Is(err, syscall.ESOCKTNOSUPPORT), errors.Is(err, syscall.EINVAL):
		return true
	}
	return false
}

func dialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

// dialHybridVsock performs one hybrid vsock connection attempt.
func dialHybridVsock(ctx context.Context, path string, port uint32) (_ net.Conn, retErr error) {
	c, err := dialUnix(ctx, path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			c.Close()
		}
	}()
	if dl, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(dl); err != nil {
			return nil, err
		}
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(aLongTimeAgo) })
	line, err := hybridVsockHandshake(c, port)
	if !stop() {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("hybrid vsock handshake on %s for port %d: %w", path, port, err)
	}
	if !strings.HasPrefix(line, "OK ") {
		return nil, fmt.Errorf("hybrid vsock handshake on %s for port %d: unexpected reply %q", path, port, line)
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return c, nil
}

// hybridVsockHandshake writes the CONNECT line and returns the reply line
// without its newline. It reads one byte at a time so that nothing after the
// newline is consumed.
func hybridVsockHandshake(c net.Conn, port uint32) (string, error) {
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		return "", err
	}
	var (
		line []byte
		b    [1]byte
	)
	for len(line) < hybridVsockReplyMax {
		n, err := c.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				return string(line), nil
			}
			line = append(line, b[0])
			continue
		}
		if err == io.EOF {
			return "", fmt.Errorf("connection closed after %q, before the reply line ended (guest not listening yet?)", line)
		}
		if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("reply longer than %d bytes without a newline: %q", hybridVsockReplyMax, line)
}
