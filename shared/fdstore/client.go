package fdstore

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// callTimeout bounds one call: the dial, the request and the reply.
const callTimeout = 5 * time.Second

// Client is the daemon's side of a Store: it dials the store's socket for
// each call (so that it reaches whichever keeper owns the path now) and
// remembers which keys it holds, for RetainHeld. Calls are serialized.
//
// A nil *Client holds nothing: every method is a no-op that returns nil.
// A store that is not there (no socket, nobody listening: a keeper started
// by an older daemon) fails calls with errdefs.ErrUnavailable.
type Client struct {
	path string

	mu   sync.Mutex
	held map[string]struct{}
}

// NewClient is a client of the store listening on the unix socket path.
// It dials nothing yet.
func NewClient(path string) *Client {
	return &Client{path: path, held: map[string]struct{}{}}
}

// Hold has the store keep a duplicate of f under key, replacing (and
// closing) what it held under key. f stays the caller's, and is not
// changed: its blocking mode in particular.
func (c *Client) Hold(key string, f *os.File) error {
	if c == nil {
		return nil
	}
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("fd store: %w", err)
	}
	fd, err := dup(f)
	if err != nil {
		return fmt.Errorf("fd store: duplicating %s: %w", key, err)
	}
	defer func() { _ = unix.Close(fd) }()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.call(opHold, []string{key}, fd); err != nil {
		return err
	}
	c.held[key] = struct{}{}
	return nil
}

// dup duplicates f's descriptor (close-on-exec) through its RawConn: f.Fd
// would put f in blocking mode, and a write blocked on a full FIFO could
// then no longer be interrupted by closing f.
func dup(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	return nfd, derr
}

// Release has the store close what it holds under keys. Keys it does not
// hold (released already, or never held) are fine.
func (c *Client) Release(keys ...string) error {
	if c == nil || len(keys) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		// forgotten even if the call fails: a later RetainHeld closes it
		delete(c.held, k)
	}
	_, err := c.call(opRelease, keys, -1)
	return err
}

// Retain has the store close every descriptor whose key is not in keys,
// the ones other daemons (an earlier run of this one) held included.
func (c *Client) Retain(keys []string) error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.retain(keys)
}

func (c *Client) retain(keys []string) error {
	if _, err := c.call(opRetain, keys, -1); err != nil {
		return err
	}
	keep := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if _, ok := c.held[k]; ok {
			keep[k] = struct{}{}
		}
	}
	c.held = keep
	return nil
}

// RetainHeld is Retain of the keys this client holds: what an earlier
// daemon held and this one did not hold again is closed. A daemon calls it
// once its recovery is done, before it serves new requests.
func (c *Client) RetainHeld() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.retain(c.heldKeys())
}

// Held are the keys this client holds, sorted.
func (c *Client) Held() []string {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.heldKeys()
}

func (c *Client) heldKeys() []string {
	keys := make([]string, 0, len(c.held))
	for k := range c.held {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// List are the keys the store holds, whoever held them, sorted.
func (c *Client) List() ([]string, error) {
	if c == nil {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.call(opList, nil, -1)
}

// call sends one request (with the descriptor fd unless it is negative)
// and returns the keys of its reply.
func (c *Client) call(op string, keys []string, fd int) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return nil, fmt.Errorf("fd store: %w: %w", err, errdefs.ErrUnavailable)
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)
	_ = uc.SetDeadline(time.Now().Add(callTimeout))
	if err := writeFrame(uc, request(op, keys), fd); err != nil {
		return nil, fmt.Errorf("fd store: %s: %w", op, err)
	}
	payload, fds, err := readFrame(uc)
	closeFDs(fds) // a reply carries none
	if err != nil {
		return nil, fmt.Errorf("fd store: %s: no answer: %w: %w", op, err, errdefs.ErrUnavailable)
	}
	status, rest, _ := strings.Cut(string(payload), "\n")
	switch {
	case status == replyOK:
		if rest == "" {
			return nil, nil
		}
		return strings.Split(rest, "\n"), nil
	case strings.HasPrefix(status, replyErr+" "):
		return nil, errOf(strings.TrimPrefix(status, replyErr+" "), rest)
	default:
		return nil, fmt.Errorf("fd store: %s: unexpected reply %q", op, status)
	}
}
