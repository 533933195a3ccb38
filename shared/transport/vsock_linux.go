package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ListenVsock listens for AF_VSOCK stream connections on port of every local
// CID (VMADDR_CID_ANY); the in-guest agent uses it. Pass VMADDR_PORT_ANY
// (0xFFFFFFFF) to have the kernel pick a port, then read it from Addr.
func ListenVsock(port uint32) (net.Listener, error) {
	fd, err := vsockSocket()
	if err != nil {
		return nil, fmt.Errorf("listen vsock port %d: %w", port, err)
	}
	if err := unix.Bind(fd, listenSockaddr(port)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen vsock port %d: bind: %w", port, vsockErr(err))
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen vsock port %d: %w", port, err)
	}
	local, err := vsockSockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen vsock port %d: %w", port, err)
	}
	f := os.NewFile(uintptr(fd), "vsock-listener:"+local.String())
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("listen vsock port %d: %w", port, err)
	}
	return &vsockListener{f: f, rc: rc, addr: local}, nil
}

// vsockListener accepts AF_VSOCK connections through the runtime poller.
type vsockListener struct {
	f      *os.File
	rc     syscall.RawConn
	addr   *VsockAddr
	closed atomic.Bool
}

var _ net.Listener = (*vsockListener)(nil)

// Accept waits for the next connection.
func (l *vsockListener) Accept() (net.Conn, error) {
	var (
		nfd  int
		sa   unix.Sockaddr
		aerr error
	)
	err := l.rc.Read(func(fd uintptr) bool {
		for {
			nfd, sa, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if aerr != unix.EINTR {
				return aerr != unix.EAGAIN
			}
		}
	})
	if err == nil {
		err = aerr
	}
	if err != nil {
		if l.closed.Load() {
			err = net.ErrClosed
		}
		return nil, &net.OpError{Op: "accept", Net: SchemeVsock, Addr: l.addr, Err: err}
	}
	remote := &VsockAddr{}
	if vm, ok := sa.(*unix.SockaddrVM); ok {
		remote = &VsockAddr{CID: vm.CID, Port: vm.Port}
	}
	local, err := vsockSockname(nfd)
	if err != nil {
		local = l.addr
	}
	f := os.NewFile(uintptr(nfd), "vsock:"+remote.String())
	return newFileConn(f, local, remote), nil
}

// Close stops the listener; a pending Accept returns net.ErrClosed.
func (l *vsockListener) Close() error {
	if !l.closed.CompareAndSwap(false, true) {
		return &net.OpError{Op: "close", Net: SchemeVsock, Addr: l.addr, Err: net.ErrClosed}
	}
	return l.f.Close()
}

// Addr returns the bound CID and port.
func (l *vsockListener) Addr() net.Addr { return l.addr }

// dialVsock makes one non-blocking AF_VSOCK connection attempt, bounded by
// ctx.
func dialVsock(ctx context.Context, cid, port uint32) (_ net.Conn, retErr error) {
	fd, err := vsockSocket()
	if err != nil {
		return nil, err
	}
	remote := &VsockAddr{CID: cid, Port: port}
	f := os.NewFile(uintptr(fd), "vsock:"+remote.String())
	defer func() {
		if retErr != nil {
			f.Close()
		}
	}()
	switch err := unix.Connect(fd, dialSockaddr(cid, port)); err {
	case nil:
	case unix.EINPROGRESS, unix.EINTR, unix.EALREADY:
		if err := waitConnected(ctx, f); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			return nil, fmt.Errorf("connect vsock %s: %w", remote, vsockErr(err))
		}
	default:
		return nil, fmt.Errorf("connect vsock %s: %w", remote, vsockErr(err))
	}
	local, err := vsockSockname(fd)
	if err != nil {
		return nil, err
	}
	return newFileConn(f, local, remote), nil
}

// waitConnected waits for a non-blocking connect on f to finish and returns
// its error (from SO_ERROR), or ctx's error if ctx ends first.
func waitConnected(ctx context.Context, f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := f.SetWriteDeadline(dl); err != nil {
			return err
		}
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(aLongTimeAgo) })
	defer stop()
	var connErr error
	err = rc.Write(func(fd uintptr) bool {
		errno, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			connErr = err
			return true
		}
		switch e := syscall.Errno(errno); e {
		case 0:
			// Writable with no error: connected, unless this is the call
			// made before waiting at all.
			if _, err := unix.Getpeername(int(fd)); err == nil {
				return true
			}
			return false
		case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
			return false
		default:
			connErr = e
			return true
		}
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if connErr != nil {
		return connErr
	}
	return f.SetWriteDeadline(time.Time{})
}

// vsockSocket opens a non-blocking AF_VSOCK stream socket.
func vsockSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open AF_VSOCK socket: %w", vsockErr(err))
	}
	return fd, nil
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

func listenSockaddr(port uint32) *unix.SockaddrVM {
	return &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}
}

func dialSockaddr(cid, port uint32) *unix.SockaddrVM {
	return &unix.SockaddrVM{CID: cid, Port: port}
}

func vsockSockname(fd int) (*VsockAddr, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	vm, ok := sa.(*unix.SockaddrVM)
	if !ok {
		return nil, fmt.Errorf("getsockname: not a vsock address: %T", sa)
	}
	return &VsockAddr{CID: vm.CID, Port: vm.Port}, nil
}
