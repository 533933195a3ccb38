package transport

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"
	"syscall"
)

// OpenSerial opens a virtio-serial port as a net.Conn for a ttrpc client or
// server. path is either the port's character device (/dev/vportNpM in a
// guest, or any pollable character device such as a pty) or the host-side
// unix socket of a QEMU chardev (-chardev socket,server=on), which is dialled
// once.
//
// A device is opened read-write, close-on-exec, without becoming the
// controlling terminal, and non-blocking so that the runtime poller serves it
// and deadlines work (a device that cannot be polled falls back to blocking
// I/O and its SetDeadline methods fail with os.ErrNoDeadline). A terminal is
// switched to raw mode so that the byte stream passes unchanged.
func OpenSerial(path string) (net.Conn, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open serial port: %w", err)
	}
	if fi.Mode().Type() == fs.ModeSocket {
		c, err := net.Dial("unix", path)
		if err != nil {
			return nil, fmt.Errorf("open serial port %s: %w", path, err)
		}
		return c, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open serial port: %w", err)
	}
	tty, err := makeRawIfTerminal(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open serial port %s: set raw mode: %w", path, err)
	}
	c := newFileConn(f, fileAddr{network: "serial", name: path}, fileAddr{network: "serial", name: path})
	c.tty = tty
	return c, nil
}

// SerialListener returns a net.Listener whose first Accept yields conn and
// whose later Accepts block until Close, so that a ttrpc server can Serve a
// single virtio-serial port. Close does not close a connection already
// accepted (the server owns it then); it does close conn if it was never
// accepted. Addr is conn.LocalAddr().
func SerialListener(conn net.Conn) net.Listener {
	return &serialListener{conn: conn, done: make(chan struct{})}
}

type serialListener struct {
	conn net.Conn
	done chan struct{} // closed by Close

	mu       sync.Mutex
	closed   bool
	accepted bool
}

var _ net.Listener = (*serialListener)(nil)

func (l *serialListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.closed && !l.accepted {
		l.accepted = true
		c := l.conn
		l.mu.Unlock()
		return c, nil
	}
	l.mu.Unlock()
	<-l.done
	return nil, &net.OpError{Op: "accept", Net: "serial", Addr: l.Addr(), Err: net.ErrClosed}
}

func (l *serialListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return &net.OpError{Op: "close", Net: "serial", Addr: l.conn.LocalAddr(), Err: net.ErrClosed}
	}
	l.closed = true
	close(l.done)
	if !l.accepted {
		return l.conn.Close()
	}
	return nil
}

func (l *serialListener) Addr() net.Addr { return l.conn.LocalAddr() }
