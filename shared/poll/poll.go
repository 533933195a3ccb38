package poll

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// Loop is one epoll instance and the goroutine that dispatches its events.
// The zero Loop is ready to use; it starts on its first Add.
type Loop struct {
	once sync.Once
	err  error
	ep   *os.File
	epfd int

	// mu orders every epoll_ctl with the registry, so that a re-arm never
	// reaches a descriptor number closed and registered again meanwhile.
	mu   sync.Mutex
	next uint64
	regs map[uint64]*Reg
}

// Reg is one descriptor registered on a Loop.
type Reg struct {
	l       *Loop
	id      uint64
	fd      int
	handler func(*Reg)
	closed  bool
}

var std Loop

// Add registers fd on the process-wide loop (see Loop.Add).
func Add(fd int, handler func(*Reg)) (*Reg, error) { return std.Add(fd, handler) }

// Add registers fd for readability: handler runs on the loop's goroutine,
// given its registration, each time fd is readable (or hung up, or in
// error) until the registration is closed; it may run before Add
// returns. The caller keeps owning fd and closes it after Close.
func (l *Loop) Add(fd int, handler func(*Reg)) (*Reg, error) {
	if fd < 0 || handler == nil {
		return nil, fmt.Errorf("poll: add fd %d: invalid", fd)
	}
	l.once.Do(l.start)
	if l.err != nil {
		return nil, l.err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next++
	r := &Reg{l: l, id: l.next, fd: fd, handler: handler}
	if err := l.ctl(unix.EPOLL_CTL_ADD, r); err != nil {
		return nil, fmt.Errorf("poll: add fd %d: %w", fd, err)
	}
	if l.regs == nil {
		l.regs = map[uint64]*Reg{}
	}
	l.regs[r.id] = r
	return r, nil
}

// ctl changes r's registration; l.mu is held.
func (l *Loop) ctl(op int, r *Reg) error {
	// the registration's id, not its fd, comes back with an event: an fd
	// closed and reused meanwhile never reaches another's handler
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(uint32(r.id)), Pad: int32(uint32(r.id >> 32))}
	for {
		err := unix.EpollCtl(l.epfd, op, r.fd, &ev)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func eventID(ev *unix.EpollEvent) uint64 { return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32 }

// Close ends the registration: its handler is not started again (one
// running now may finish). Idempotent; a handler may close its own.
func (r *Reg) Close() {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	delete(l.regs, r.id)
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, r.fd, nil)
}

// Len is the number of open registrations.
func (l *Loop) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.regs)
}

func (l *Loop) start() {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		l.err = fmt.Errorf("poll: epoll_create1: %w", err)
		return
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		l.err = fmt.Errorf("poll: epoll nonblock: %w", err)
		return
	}
	l.ep, l.epfd = os.NewFile(uintptr(fd), "epoll"), fd
	rc, err := l.ep.SyscallConn()
	if err != nil {
		l.err = fmt.Errorf("poll: %w", err)
		return
	}
	go l.run(rc)
}

// run parks on the netpoller until the epoll descriptor is readable, then
// dispatches every ready registration without blocking. The epoll file is
// never closed: the loop lives as long as the process.
func (l *Loop) run(rc syscall.RawConn) {
	evs := make([]unix.EpollEvent, 64)
	for {
		err := rc.Read(func(fd uintptr) bool {
			for {
				n, err := unix.EpollWait(int(fd), evs, 0)
				if errors.Is(err, unix.EINTR) {
					continue
				}
				if err != nil {
					log.L.WithError(err).Error("poll: epoll_wait")
					return false
				}
				for i := 0; i < n; i++ {
					l.dispatch(eventID(&evs[i]))
				}
				if n < len(evs) {
					return false // drained: park until readable again
				}
			}
		})
		if err != nil {
			log.L.WithError(err).Error("poll: loop stopped")
			return
		}
	}
}

func (l *Loop) dispatch(id uint64) {
	l.mu.Lock()
	r := l.regs[id]
	l.mu.Unlock()
	if r == nil {
		return
	}
	func() {
		defer func() {
			if p := recover(); p != nil {
				log.L.WithField("panic", p).Error("poll: handler panicked; registration closed")
				r.Close()
			}
		}()
		r.handler(r)
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !r.closed {
		if err := l.ctl(unix.EPOLL_CTL_MOD, r); err != nil {
			log.L.WithError(err).WithField("fd", r.fd).Error("poll: re-arm")
		}
	}
}
