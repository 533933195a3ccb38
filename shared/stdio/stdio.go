package stdio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
)

// Config names the stdio of one process as containerd sends it: for each
// stream a FIFO path, a file:// URI (created if missing, appended to) or,
// for stdout and stderr, a binary:// URI naming a logger binary (see
// logger.go); "" for none.
type Config struct {
	Stdin    string `json:"stdin,omitempty"`
	Stdout   string `json:"stdout,omitempty"`
	Stderr   string `json:"stderr,omitempty"`
	Terminal bool   `json:"terminal,omitempty"`

	// ID and Namespace name the process to a binary:// logger (its
	// CONTAINER_ID and CONTAINER_NAMESPACE): as containerd's shim does, the
	// container's id for its init and the exec id for an exec, and the
	// containerd namespace. containerd does not send them with the stdio:
	// the backend sets them before Open. Not persisted.
	ID        string `json:"-"`
	Namespace string `json:"-"`
}

// kind is what a stream's config names.
type kind int

const (
	none   kind = iota
	path        // a plain path: an existing FIFO or file
	file        // file://: a file, created (with its parents) if missing
	binary      // binary://: a logger binary
)

// target is one stream's config, parsed.
type target struct {
	kind kind
	path string
	uri  *url.URL // binary: for its query
}

// parse parses the config v of stream name. Paths must be absolute and
// clean; a URI names no host.
func parse(name, v string) (target, error) {
	if v == "" {
		return target{}, nil
	}
	t := target{kind: path, path: v}
	// A plain path that is no URL (a '%' in it) is taken as it is.
	if u, err := url.Parse(v); err == nil && u.Scheme != "" {
		switch u.Scheme {
		case "file":
			t.kind = file
		case "binary":
			t.kind = binary
		default:
			return target{}, fmt.Errorf("%s %q: scheme %q is not supported (FIFO path, file:// or binary://): %w", name, v, u.Scheme, errdefs.ErrInvalidArgument)
		}
		if u.Host != "" {
			return target{}, fmt.Errorf("%s %q: a %s URI names no host (%s:///path): %w", name, v, u.Scheme, u.Scheme, errdefs.ErrInvalidArgument)
		}
		t.path, t.uri = u.Path, u
	}
	if strings.ContainsRune(t.path, 0) {
		return target{}, fmt.Errorf("%s %q: a NUL byte names no file: %w", name, v, errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(t.path) || filepath.Clean(t.path) != t.path {
		return target{}, fmt.Errorf("%s %q: must be an absolute, clean path: %w", name, v, errdefs.ErrInvalidArgument)
	}
	return t, nil
}

// targets parses and cross-checks the three streams.
func (c Config) targets() (in, out, errT target, err error) {
	if in, err = parse("stdin", c.Stdin); err != nil {
		return
	}
	if out, err = parse("stdout", c.Stdout); err != nil {
		return
	}
	if errT, err = parse("stderr", c.Stderr); err != nil {
		return
	}
	switch {
	case in.kind == binary:
		err = fmt.Errorf("stdin %q: a binary:// logger takes output only: %w", c.Stdin, errdefs.ErrInvalidArgument)
	case c.Terminal && out.kind == binary:
		// a terminal's output is copied from the console into a FIFO or file
		err = fmt.Errorf("stdout %q: a binary:// logger cannot take a terminal's output: %w", c.Stdout, errdefs.ErrInvalidArgument)
	case !c.Terminal && out.kind == binary && errT.kind == binary && c.Stdout != c.Stderr:
		err = fmt.Errorf("stderr %q: names another logger than stdout %q (one binary:// logger a process): %w", c.Stderr, c.Stdout, errdefs.ErrInvalidArgument)
	}
	return
}

// Validate checks every stream's config before anything is opened.
func (c Config) Validate() error {
	_, _, _, err := c.targets()
	return err
}

// PathsOnly checks that every stream the config names is a plain path (a
// FIFO or file that exists), for a process that opens them itself, by path
// (an application kernel): neither file:// nor binary:// targets.
func (c Config) PathsOnly() error {
	for _, s := range []struct{ name, v string }{{"stdin", c.Stdin}, {"stdout", c.Stdout}, {"stderr", c.Stderr}} {
		t, err := parse(s.name, s.v)
		if err != nil {
			return err
		}
		if t.kind != none && t.kind != path {
			return fmt.Errorf("%s %q: only a FIFO or file path can be given to this sandbox, which opens it itself: %w", s.name, s.v, errdefs.ErrInvalidArgument)
		}
		if t.kind == path {
			if _, err := os.Stat(t.path); err != nil {
				return fmt.Errorf("%s %q: %v: %w", s.name, s.v, err, errdefs.ErrInvalidArgument)
			}
		}
	}
	return nil
}

// IO is the stdio of one process.
type IO struct {
	cfg Config

	// child ends, handed to the process and closed after it started
	stdinR, stdout, stderr *os.File
	// null is /dev/null, given by Set to the streams that have no target
	null *os.File
	// our ends
	stdinW    *os.File
	stdinFifo io.ReadWriteCloser
	ttyOut    io.WriteCloser

	closeStdinOnce sync.Once
	// stdinCopied is closed when the copy from the stdin FIFO has ended
	// (nil: no copy).
	stdinCopied chan struct{}
	copies      sync.WaitGroup
	mu          sync.Mutex
	console     console.Console
	closed      bool
}

// ReaderWait bounds how long Open waits for containerd's reader of an
// output FIFO (see openOutput).
const ReaderWait = 2 * time.Second

// Open opens the stdio of cfg. With cfg.Terminal the output FIFO is opened for
// the console copy; otherwise the files to give the child are ready, and a
// binary:// logger is started and ready. On error nothing stays open and no
// logger is left running. It waits up to ReaderWait for containerd's reader
// of each output FIFO (see openOutput).
func Open(ctx context.Context, cfg Config) (*IO, error) { return open(ctx, cfg, ReaderWait) }

// Reopen is Open for a process that was already running (a daemon's
// recovery): containerd's readers, if it is up, have long been open, and
// none is waited for.
func Reopen(ctx context.Context, cfg Config) (*IO, error) { return open(ctx, cfg, 0) }

func open(ctx context.Context, cfg Config, readerWait time.Duration) (_ *IO, retErr error) {
	in, out, errT, err := cfg.targets()
	if err != nil {
		return nil, err
	}
	s := &IO{cfg: cfg}
	defer func() {
		if retErr != nil {
			s.Close()
		}
	}()
	if in.kind != none {
		// The open completes when containerd opens the write end, which may be
		// after the request that got here has returned: the FIFO must not end
		// with the request's context (containerd/fifo closes a pending open
		// when its context is done), only with Close.
		f, err := fifo.OpenFifo(context.WithoutCancel(ctx), in.path, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
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
			// Not one of s.copies: Wait, which a backend calls once the
			// process has exited, must not wait for containerd to close
			// its end of stdin (CRI holds it open while the container
			// lives), or that exit is never reported.
			s.stdinCopied = make(chan struct{})
			go func() {
				defer close(s.stdinCopied)
				_, _ = io.Copy(w, f)
				s.closeStdin()
			}()
		}
	}
	if s.stdout, err = openOutput("stdout", cfg.Stdout, out, readerWait); err != nil {
		return nil, err
	}
	if cfg.Terminal {
		// containerd sends no stderr with a terminal; one is ignored
		s.ttyOut, s.stdout = s.stdout, nil
	} else {
		switch {
		case errT.kind == none || errT.kind == binary:
		case cfg.Stderr == cfg.Stdout:
			fd, err := syscall.Dup(int(s.stdout.Fd()))
			if err != nil {
				return nil, fmt.Errorf("stderr: %w", err)
			}
			s.stderr = os.NewFile(uintptr(fd), cfg.Stderr)
		default:
			if s.stderr, err = openOutput("stderr", cfg.Stderr, errT, readerWait); err != nil {
				return nil, err
			}
		}
	}
	if s.stdinR == nil || s.stdout == nil || s.stderr == nil {
		if s.null, err = os.OpenFile(os.DevNull, os.O_RDWR|syscall.O_CLOEXEC, 0); err != nil {
			return nil, err
		}
	}
	// Last, so that nothing fails once the logger runs.
	if !cfg.Terminal && (out.kind == binary || errT.kind == binary) {
		if err := s.startLogger(ctx, out, errT); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// openOutput opens the output target t of stream name (config v): a FIFO
// read-write (never blocks, no reader needed, and the pipe never breaks while
// containerd restarts), or a file for appending, created with its parents
// for a file:// URI. Nothing for none or binary.
//
// Before it opens a FIFO it waits, up to readerWait, for a reader to have it
// open: containerd opens its reader in the background (containerd/fifo: a
// blocking open that waits for a writer), and a process that ends within a
// millisecond (a wasm exec) could open and close its end before that open
// was made; the reader then waits for a writer forever (CRI's ExecSync
// fails: "failed to drain exec process io") and what the process wrote is
// lost with the last descriptor. A write-only end probes for the reader
// (ENXIO while there is none) and is held until the read-write one is open,
// so that the reader never sees the FIFO without a writer.
func openOutput(name, v string, t target, readerWait time.Duration) (*os.File, error) {
	if t.kind != path && t.kind != file {
		return nil, nil
	}
	fi, err := os.Stat(t.path)
	if t.kind == file && errors.Is(err, fs.ErrNotExist) {
		// as containerd's shim does; private, as output may be sensitive
		if err := os.MkdirAll(filepath.Dir(t.path), 0o700); err != nil {
			return nil, fmt.Errorf("%s %q: %v: %w", name, v, err, errdefs.ErrInvalidArgument)
		}
		f, err := os.OpenFile(t.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %v: %w", name, v, err, errdefs.ErrInvalidArgument)
		}
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s %q: %v: %w", name, v, err, errdefs.ErrInvalidArgument)
	}
	flags := os.O_WRONLY | os.O_APPEND
	switch {
	case fi.Mode()&os.ModeNamedPipe != 0:
		flags = os.O_RDWR
		if probe := waitReader(t.path, readerWait); probe >= 0 {
			defer syscall.Close(probe)
		}
	case fi.Mode().IsRegular():
	default:
		return nil, fmt.Errorf("%s %q: not a FIFO or regular file: %w", name, v, errdefs.ErrInvalidArgument)
	}
	f, err := os.OpenFile(t.path, flags|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOMEM) {
			return nil, fmt.Errorf("%s %q: %v: %w", name, v, err, errdefs.ErrResourceExhausted)
		}
		// the caller named something that cannot take output
		return nil, fmt.Errorf("%s %q: %v: %w", name, v, err, errdefs.ErrInvalidArgument)
	}
	return f, nil
}

// waitReader waits up to d until the FIFO at path has a reader, and returns
// a write-only descriptor of it then (for the caller to close), or -1 when
// none came (or the FIFO cannot be opened: the caller's open reports why).
func waitReader(path string, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err == nil {
			return fd
		}
		if !errors.Is(err, syscall.ENXIO) || !time.Now().Before(deadline) {
			return -1
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Terminal reports whether the process runs on a terminal.
func (s *IO) Terminal() bool { return s.cfg.Terminal }

// Config is what the IO was opened from.
func (s *IO) Config() Config { return s.cfg }

// Set gives the child ends to cmd (go-runc's IO interface), and /dev/null
// for every stream without a target, as containerd's shim does. Never
// none: go-runc runs a command with neither stdout nor stderr set through a
// pipe it reads to EOF, and a container started by `runc create` or `runc
// exec --detach` inherits that pipe, so the call would return only once
// the container exits.
func (s *IO) Set(cmd *exec.Cmd) {
	// (a nil *os.File must not become a non-nil io.Reader or io.Writer)
	if f := s.child(s.stdinR); f != nil {
		cmd.Stdin = f
	}
	if f := s.child(s.stdout); f != nil {
		cmd.Stdout = f
	}
	if f := s.child(s.stderr); f != nil {
		cmd.Stderr = f
	}
}

// child is f, or /dev/null without f (nil once the child ends are closed).
func (s *IO) child(f *os.File) *os.File {
	if f != nil {
		return f
	}
	return s.null
}

// Files are the child ends (nil where the config names none).
func (s *IO) Files() (stdin, stdout, stderr *os.File) { return s.stdinR, s.stdout, s.stderr }

// Stdin, Stdout and Stderr satisfy go-runc's IO interface; the copies are ours.
func (s *IO) Stdin() io.WriteCloser { return nil }
func (s *IO) Stdout() io.ReadCloser { return nil }
func (s *IO) Stderr() io.ReadCloser { return nil }

// CloseChildEnds closes our copies of the ends the child now holds.
func (s *IO) CloseChildEnds() {
	for _, f := range []**os.File{&s.stdinR, &s.stdout, &s.stderr, &s.null} {
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

// stdinDrain bounds how long CloseStdin lets the copy from the stdin FIFO
// move what containerd wrote before it cuts it.
const stdinDrain = 2 * time.Second

// CloseStdin ends the process's stdin (CloseIO). CRI writes, closes its end
// of the FIFO and sends CloseIO at once: what it wrote may still be in the
// FIFO, or on its way to the process's pipe, so the copy is given the time
// to reach the FIFO's EOF (stdinDrain at most) before stdin is closed. It
// returns at once.
func (s *IO) CloseStdin() {
	done := s.stdinCopied
	if done == nil {
		s.closeStdin()
		return
	}
	select {
	case <-done: // the copy ended and closed stdin
		return
	default:
	}
	go func() {
		t := time.NewTimer(stdinDrain)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			s.closeStdin()
		}
	}()
}

// closeStdin closes the process's stdin now.
func (s *IO) closeStdin() {
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
