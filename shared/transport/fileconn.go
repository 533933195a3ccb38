package transport

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// fileConn is a net.Conn over an *os.File: a connected AF_VSOCK socket or a
// serial device. The descriptor must be non-blocking (or opened with
// os.OpenFile, which makes pollable descriptors non-blocking) so that the
// runtime poller serves Read and Write and deadlines work.
type fileConn struct {
	f             *os.File
	local, remote net.Addr
	tty           bool // a terminal: EIO means the other side hung up
}

var _ net.Conn = (*fileConn)(nil)

func newFileConn(f *os.File, local, remote net.Addr) *fileConn {
	return &fileConn{f: f, local: local, remote: remote}
}

// Read reads from the file. End of stream is io.EOF, unwrapped.
func (c *fileConn) Read(b []byte) (int, error) {
	n, err := c.f.Read(b)
	if err == nil || err == io.EOF {
		return n, err
	}
	if c.tty && errors.Is(err, syscall.EIO) {
		return n, io.EOF
	}
	return n, c.opError("read", err)
}

// Write writes to the file.
func (c *fileConn) Write(b []byte) (int, error) {
	n, err := c.f.Write(b)
	if err != nil {
		err = c.opError("write", err)
	}
	return n, err
}

// Close closes the file, unblocking pending Read and Write calls.
func (c *fileConn) Close() error {
	if err := c.f.Close(); err != nil {
		return c.opError("close", err)
	}
	return nil
}

func (c *fileConn) LocalAddr() net.Addr  { return c.local }
func (c *fileConn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read and write deadlines. It fails with
// os.ErrNoDeadline if the descriptor cannot be polled.
func (c *fileConn) SetDeadline(t time.Time) error {
	return c.wrapDeadline(c.f.SetDeadline(t))
}

// SetReadDeadline sets the read deadline.
func (c *fileConn) SetReadDeadline(t time.Time) error {
	return c.wrapDeadline(c.f.SetReadDeadline(t))
}

// SetWriteDeadline sets the write deadline.
func (c *fileConn) SetWriteDeadline(t time.Time) error {
	return c.wrapDeadline(c.f.SetWriteDeadline(t))
}

// SyscallConn gives access to the descriptor without changing its blocking
// mode (unlike os.File.Fd).
func (c *fileConn) SyscallConn() (syscall.RawConn, error) {
	return c.f.SyscallConn()
}

func (c *fileConn) wrapDeadline(err error) error {
	if err != nil {
		return c.opError("set deadline", err)
	}
	return nil
}

// opError converts an os.File error to what a net.Conn returns: a
// *net.OpError whose Err is net.ErrClosed after Close, or the deadline or
// errno error otherwise.
func (c *fileConn) opError(op string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, os.ErrClosed) {
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: c.local.Network(), Source: c.local, Addr: c.remote, Err: err}
}
