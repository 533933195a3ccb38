package poll

import (
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func eventfd(t *testing.T) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func signal(t *testing.T, fd int) {
	t.Helper()
	if _, err := unix.Write(fd, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
}

func drain(fd int) {
	var b [8]byte
	_, _ = unix.Read(fd, b[:])
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !ok(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A registration's handler runs once per readiness it consumes, again
// after it is re-armed, and never after Close.
func TestReadyRearmClose(t *testing.T) {
	var l Loop
	fd := eventfd(t)
	var n atomic.Int32
	r, err := l.Add(fd, func(*Reg) { drain(fd); n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n.Load() != 0 {
		t.Fatalf("handler ran %d times before anything was ready", n.Load())
	}
	for i := int32(1); i <= 3; i++ {
		signal(t, fd)
		eventually(t, "handler", func() bool { return n.Load() == i })
	}
	r.Close()
	r.Close()
	signal(t, fd)
	time.Sleep(100 * time.Millisecond)
	if got := n.Load(); got != 3 {
		t.Fatalf("handler ran %d times, want 3 (none after Close)", got)
	}
	if l.Len() != 0 {
		t.Fatalf("Len = %d after Close", l.Len())
	}
}

// Many registrations on one loop each see their own events, however many
// are ready at once (more than one epoll_wait batch).
func TestManyOneLoop(t *testing.T) {
	var l Loop
	const n = 200
	var got [n]atomic.Int32
	fds := make([]int, n)
	for i := range fds {
		fds[i] = eventfd(t)
		fd, i := fds[i], i
		if _, err := l.Add(fd, func(*Reg) { drain(fd); got[i].Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	for _, fd := range fds {
		signal(t, fd)
	}
	eventually(t, "every handler", func() bool {
		for i := range got {
			if got[i].Load() != 1 {
				return false
			}
		}
		return true
	})
}

// A handler that closes its own registration (a pidfd's, readable for
// good) runs once; a handler that panics loses its registration, not the
// loop.
func TestSelfCloseAndPanic(t *testing.T) {
	var l Loop
	a, b := eventfd(t), eventfd(t)
	var na, nb atomic.Int32
	_, err := l.Add(a, func(r *Reg) { na.Add(1); r.Close() }) // never drained
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Add(b, func(*Reg) { nb.Add(1); panic("handler bug") }); err != nil {
		t.Fatal(err)
	}
	signal(t, a)
	signal(t, b)
	eventually(t, "both handlers", func() bool { return na.Load() == 1 && nb.Load() == 1 })
	time.Sleep(100 * time.Millisecond)
	if na.Load() != 1 || nb.Load() != 1 {
		t.Fatalf("handlers ran %d and %d times, want once each", na.Load(), nb.Load())
	}
	// the loop still serves others
	c := eventfd(t)
	var nc atomic.Int32
	if _, err := l.Add(c, func(*Reg) { drain(c); nc.Add(1) }); err != nil {
		t.Fatal(err)
	}
	signal(t, c)
	eventually(t, "a later handler", func() bool { return nc.Load() == 1 })
}

// A descriptor number closed and registered again is the new
// registration's only.
func TestReusedFD(t *testing.T) {
	var l Loop
	fd, _ := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	var old atomic.Int32
	r, err := l.Add(fd, func(*Reg) { old.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	unix.Close(fd)
	fd2 := eventfd(t)
	var nw atomic.Int32
	if _, err := l.Add(fd2, func(*Reg) { drain(fd2); nw.Add(1) }); err != nil {
		t.Fatal(err)
	}
	signal(t, fd2)
	eventually(t, "the new handler", func() bool { return nw.Load() == 1 })
	if old.Load() != 0 {
		t.Fatal("the closed registration's handler ran")
	}
}

func TestBadAdd(t *testing.T) {
	var l Loop
	if _, err := l.Add(-1, func(*Reg) {}); err == nil {
		t.Fatal("Add(-1) must fail")
	}
	if _, err := l.Add(0, nil); err == nil {
		t.Fatal("Add with no handler must fail")
	}
	f, _ := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0) // not pollable by epoll
	defer unix.Close(f)
	if _, err := l.Add(f, func(*Reg) {}); err == nil {
		t.Fatal("Add of a regular file must fail (epoll refuses it)")
	}
	if l.Len() != 0 {
		t.Fatalf("Len = %d after failed Adds", l.Len())
	}
}
