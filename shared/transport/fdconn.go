package transport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// maxRecvFDs bounds the descriptors one read takes (more are closed by the
// kernel: MSG_CTRUNC).
const maxRecvFDs = 32

// FDListener wraps a unix listener so that every connection it accepts is
// an *FDConn: reads go through recvmsg(2) and keep the descriptors that
// arrive with the bytes (SCM_RIGHTS), as a server that takes descriptors
// out of band on its requests' connection does (Cloud Hypervisor's API:
// tap descriptors with vm.add-net).
func FDListener(l *net.UnixListener) net.Listener { return fdListener{l} }

type fdListener struct{ *net.UnixListener }

func (l fdListener) Accept() (net.Conn, error) {
	c, err := l.AcceptUnix()
	if err != nil {
		return nil, err
	}
	return &FDConn{UnixConn: c}, nil
}

// FDConn is a unix connection that keeps the descriptors it receives. They
// are close-on-exec (MSG_CMSG_CLOEXEC) until the holder passes them on.
type FDConn struct {
	*net.UnixConn

	mu     sync.Mutex
	fds    []*os.File
	closed bool
}

// Read reads like net.Conn's Read, keeping any descriptors that come with
// the bytes; it honours the connection's deadlines.
func (c *FDConn) Read(b []byte) (int, error) {
	rc, err := c.UnixConn.SyscallConn()
	if err != nil {
		return 0, err
	}
	oob := make([]byte, unix.CmsgSpace(maxRecvFDs*4))
	var n, oobn int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), b, oob, unix.MSG_CMSG_CLOEXEC)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err == nil {
		err = rerr
	}
	if oobn > 0 {
		if perr := c.keep(oob[:oobn]); perr != nil && err == nil {
			err = perr
		}
	}
	if err != nil {
		return 0, &net.OpError{Op: "read", Net: "unix", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	if n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// keep parses SCM_RIGHTS messages and keeps their descriptors.
func (c *FDConn) keep(oob []byte) error {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Errorf("control message: %w", err)
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue // not SCM_RIGHTS
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), fmt.Sprintf("fd:%d", fd)))
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		for _, f := range files {
			f.Close()
		}
		return net.ErrClosed
	}
	c.fds = append(c.fds, files...)
	return nil
}

// TakeFDs returns the descriptors received so far, in order, and forgets
// them: the caller owns (and closes) them.
func (c *FDConn) TakeFDs() []*os.File {
	c.mu.Lock()
	defer c.mu.Unlock()
	fds := c.fds
	c.fds = nil
	return fds
}

// Close closes the connection and the descriptors nobody took.
func (c *FDConn) Close() error {
	c.mu.Lock()
	fds := c.fds
	c.fds, c.closed = nil, true
	c.mu.Unlock()
	for _, f := range fds {
		f.Close()
	}
	return c.UnixConn.Close()
}
