package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// DialOptions' defaults.
const (
	dialBackoffMin = 5 * time.Millisecond
	dialBackoffMax = 100 * time.Millisecond
	alivePoll      = 50 * time.Millisecond
)

// hybridVsockReplyMax bounds the hybrid vsock handshake reply line
// ("OK <host port>\n" is at most 14 bytes).
const hybridVsockReplyMax = 64

// aLongTimeAgo is a deadline in the past, used to unblock I/O on cancel.
var aLongTimeAgo = time.Unix(1, 0)

// ErrPeerExited is wrapped by DialWith's error when DialOptions.Alive
// reported the process behind the endpoint gone.
var ErrPeerExited = errors.New("the peer's process is gone")

// errAttemptTimeout is the cause of an attempt's context that ran out of
// DialOptions.AttemptTimeout.
var errAttemptTimeout = errors.New("dial attempt timed out")

// DialOptions are DialWith's hooks. The zero value dials as Dial does.
type DialOptions struct {
	// Alive reports whether the process serving the endpoint (a VM's VMM)
	// still runs: nil while it does, why it is gone once it is not.
	// DialWith checks it before every attempt and every AlivePoll while
	// an attempt or a backoff waits; once it fails DialWith returns at
	// once with an error wrapping ErrPeerExited and the last attempt's
	// error. Calls never overlap, and none follows a failed one. Nil: the
	// peer is assumed alive.
	Alive func() error
	// AlivePoll is how often Alive is checked while DialWith waits
	// (0: 50 ms).
	AlivePoll time.Duration
	// AttemptTimeout bounds one attempt, connect and setup together (0:
	// only the context bounds it). An attempt that runs out is retried;
	// its error wraps errdefs.ErrUnavailable, not a deadline.
	AttemptTimeout time.Duration
	// BackoffMin and BackoffMax bound the capped exponential backoff
	// between attempts (0: 5 ms and 100 ms).
	BackoffMin, BackoffMax time.Duration
	// Connect makes one connection attempt in place of the transport's
	// own dialer (nil), for tests or another implementation of a scheme.
	Connect func(ctx context.Context, a Address) (net.Conn, error)
}

func (o *DialOptions) defaults() {
	if o.AlivePoll <= 0 {
		o.AlivePoll = alivePoll
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = dialBackoffMin
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = dialBackoffMax
	}
	o.BackoffMax = max(o.BackoffMax, o.BackoffMin)
	if o.Connect == nil {
		o.Connect = connect
	}
}

// Dial connects to a, retrying with capped backoff until it succeeds or ctx
// ends: a VM guest's agent is often not listening yet when the host first
// dials. Errors that a retry cannot fix (an invalid address, permission
// denied, no vsock support on this host) are returned at once. When ctx ends
// first, the error wraps ctx.Err() (so errdefs.IsDeadlineExceeded reports a
// deadline) and the last attempt error that was not caused by ctx ending
// (such as ENOENT or an unexpected hvsock reply), which says why.
//
// unix and serial: connect to a.Path. vsock: AF_VSOCK connect to
// a.CID:a.Port. hvsock: connect to the unix socket a.Path, write
// "CONNECT <port>\n" and read one line that must be "OK <host port>"; any other
// reply is retried. Bytes sent after the OK line are not consumed.
//
// Dial is DialWith without options or setup.
func Dial(ctx context.Context, a Address) (net.Conn, error) {
	return DialWith(ctx, a, DialOptions{}, keepConn)
}

func keepConn(_ context.Context, c net.Conn) (net.Conn, error) { return c, nil }

// DialWith is Dial with o's hooks and a setup step: every attempt connects
// and then calls setup on the new connection (with the attempt's context),
// and DialWith returns what the first setup that succeeds returns. setup
// owns c when it succeeds; when it fails DialWith closes c and treats the
// error as a failed attempt: retried unless it is permanent (such as
// errdefs.ErrFailedPrecondition or ErrInvalidArgument). Use it when a
// connection alone proves nothing, as on a serial chardev: the agent client
// makes a ttrpc client and asks the agent for its health.
//
// When ctx ends first the error is Dial's; when o.Alive reports the peer
// gone, the error wraps ErrPeerExited, says why, and wraps the last
// attempt's error.
func DialWith[T any](ctx context.Context, a Address, o DialOptions, setup func(ctx context.Context, c net.Conn) (T, error)) (T, error) {
	var zero T
	if err := a.validate(); err != nil {
		return zero, fmt.Errorf("dial %s: %w", a, err)
	}
	o.defaults()
	// dctx also ends when the peer is gone
	dctx, cancel := context.WithCancel(ctx)
	peer := &peerWatch{alive: o.Alive}
	if o.Alive != nil {
		polled := make(chan struct{})
		go func() {
			defer close(polled)
			peer.poll(dctx, o.AlivePoll, cancel)
		}()
		defer func() { <-polled }()
	}
	defer cancel()

	var lastErr error // the last failure not caused by dctx ending
	backoff := o.BackoffMin
	for attempt := 1; ; attempt++ {
		if why := peer.check(); why != nil {
			return zero, peerExited(a, attempt-1, why, lastErr)
		}
		v, err := dialAttempt(dctx, a, &o, setup)
		if err == nil {
			return v, nil
		}
		if !endedByDeadline(dctx, err) || lastErr == nil {
			lastErr = err
		}
		if why := peer.gone(); why != nil {
			return zero, peerExited(a, attempt, why, lastErr)
		}
		if permanent(err) && dctx.Err() == nil {
			return zero, fmt.Errorf("dial %s: %w", a, err)
		}
		if dctx.Err() == nil {
			t := time.NewTimer(backoff)
			select {
			case <-dctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if cerr := ctx.Err(); cerr != nil {
			return zero, fmt.Errorf("dial %s: gave up after %d attempts: %w: last error: %w", a, attempt, cerr, lastErr)
		}
		backoff = min(2*backoff, o.BackoffMax)
	}
}

// endedByDeadline reports whether err is the dial context ending (or its
// deadline reached by an I/O timeout a moment before the context's own timer
// fires): such an error says nothing about why the peer did not answer.
func endedByDeadline(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return true
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) && errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	return false
}

// dialAttempt is one connect + setup, bounded by o.AttemptTimeout.
func dialAttempt[T any](ctx context.Context, a Address, o *DialOptions, setup func(context.Context, net.Conn) (T, error)) (T, error) {
	actx := ctx
	if o.AttemptTimeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeoutCause(ctx, o.AttemptTimeout, errAttemptTimeout)
		defer cancel()
	}
	c, err := o.Connect(actx, a)
	if err == nil {
		var v T
		if v, err = setup(actx, c); err == nil {
			return v, nil
		}
		c.Close()
	}
	if ctx.Err() == nil && errors.Is(context.Cause(actx), errAttemptTimeout) {
		// not a deadline of the caller's: retryable, and reported as such
		err = fmt.Errorf("no success within the attempt timeout of %s (%v): %w", o.AttemptTimeout, err, errdefs.ErrUnavailable)
	}
	var zero T
	return zero, err
}

// peerWatch serializes the calls of DialOptions.Alive and remembers its
// first failure.
type peerWatch struct {
	alive func() error
	mu    sync.Mutex
	why   error // why the peer is gone; nil while it is alive
}

// check calls alive (unless it already failed) and returns why the peer is
// gone, or nil.
func (w *peerWatch) check() error {
	if w.alive == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.why == nil {
		w.why = w.alive()
	}
	return w.why
}

// gone returns why the peer is gone as far as known, without calling alive.
func (w *peerWatch) gone() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.why
}

// poll checks every interval until ctx ends, and calls stop once the peer
// is gone.
func (w *peerWatch) poll(ctx context.Context, every time.Duration, stop context.CancelFunc) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if w.check() != nil {
				stop()
				return
			}
		}
	}
}

func peerExited(a Address, attempts int, why, last error) error {
	if last == nil {
		return fmt.Errorf("dial %s: %w (%v) before the first attempt", a, ErrPeerExited, why)
	}
	return fmt.Errorf("dial %s: %w (%v) after %d attempts: last error: %w", a, ErrPeerExited, why, attempts, last)
}

// DialOnce makes a single connection attempt to a, without Dial's retry
// loop, for a transport-level check. hvsock includes the CONNECT handshake.
func DialOnce(ctx context.Context, a Address) (net.Conn, error) {
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("dial %s: %w", a, err)
	}
	c, err := connect(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", a, err)
	}
	return c, nil
}

// connect makes one connection attempt to a valid a.
func connect(ctx context.Context, a Address) (net.Conn, error) {
	switch a.Scheme {
	case SchemeVsock:
		return dialVsock(ctx, a.CID, a.Port)
	case SchemeHybridVsock:
		return dialHybridVsock(ctx, a.Path, a.Port)
	default:
		return dialUnix(ctx, a.Path)
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
	if err == nil {
		err = checkHybridVsockReply(line)
	}
	if err != nil {
		return nil, fmt.Errorf("hybrid vsock handshake on %s for port %d: %w", path, port, err)
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return c, nil
}

// checkHybridVsockReply checks the handshake's reply line (without its
// newline): "OK <host port>", the port a decimal uint32, as Cloud Hypervisor
// and Firecracker send it. Anything else (an error text, a line cut short)
// is refused.
func checkHybridVsockReply(line string) error {
	rest, ok := strings.CutPrefix(line, "OK ")
	if ok {
		_, err := strconv.ParseUint(rest, 10, 32)
		ok = err == nil
	}
	if !ok {
		return fmt.Errorf("unexpected reply %q (want \"OK <port>\")", line)
	}
	return nil
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
