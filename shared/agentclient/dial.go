package agentclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/transport"
)

// Target names where the agent of one VM is reached. Exactly one of Serial,
// HybridVsock and VsockCID must be set.
type Target struct {
	// Serial is the host-side unix socket of QEMU's virtio-serial chardev
	// (-chardev socket,path=<Serial>,server=on,wait=off) whose
	// virtserialport the agent serves (name magnetar.agent by default).
	Serial string
	// HybridVsock is Cloud Hypervisor's (or Firecracker's) vsock unix
	// socket (--vsock cid=3,socket=<HybridVsock>); the client writes
	// "CONNECT <Port>\n" and expects "OK <n>\n".
	HybridVsock string
	// VsockCID is the guest CID for AF_VSOCK (vhost-vsock on the host).
	VsockCID uint32
	// Port is the agent's vsock port for HybridVsock and VsockCID
	// (0: agentapi.DefaultVsockPort, 1024).
	Port uint32
}

func (t Target) port() uint32 {
	if t.Port == 0 {
		return agentapi.DefaultVsockPort
	}
	return t.Port
}

// String names the target in errors and logs: "serial:<path>",
// "hvsock:<path>:<port>" or "vsock:<cid>:<port>".
func (t Target) String() string {
	switch {
	case t.Serial != "":
		return "serial:" + t.Serial
	case t.HybridVsock != "":
		return fmt.Sprintf("hvsock:%s:%d", t.HybridVsock, t.port())
	case t.VsockCID != 0:
		return fmt.Sprintf("vsock:%d:%d", t.VsockCID, t.port())
	}
	return "<no target>"
}

// Validate checks that exactly one transport is named and its fields make sense.
func (t Target) Validate() error {
	n := 0
	for _, set := range []bool{t.Serial != "", t.HybridVsock != "", t.VsockCID != 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("agent target %+v: set exactly one of Serial, HybridVsock, VsockCID: %w", t, errdefs.ErrInvalidArgument)
	}
	for _, p := range []struct{ name, v string }{{"Serial", t.Serial}, {"HybridVsock", t.HybridVsock}} {
		if p.v != "" && (!filepath.IsAbs(p.v) || filepath.Clean(p.v) != p.v) {
			return fmt.Errorf("agent target %s %q: must be an absolute, clean path: %w", p.name, p.v, errdefs.ErrInvalidArgument)
		}
	}
	if t.VsockCID != 0 && t.VsockCID < 3 {
		return fmt.Errorf("agent target VsockCID %d: guest CIDs start at 3: %w", t.VsockCID, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Options tune Dial. The zero value is usable; give Dial a context with a
// deadline.
type Options struct {
	// Alive reports whether the VMM process still runs: nil while it does,
	// an error (why it is gone) once it is not. Dial checks it before every
	// attempt and every AlivePoll during one, and fails at once with the
	// last dial error when the VMM is gone. Nil: the VMM is assumed alive.
	Alive func() error
	// AlivePoll is how often Alive is checked while an attempt waits
	// (0: 50 ms).
	AlivePoll time.Duration
	// AttemptTimeout bounds one attempt (connect + Health). 0: 2 s for
	// vsock and hybrid vsock (a connection proves the agent listens, so a
	// slow answer is a broken one); the whole remaining deadline for
	// virtio-serial, whose chardev accepts before the guest has booted and
	// holds the request until the agent reads it.
	AttemptTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between attempts
	// (0: 10 ms and 200 ms).
	RetryMin, RetryMax time.Duration

	// dialVsock replaces the AF_VSOCK dialer (tests).
	dialVsock func(ctx context.Context, cid, port uint32) (net.Conn, error)
}

func (o *Options) defaults() {
	if o.AlivePoll <= 0 {
		o.AlivePoll = 50 * time.Millisecond
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 10 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 200 * time.Millisecond
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = o.RetryMin
	}
}

// ErrVMMExited is wrapped by Dial's error when Options.Alive reported the
// VMM gone.
var ErrVMMExited = errors.New("VMM process is gone")

// Connect opens one raw connection to the target (one attempt, bounded by
// ctx): the unix chardev socket for Serial, the CONNECT handshake for
// HybridVsock, AF_VSOCK for VsockCID. Dial retries it; use it directly only
// for a transport-level test.
func Connect(ctx context.Context, t Target, o Options) (net.Conn, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	switch {
	case t.Serial != "":
		var d net.Dialer
		return d.DialContext(ctx, "unix", t.Serial)
	case t.HybridVsock != "":
		return transport.DialOnce(ctx, transport.HybridVsockAddress(t.HybridVsock, t.port()))
	default:
		if o.dialVsock != nil {
			return o.dialVsock(ctx, t.VsockCID, t.port())
		}
		return transport.DialOnce(ctx, transport.VsockAddress(t.VsockCID, t.port()))
	}
}

// permanent reports errors no retry can fix.
func permanent(err error) bool {
	switch {
	case errdefs.IsInvalidArgument(err), errdefs.IsFailedPrecondition(err), errdefs.IsNotImplemented(err):
		return true
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EAFNOSUPPORT):
		return true
	}
	return false
}

// Dial connects to the agent, checks its protocol version with Health and
// returns the client. It retries (backoff RetryMin..RetryMax) until ctx ends
// — the guest may not have booted yet — and fails at once when
// Options.Alive reports the VMM gone, or when the agent's major version
// differs (FailedPrecondition). Every failure names the target and the last
// attempt's error; a deadline wraps context.DeadlineExceeded, a dead VMM
// ErrVMMExited.
func Dial(ctx context.Context, t Target, o Options) (*Client, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	o.defaults()
	start := time.Now()
	var lastErr error
	backoff := o.RetryMin
	for attempt := 1; ; attempt++ {
		if o.Alive != nil {
			if err := o.Alive(); err != nil {
				return nil, vmmGone(t, attempt-1, err, lastErr)
			}
		}
		c, err := attemptDial(ctx, t, o)
		if err == nil {
			log.G(ctx).WithFields(log.Fields{"target": t.String(), "attempts": attempt, "elapsed": time.Since(start).Round(time.Millisecond),
				"agent_version": c.health.GetAgentVersion(), "protocol": c.health.GetVersion()}).Debug("agent connected")
			return c, nil
		}
		var gone *vmmGoneError
		if errors.As(err, &gone) {
			return nil, vmmGone(t, attempt, gone.why, gone.last)
		}
		if ctx.Err() == nil || lastErr == nil {
			lastErr = err
		}
		if permanent(err) && ctx.Err() == nil {
			return nil, fmt.Errorf("agent at %s: %w", t, err)
		}
		if ctx.Err() == nil {
			tm := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
			case <-tm.C:
			}
			tm.Stop()
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("agent at %s: no answer after %d attempts in %s: %w: last error: %w",
				t, attempt, time.Since(start).Round(time.Millisecond), cerr, lastErr)
		}
		backoff = min(2*backoff, o.RetryMax)
	}
}

type vmmGoneError struct{ why, last error }

func (e *vmmGoneError) Error() string { return e.why.Error() }

func vmmGone(t Target, attempts int, why, last error) error {
	if last == nil {
		return fmt.Errorf("agent at %s: %w (%v) before the first attempt", t, ErrVMMExited, why)
	}
	return fmt.Errorf("agent at %s: %w (%v) after %d attempts: last error: %w", t, ErrVMMExited, why, attempts, last)
}

// attemptDial is one connect + Health, cancelled when the VMM goes.
func attemptDial(ctx context.Context, t Target, o Options) (_ *Client, retErr error) {
	timeout := o.AttemptTimeout
	if timeout <= 0 && t.Serial == "" {
		timeout = 2 * time.Second
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if timeout > 0 {
		var c2 context.CancelFunc
		actx, c2 = context.WithTimeout(actx, timeout)
		defer c2()
	}
	var last error // the attempt's own error, for a VMM-gone report
	if o.Alive != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tk := time.NewTicker(o.AlivePoll)
			defer tk.Stop()
			for {
				select {
				case <-stop:
					return
				case <-actx.Done():
					return
				case <-tk.C:
					if err := o.Alive(); err != nil {
						cancel(&vmmGoneError{why: err})
						return
					}
				}
			}
		}()
	}
	gone := func(err error) error {
		var g *vmmGoneError
		if errors.As(context.Cause(actx), &g) {
			return &vmmGoneError{why: g.why, last: firstNonNil(last, err)}
		}
		return err
	}
	conn, err := Connect(actx, t, o)
	if err != nil {
		return nil, gone(err)
	}
	c := newClient(conn)
	defer func() {
		if retErr != nil {
			c.Close()
		}
	}()
	h, err := c.sandbox.Health(actx, &agentapi.HealthRequest{ClientVersion: agentapi.Version})
	if err != nil {
		if ctx.Err() == nil && actx.Err() != nil && context.Cause(actx) == context.DeadlineExceeded {
			err = fmt.Errorf("no Health answer within %s on a connected transport: %w", timeout, errdefs.ErrUnavailable)
		}
		last = err
		return nil, gone(fmt.Errorf("health: %w", err))
	}
	if err := agentapi.CheckVersion(h); err != nil {
		return nil, err
	}
	c.health = h
	return c, nil
}

func firstNonNil(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
