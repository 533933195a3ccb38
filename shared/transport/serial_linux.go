package transport

import (
	"os"

	"golang.org/x/sys/unix"
)

// makeRawIfTerminal puts f in raw mode (as cfmakeraw does) if it is a
// terminal, and reports whether it is one. It uses the descriptor through
// SyscallConn so that f stays non-blocking.
func makeRawIfTerminal(f *os.File) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var (
		tty    bool
		setErr error
	)
	if err := rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			return // not a terminal (ENOTTY) or no termios: leave it be
		}
		tty = true
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		t.Cc[unix.VMIN] = 1
		t.Cc[unix.VTIME] = 0
		setErr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t)
	}); err != nil {
		return false, err
	}
	return tty, setErr
}
