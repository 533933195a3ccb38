package agentclient

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
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

// Address is the transport address of the target: SerialAddress,
// HybridVsockAddress or VsockAddress.
func (t Target) Address() transport.Address {
	switch {
	case t.Serial != "":
		return transport.SerialAddress(t.Serial)
	case t.HybridVsock != "":
		return transport.HybridVsockAddress(t.HybridVsock, t.port())
	default:
		return transport.VsockAddress(t.VsockCID, t.port())
	}
}

// Options tune Dial. The zero value is usable; give Dial a context with a
// deadline.
type Options struct {
	// Alive reports whether the VMM process still runs: nil while it does,
	// an error (why it is gone) once it is not. Dial checks it before every
	// attempt and every AlivePoll during one, and fails at once with the
	// last dial error when the VMM is gone. Calls never overlap. Nil: the
	// VMM is assumed alive.
	Alive func() error
	// AlivePoll is how often Alive is checked while an attempt or a
	// backoff waits (0: 50 ms).
	AlivePoll time.Duration
	// AttemptTimeout bounds one attempt (connect + Health). 0: 2 s for
	// vsock and hybrid vsock (a connection proves the agent listens, so a
	// slow answer is a broken one); SerialAttemptTimeout for
	// virtio-serial.
	AttemptTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between attempts
	// (0: 10 ms and 200 ms).
	RetryMin, RetryMax time.Duration

	// dialVsock replaces the AF_VSOCK dialer (tests).
	dialVsock func(ctx context.Context, cid, port uint32) (net.Conn, error)
}

// SerialAttemptTimeout bounds one attempt over virtio-serial. Its chardev
// accepts before the guest has booted and holds the request until the agent
// opens the port, so an attempt may wait out a whole boot; but a request
// sent while the agent is still reopening the port after the previous
// host's hang-up is discarded with the port's unread data (virtio_console
// drops it on close), and only a new connection gets an answer. A slow boot
// costs a few reconnects, a lost request at most this long.
const SerialAttemptTimeout = 5 * time.Second

// dialOptions are o as transport.DialWith's options for t.
func (o Options) dialOptions(t Target) transport.DialOptions {
	d := transport.DialOptions{Alive: o.Alive, AlivePoll: o.AlivePoll, AttemptTimeout: o.AttemptTimeout,
		BackoffMin: o.RetryMin, BackoffMax: o.RetryMax, Connect: o.connector()}
	if d.AttemptTimeout <= 0 {
		d.AttemptTimeout = 2 * time.Second
		if t.Serial != "" {
			d.AttemptTimeout = SerialAttemptTimeout
		}
	}
	if d.BackoffMin <= 0 {
		d.BackoffMin = 10 * time.Millisecond
	}
	if d.BackoffMax <= 0 {
		d.BackoffMax = 200 * time.Millisecond
	}
	return d
}

// connector is transport's dialer, unless a test replaced the vsock one.
func (o Options) connector() func(ctx context.Context, a transport.Address) (net.Conn, error) {
	if o.dialVsock == nil {
		return nil
	}
	return func(ctx context.Context, a transport.Address) (net.Conn, error) {
		if a.Scheme == transport.SchemeVsock {
			return o.dialVsock(ctx, a.CID, a.Port)
		}
		return transport.DialOnce(ctx, a)
	}
}

// ErrVMMExited is wrapped by Dial's error when Options.Alive reported the
// VMM gone. It is transport.ErrPeerExited.
var ErrVMMExited = transport.ErrPeerExited

// Connect opens one raw connection to the target (one attempt, bounded by
// ctx): the unix chardev socket for Serial, the CONNECT handshake for
// HybridVsock, AF_VSOCK for VsockCID. Dial retries it; use it directly only
// for a transport-level test.
func Connect(ctx context.Context, t Target, o Options) (net.Conn, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if c := o.connector(); c != nil {
		return c(ctx, t.Address())
	}
	return transport.DialOnce(ctx, t.Address())
}

// Dial connects to the agent, checks its protocol version with Health and
// returns the client. It retries (backoff RetryMin..RetryMax) until ctx ends
// — the guest may not have booted yet — and fails at once when
// Options.Alive reports the VMM gone, or when the agent's major version
// differs (FailedPrecondition). Every failure names the target and the last
// attempt's error; a deadline wraps context.DeadlineExceeded, a dead VMM
// ErrVMMExited. The loop is transport.DialWith's, each attempt a connect
// and New.
func Dial(ctx context.Context, t Target, o Options) (*Client, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	c, err := transport.DialWith(ctx, t.Address(), o.dialOptions(t), New)
	if err != nil {
		return nil, fmt.Errorf("agent at %s: %w", t, err)
	}
	log.G(ctx).WithFields(log.Fields{"target": t.String(), "elapsed": time.Since(start).Round(time.Millisecond),
		"agent_version": c.health.GetAgentVersion(), "protocol": c.health.GetVersion()}).Debug("agent connected")
	return c, nil
}
