package tasktest

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FIFO is containerd's end of one stdio FIFO: the read end of an output
// stream, or the write end of stdin, opened as containerd's cio opens them.
type FIFO struct {
	Path string
	mu   sync.Mutex
	fd   int
	buf  bytes.Buffer
	eof  bool
}

// NewOutput makes the FIFO dir/name and opens its read end without blocking,
// as containerd does before Task.Create. It is closed with the test.
func NewOutput(t *testing.T, dir, name string) *FIFO {
	t.Helper()
	p := mkfifo(t, dir, name)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	f := &FIFO{Path: p, fd: fd}
	t.Cleanup(f.Close)
	return f
}

// NewInput makes the FIFO dir/name for a process's stdin; OpenWrite opens
// containerd's end once the process has opened its own.
func NewInput(t *testing.T, dir, name string) *FIFO {
	t.Helper()
	f := &FIFO{Path: mkfifo(t, dir, name), fd: -1}
	t.Cleanup(f.Close)
	return f
}

func mkfifo(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatalf("mkfifo %s: %v", p, err)
	}
	return p
}

// Close closes containerd's end. Idempotent.
func (f *FIFO) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd >= 0 {
		_ = unix.Close(f.fd)
		f.fd = -1
	}
}

// OpenWrite opens the write end of a stdin FIFO; it waits (bounded) for
// the process's side to have opened the read end.
func (f *FIFO) OpenWrite(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		fd, err := unix.Open(f.Path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == nil {
			f.mu.Lock()
			f.fd = fd
			f.mu.Unlock()
			return
		}
		if !errors.Is(err, unix.ENXIO) || time.Now().After(deadline) {
			t.Fatalf("open %s for writing: %v (has the process's side opened it?)", f.Path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Write writes s to a stdin FIFO.
func (f *FIFO) Write(t *testing.T, s string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := unix.Write(f.fd, []byte(s)); err != nil {
		t.Fatalf("write %s: %v", f.Path, err)
	}
}

// ReadNow reads, without waiting, what the FIFO holds; it reports whether
// the writers are all gone (EOF). Only meaningful once a writer has opened
// the FIFO: before, a FIFO reads as EOF too.
func (f *FIFO) ReadNow() (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := make([]byte, 64<<10)
	for !f.eof && f.fd >= 0 {
		n, err := unix.Read(f.fd, b)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil: // EAGAIN: a writer is open, nothing more for now
			return f.buf.String(), false
		case n == 0:
			f.eof = true
		default:
			f.buf.Write(b[:n])
		}
	}
	return f.buf.String(), f.eof
}

// WaitFor reads until the output holds text, or fails t after timeout.
func (f *FIFO) WaitFor(t *testing.T, text string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, eof := f.ReadNow()
		if strings.Contains(got, text) {
			return got
		}
		if eof || time.Now().After(deadline) {
			t.Fatalf("%s: %q, waiting for %q (eof %v)", f.Path, got, text, eof)
		}
		f.poll(deadline)
	}
}

// WaitEOF reads until every writer has closed the FIFO (EOF), and returns
// all it read; it fails t after timeout.
func (f *FIFO) WaitEOF(t *testing.T, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, eof := f.ReadNow()
		if eof {
			return got
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: no EOF %s after the exit (a write end is still open): read %q", f.Path, timeout, got)
			return got
		}
		f.poll(deadline)
	}
}

// poll waits until the FIFO is readable or a short while has passed.
func (f *FIFO) poll(deadline time.Time) {
	f.mu.Lock()
	fd := f.fd
	f.mu.Unlock()
	ms := min(int(time.Until(deadline).Milliseconds())+1, 50)
	if fd < 0 || ms <= 0 {
		time.Sleep(10 * time.Millisecond)
		return
	}
	_, _ = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
}
