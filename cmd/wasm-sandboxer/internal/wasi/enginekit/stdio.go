package enginekit

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// ErrKilled is returned by reads and writes a Kill abandoned.
var ErrKilled = errors.New("instance killed")

const stdinChunk = 32 << 10

type chunk struct {
	b   []byte
	err error
}

// Stdin is an instance's fd 0: reads of the underlying reader happen in a
// pump goroutine (started by the first read or poll), so a module waiting
// for input can be killed while the pump stays blocked. One chunk is read
// ahead at most. Only the instance's goroutine reads from a Stdin; Abort is
// safe from any goroutine.
type Stdin struct {
	r        io.Reader
	once     sync.Once
	ch       chan chunk
	stop     chan struct{}
	stopOnce sync.Once
	pending  []byte
	err      error
}

// NewStdin wraps r; a nil r reads as empty.
func NewStdin(r io.Reader) *Stdin {
	s := &Stdin{r: r, stop: make(chan struct{})}
	if r == nil {
		s.err = io.EOF
	}
	return s
}

func (s *Stdin) start() {
	s.once.Do(func() {
		s.ch = make(chan chunk)
		go s.pump()
	})
}

func (s *Stdin) pump() {
	for {
		buf := make([]byte, stdinChunk)
		n, err := s.r.Read(buf)
		if n > 0 || err != nil {
			select {
			case s.ch <- chunk{b: buf[:n], err: err}:
			case <-s.stop:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *Stdin) take(c chunk) {
	s.pending = c.b
	if c.err != nil {
		s.err = c.err
	}
}

// Ready reports whether Read would return without waiting, taking a chunk
// the pump has ready.
func (s *Stdin) Ready() bool {
	if len(s.pending) > 0 || s.err != nil {
		return true
	}
	s.start()
	select {
	case c := <-s.ch:
		s.take(c)
		return true
	default:
		return false
	}
}

// Buffered is the number of bytes a Read returns at once (0 at EOF).
func (s *Stdin) Buffered() int { return len(s.pending) }

// Wake is what Wait returned for.
type Wake int

const (
	WakeStdin Wake = iota
	WakeTimer
	WakeKilled
)

// Wait blocks until stdin is ready (when wantStdin), the timer fires (a nil
// timer never does) or kill is closed.
func (s *Stdin) Wait(kill <-chan struct{}, timer <-chan time.Time, wantStdin bool) Wake {
	if wantStdin && s.Ready() {
		return WakeStdin
	}
	var ch chan chunk
	if wantStdin {
		ch = s.ch
	}
	select {
	case c := <-ch:
		s.take(c)
		return WakeStdin
	case <-timer:
		return WakeTimer
	case <-kill:
		return WakeKilled
	}
}

// Read copies buffered input into p, waiting for some when there is none.
// It returns 0, nil at EOF and ErrKilled when kill is closed first.
func (s *Stdin) Read(p []byte, kill <-chan struct{}) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.Wait(kill, nil, true) == WakeKilled {
		return 0, ErrKilled
	}
	if len(s.pending) == 0 {
		if errors.Is(s.err, io.EOF) {
			return 0, nil
		}
		return 0, s.err
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// Abort lets go of the reader: the pump stops at its next chunk, and a read
// in flight ends now when the reader has SetReadDeadline (an *os.File pipe
// or FIFO); otherwise it ends when the owner closes the reader.
func (s *Stdin) Abort() {
	s.stopOnce.Do(func() {
		close(s.stop)
		// After this Do, a pump that never started never will, and one that
		// did has published s.ch.
		s.once.Do(func() {})
		if d, ok := s.r.(interface{ SetReadDeadline(time.Time) error }); ok && s.ch != nil {
			_ = d.SetReadDeadline(time.Unix(1, 0))
		}
	})
}

// Write writes b to w (nil discards) in a goroutine of its own, so that a
// writer blocked on a FIFO nobody reads does not hold up a Kill: it returns
// ErrKilled when kill is closed first, and the write finishes or fails when
// the owner closes w. b is not used after Write returns.
func Write(w io.Writer, b []byte, kill <-chan struct{}) (int, error) {
	if w == nil || len(b) == 0 {
		return len(b), nil
	}
	buf := append([]byte(nil), b...)
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil { // a writer's bug must not end the daemon
				done <- fmt.Errorf("stdio writer panicked: %v", p)
			}
		}()
		_, err := w.Write(buf)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return 0, err
		}
		return len(b), nil
	case <-kill:
		return 0, ErrKilled
	}
}
