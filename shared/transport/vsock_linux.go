package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/containerd/errdefs"
	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"
)

// ListenVsock listens for AF_VSOCK stream connections on port of every local
// CID (VMADDR_CID_ANY); the in-guest agent uses it. Pass VMADDR_PORT_ANY
// (0xFFFFFFFF) or 0 to have the kernel pick a port, then read it from Addr.
// Addr, and the LocalAddr and RemoteAddr of accepted connections, are
// *VsockAddr.
func ListenVsock(port uint32) (net.Listener, error) {
	// CID_ANY rather than vsock.Listen's local CID: the agent need not read
	// /dev/vsock first, and a guest whose CID changes (snapshot restore)
	// keeps its listener.
	l, err := vsock.ListenContextID(unix.VMADDR_CID_ANY, port, nil)
	if err != nil {
		return nil, fmt.Errorf("listen vsock port %d: %w", port, vsockErr(unwrapOp(err)))
	}
	return &vsockListener{l: l, addr: toVsockAddr(l.Addr())}, nil
}

// vsockListener is a vsock.Listener reporting *VsockAddr, whose Accept and
// Close after Close return net.ErrClosed (vsock's own say "use of closed
// network connection" without wrapping it).
type vsockListener struct {
	l      *vsock.Listener
	addr   *VsockAddr
	closed atomic.Bool
}

var _ net.Listener = (*vsockListener)(nil)

// Accept waits for the next connection.
func (l *vsockListener) Accept() (net.Conn, error) {
	c, err := l.l.Accept()
	if err != nil {
		err = unwrapOp(err)
		if l.closed.Load() {
			err = net.ErrClosed
		}
		return nil, &net.OpError{Op: "accept", Net: SchemeVsock, Addr: l.addr, Err: err}
	}
	if vc, ok := c.(*vsock.Conn); ok {
		return newVsockConn(vc), nil
	}
	return c, nil
}

// Close stops the listener; a pending Accept returns net.ErrClosed.
func (l *vsockListener) Close() error {
	if !l.closed.CompareAndSwap(false, true) {
		return &net.OpError{Op: "close", Net: SchemeVsock, Addr: l.addr, Err: net.ErrClosed}
	}
	return l.l.Close()
}

// Addr returns the bound CID and port.
func (l *vsockListener) Addr() net.Addr { return l.addr }

// vsockConn is a vsock.Conn (CloseRead, CloseWrite and SyscallConn
// included) whose addresses are *VsockAddr.
type vsockConn struct {
	*vsock.Conn
	local, remote *VsockAddr
}

func newVsockConn(c *vsock.Conn) *vsockConn {
	return &vsockConn{Conn: c, local: toVsockAddr(c.LocalAddr()), remote: toVsockAddr(c.RemoteAddr())}
}

// LocalAddr returns the local CID and port.
func (c *vsockConn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the peer's CID and port.
func (c *vsockConn) RemoteAddr() net.Addr { return c.remote }

// vsockConnect makes one blocking AF_VSOCK connection; tests replace it.
var vsockConnect = func(cid, port uint32) (net.Conn, error) {
	c, err := vsock.Dial(cid, port, nil)
	if err != nil {
		return nil, err
	}
	return newVsockConn(c), nil
}

// dialVsock makes one AF_VSOCK connection attempt, bounded by ctx.
//
// vsock.Dial takes no context, so it runs on a goroutine of its own and
// dialVsock returns as soon as ctx ends; a connection made after that is
// closed by the goroutine. The abandoned connect lasts at most the kernel's
// vsock connect timeout (SO_VM_SOCKETS_CONNECT_TIMEOUT, 2 s by default),
// after which it fails with ETIMEDOUT and the goroutine ends.
func dialVsock(ctx context.Context, cid, port uint32) (net.Conn, error) {
	remote := &VsockAddr{CID: cid, Port: port}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("connect vsock %s: %w", remote, err)
	}
	type result struct {
		c   net.Conn
		err error
	}
	connect := vsockConnect
	done := make(chan result, 1)
	go func() {
		c, err := connect(cid, port)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect vsock %s: %w", remote, vsockErr(unwrapOp(r.err)))
		}
		return r.c, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, fmt.Errorf("connect vsock %s: %w", remote, ctx.Err())
	}
}

// unwrapOp returns what a *net.OpError of package vsock wraps (such as
// "connect: no such device"), since the caller names the operation and the
// address itself; any other error is returned as it is.
func unwrapOp(err error) error {
	if op, ok := err.(*net.OpError); ok && op.Err != nil {
		return op.Err
	}
	return err
}

// toVsockAddr converts package vsock's address.
func toVsockAddr(a net.Addr) *VsockAddr {
	if va, ok := a.(*vsock.Addr); ok && va != nil {
		return &VsockAddr{CID: va.ContextID, Port: va.Port}
	}
	return &VsockAddr{CID: vsockCIDAny, Port: vsockPortAny}
}

// vsockErr adds errdefs.ErrFailedPrecondition to errors that mean this host
// has no usable vsock: no AF_VSOCK family, or no transport for the CID
// (ENODEV: no vhost-vsock on a host, no virtio-vsock device in a guest).
func vsockErr(err error) error {
	switch {
	case errors.Is(err, unix.EAFNOSUPPORT):
		return fmt.Errorf("%w: this kernel has no AF_VSOCK support: %w", err, errdefs.ErrFailedPrecondition)
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("%w: no vsock transport for this CID (is vhost_vsock loaded on the host, or a virtio-vsock device present in the guest?): %w",
			err, errdefs.ErrFailedPrecondition)
	}
	return err
}
