package stdio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/containerd/console"
	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
)

// Config names the stdio of one process as containerd sends it.
type Config struct {
	Stdin    string `json:"stdin,omitempty"`
	Stdout   string `json:"stdout,omitempty"`
	Stderr   string `json:"stderr,omitempty"`
	Terminal bool   `json:"terminal,omitempty"`
}

// Validate checks every path before anything is opened.
func (c Config) Validate() error {
	for _, f := range []struct{ name, v string }{{"stdin", c.Stdin}, {"stdout", c.Stdout}, {"stderr", c.Stderr}} {
		if f.v == "" {
			continue
		}
		p, err := pathOf(f.v)
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return fmt.Errorf("%s %q: must be an absolute, clean path: %w", f.name, f.v, errdefs.ErrInvalidArgument)
		}
	}
	if c.Terminal && c.Stderr != "" && c.Stderr != c.Stdout {
		// containerd sends no stderr with a terminal; tolerate but ignore one.
		return nil
	}
	return nil
}

// pathOf accepts a plain path or a file:// URI.
func pathOf(s string) (string, error) {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		if u.Scheme != "file" {
			return "", fmt.Errorf("%q: scheme %q is not supported (FIFO path or file://): %w", s, u.Scheme, errdefs.ErrInvalidArgument)
		}
		return u.Path, nil
	}
	return s, nil
}

// IO is the stdio of one process.
type IO struct {
	cfg Config

	// child ends, handed to the process and closed after it started
	stdinR, stdout, stderr *os.File
	// our ends
	stdinW    *os.File
	stdinFifo io.ReadWriteCloser
	ttyOut    io.WriteCloser

	closeStdinOnce sync.Once
	copies         sync.WaitGroup
	mu             sync.Mutex
	console        console.Console
	closed         bool
}

// Open opens the stdio of cfg. With cfg.Terminal the output FIFO is opened for
// the console copy; otherwise the files to give the child are ready. On error
// nothing stays open.
func Open(ctx context.Context, cfg Config) (_ *IO, retErr error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &IO{cfg: cfg}
	defer func() {
		if retErr != nil {
			s.Close()
		}
	}()
	if cfg.Stdin != "" {
		p, _ := pathOf(cfg.Stdin)
		// The open completes when containerd opens the write end, which may be
		// after the request that got here has returned: the FIFO must not end
		// with the request's context (containerd/fifo closes a pending open
		// when its context is done), only with Close.
		f, err := fifo.OpenFifo(context.WithoutCancel(ctx), p, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("stdin %q: %w", cfg.Stdin, errdefs.ErrInvalidArgument)
		}
		s.stdinFifo = f
		if !cfg.Terminal {
			r, w, err := os.Pipe()
			if err != nil {
				return nil, fmt.Errorf("stdin pipe: %w", err)
			}
			s.stdinR, s.stdinW = r, w
			s.copies.Add(1)
			go func() {
				defer s.copies.Done()
				_, _ = io.Copy(w, f)
				s.CloseStdin()
			}()
		}
	}
	var err error
	if s.stdout, err = openOutput("stdout", cfg.Stdout); err != nil {
		return nil, err
	}
	if cfg.Terminal {
		s.ttyOut, s.stdout = s.stdout, nil
		return s, nil
	}
	switch {
	case cfg.Stderr == "":
	case cfg.Stderr == cfg.Stdout && s.stdout != nil:
		fd, err := syscall.Dup(int(s.stdout.Fd()))
		if err != nil {
			return nil, fmt.Errorf("stderr: %w", err)
		}
		s.stderr = os.NewFile(uintptr(fd), cfg.Stderr)
	default:
		if s.stderr, err = openOutput("stderr", cfg.Stderr); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// openOutput opens a FIFO read-write (never blocks, no reader needed) or a
// file:// target for appending.
func openOutput(name, v string) (*os.File, error) {
	if v == "" {
		return nil, nil
	}
	p, _ := pathOf(v)
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %v: %w", name, v, err, errdefs.ErrInvalidArgument)
	}
	flags := os.O_WRONLY | os.O_APPEND
	switch {
	case fi.Mode()&os.ModeNamedPipe != 0:
		flags = os.O_RDWR
	case fi.Mode().IsRegular():
	default:
		return nil, fmt.Errorf("%s %q: not a FIFO or regular file: %w", name, v, errdefs.ErrInvalidArgument)
	}
	f, err := os.OpenFile(p, flags|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", name, v, err)
	}
	return f, nil
}

// Terminal reports whether the process runs on a terminal.
func (s *IO) Terminal() bool { return s.cfg.Terminal }

// Config is what the IO was opened from.
func (s *IO) Config() Config { return s.cfg }

// Set gives the child ends to cmd (go-runc's IO interface).
func (s *IO) Set(cmd *exec.Cmd) {
	if s.stdinR != nil {
		cmd.Stdin = s.stdinR
	}
	if s.stdout != nil {
		cmd.Stdout = s.stdout
	}
	if s.stderr != nil {
		cmd.Stderr = s.stderr
	}
}

// Files are the child ends (nil where there is none).
func (s *IO) Files() (stdin, stdout, stderr *os.File) { return s.stdinR, s.stdout, s.stderr }

// Stdin, Stdout and Stderr satisfy go-runc's IO interface; the copies are ours.
func (s *IO) Stdin() io.WriteCloser { return nil }
func (s *IO) Stdout() io.ReadCloser { return nil }
func (s *IO) Stderr() io.ReadCloser { return nil }

// CloseChildEnds closes our copies of the ends the child now holds.
func (s *IO) CloseChildEnds() {
	for _, f := range []**os.File{&s.stdinR, &s.stdout, &s.stderr} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
}

// AttachConsole copies between the terminal master and the FIFOs.
func (s *IO) AttachConsole(con console.Console) {
	s.mu.Lock()
	s.console = con
	s.mu.Unlock()
	if s.stdinFifo != nil {
		in := s.stdinFifo
		go func() {
			_, _ = io.Copy(con, in)
			// The terminal is gone (the process exited). Swallow what
			// containerd still writes until Close: CRI closes a TTY
			// process's output as soon as its stdin copy fails, which would
			// lose output it has not read yet.
			_, _ = io.Copy(io.Discard, in)
		}()
	}
	if s.ttyOut != nil {
		s.copies.Add(1)
		go func() {
			defer s.copies.Done()
			_, _ = io.Copy(s.ttyOut, con) // ends with EIO once the last slave closes
			s.ttyOut.Close()
		}()
	}
}

// Resize sets the terminal size.
func (s *IO) Resize(width, height uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.console == nil {
		return fmt.Errorf("process has no terminal: %w", errdefs.ErrFailedPrecondition)
	}
	return s.console.Resize(console.WinSize{Width: uint16(width), Height: uint16(height)})
}

// CloseStdin ends the process's stdin (CloseIO).
func (s *IO) CloseStdin() {
	s.closeStdinOnce.Do(func() {
		if s.stdinW != nil {
			s.stdinW.Close()
		}
		if s.stdinFifo != nil {
			s.stdinFifo.Close()
		}
		s.mu.Lock()
		if s.console != nil && s.cfg.Terminal {
			// EOF on a terminal is ^D
			_, _ = s.console.Write([]byte{4})
		}
		s.mu.Unlock()
	})
}

// Wait waits for the output copies to finish (the terminal's output drained).
func (s *IO) Wait() { s.copies.Wait() }

// Finish releases what the process no longer needs once it exited and its
// output was drained (Wait): everything but a terminal's stdin FIFO, which
// stays open, drained, until Close, so that containerd never sees a broken
// pipe while it still reads the output (CRI ends a TTY's output copy when its
// stdin copy ends). Close still releases everything.
func (s *IO) Finish() {
	if !s.cfg.Terminal || s.stdinFifo == nil {
		s.Close()
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	con := s.console
	s.console = nil
	s.mu.Unlock()
	s.CloseChildEnds()
	if con != nil {
		con.Close()
	}
	if s.ttyOut != nil {
		s.ttyOut.Close()
	}
}

// Close releases every descriptor still open here. Idempotent.
func (s *IO) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	con := s.console
	s.mu.Unlock()
	s.CloseChildEnds()
	if s.stdinW != nil {
		s.stdinW.Close()
	}
	if s.stdinFifo != nil {
		s.stdinFifo.Close()
	}
	if con != nil {
		con.Close()
	}
	if s.ttyOut != nil {
		s.ttyOut.Close()
	}
	return nil
}

// ErrNoTerminal is returned for terminal operations on a process without one.
var ErrNoTerminal = errors.New("no terminal")

// CloseAfterStart implements go-runc's StartCloser: once runc has started,
// our copies of the child ends are closed.
func (s *IO) CloseAfterStart() error {
	s.CloseChildEnds()
	return nil
}
