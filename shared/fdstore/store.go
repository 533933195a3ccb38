package fdstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// MaxFDs is the most descriptors a Store holds. Kubernetes runs at most a
// few hundred pods a node (110 by default); a container holds up to three
// (stdin, stdout, stderr), and so does each exec with stdio: 16384 leaves
// an order of magnitude of room, and stays far below the keeper's
// RLIMIT_NOFILE (the shipped unit's LimitNOFILE=1048576, inherited from the
// daemon; Go raises its soft limit to the hard one).
const MaxFDs = 16384

// connIdle bounds how long a connection may sit between two requests.
const connIdle = time.Minute

// Store holds descriptors under keys; ServeConn serves its protocol. The
// zero value is not usable: NewStore.
type Store struct {
	limit int

	mu     sync.Mutex
	fds    map[string]int
	closed bool
}

// NewStore makes an empty store holding at most limit descriptors (≤ 0 or
// more than MaxFDs: MaxFDs).
func NewStore(limit int) *Store {
	if limit <= 0 || limit > MaxFDs {
		limit = MaxFDs
	}
	return &Store{limit: limit, fds: map[string]int{}}
}

// hold keeps fd under key, closing the descriptor it replaces. The store
// owns fd: on error it is closed.
func (s *Store) hold(key string, fd int) error {
	if err := ValidateKey(key); err != nil {
		_ = unix.Close(fd)
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, replaces := s.fds[key]
	switch {
	case s.closed:
		_ = unix.Close(fd)
		return fmt.Errorf("the store is closed: %w", errdefs.ErrUnavailable)
	case !replaces && len(s.fds) >= s.limit:
		_ = unix.Close(fd)
		return fmt.Errorf("%d descriptors held already, the limit: %w", len(s.fds), errdefs.ErrResourceExhausted)
	}
	s.fds[key] = fd
	if replaces {
		_ = unix.Close(old)
	}
	return nil
}

// release closes what is held under keys; unknown keys are skipped.
func (s *Store) release(keys []string) error {
	for _, k := range keys {
		if err := ValidateKey(k); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if fd, ok := s.fds[k]; ok {
			_ = unix.Close(fd)
			delete(s.fds, k)
		}
	}
	return nil
}

// retain closes every descriptor whose key is not in keys, and returns
// how many it closed.
func (s *Store) retain(keys []string) (int, error) {
	keep := make(map[string]bool, len(keys))
	for _, k := range keys {
		if err := ValidateKey(k); err != nil {
			return 0, err
		}
		keep[k] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, fd := range s.fds {
		if !keep[k] {
			_ = unix.Close(fd)
			delete(s.fds, k)
			n++
		}
	}
	return n, nil
}

// Keys are the keys held, sorted.
func (s *Store) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.fds))
	for k := range s.fds {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Len is how many descriptors the store holds.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.fds)
}

// Close closes every descriptor held and refuses later Holds. Idempotent.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for k, fd := range s.fds {
		_ = unix.Close(fd)
		delete(s.fds, k)
	}
}

// ServeConn answers the requests of one connection until it ends, errs,
// stays idle for a minute, or ctx ends. It closes c.
func (s *Store) ServeConn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	for {
		_ = c.SetReadDeadline(time.Now().Add(connIdle))
		payload, fds, err := readFrame(c)
		if err != nil {
			closeFDs(fds)
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				log.G(ctx).WithError(err).Debug("fd store: connection ended")
				if errdefs.IsInvalidArgument(err) {
					_ = writeFrame(c, reply(nil, err), -1) // then close: the stream is out of step
				}
			}
			return
		}
		keys, err := s.handle(ctx, payload, fds)
		if err := writeFrame(c, reply(keys, err), -1); err != nil {
			return
		}
	}
}

// handle runs one request; it owns fds. keys are a LIST's answer.
func (s *Store) handle(ctx context.Context, payload []byte, fds []int) ([]string, error) {
	op, keys := parseRequest(payload)
	if op != opHold && len(fds) > 0 {
		closeFDs(fds)
		return nil, fmt.Errorf("%s carries %d descriptors, none expected: %w", op, len(fds), errdefs.ErrInvalidArgument)
	}
	switch op {
	case opHold:
		if len(keys) != 1 || len(fds) != 1 {
			closeFDs(fds)
			return nil, fmt.Errorf("HOLD takes one key and one descriptor, got %d and %d: %w", len(keys), len(fds), errdefs.ErrInvalidArgument)
		}
		return nil, s.hold(keys[0], fds[0])
	case opRelease:
		return nil, s.release(keys)
	case opRetain:
		n, err := s.retain(keys)
		if n > 0 {
			log.G(ctx).WithField("closed", n).Info("fd store: closed the descriptors no longer held")
		}
		return nil, err
	case opList:
		return s.Keys(), nil
	default:
		return nil, fmt.Errorf("operation %q: %w", op, errdefs.ErrNotImplemented)
	}
}

// reply is the text of an answer: OK with the keys, or the error.
func reply(keys []string, err error) []byte {
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), "\n", " ")
		return []byte(replyErr + " " + codeOf(err) + "\n" + msg)
	}
	return request(replyOK, keys)
}
