package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// aLongTimeAgo is a deadline in the past: it unblocks I/O on cancel.
var aLongTimeAgo = time.Unix(1, 0)

// maxEvents bounds the events a connection keeps (the oldest go).
const maxEvents = 256

// ErrClosed is wrapped by errors caused by the VMM closing the connection
// (it exited, or is exiting after quit); it is errdefs.ErrUnavailable.
var ErrClosed = fmt.Errorf("qmp connection closed: %w", errdefs.ErrUnavailable)

// Options select the protocol variant (see the package doc).
type Options struct {
	// Capabilities sends qmp_capabilities after the greeting (QEMU's
	// capabilities negotiation mode).
	Capabilities bool
	// IDs tags every command with a numeric id and takes as its answer
	// only the message carrying that id (others are skipped). Without it
	// the answer is the first message after the command that is not an
	// event.
	IDs bool
}

// Client is a QMP client on one connection.
type Client struct {
	conn     net.Conn
	dec      *json.Decoder
	opts     Options
	greeting Greeting

	mu     sync.Mutex
	nextID uint64
	events []Event
	broken error
}

// Greeting is what the VMM says first on a connection.
type Greeting struct {
	// Version is the VMM's version; Application is the key it came under
	// ("qemu", "StratoVirt").
	Version Version
	// Capabilities are the protocol capabilities offered.
	Capabilities []string
}

// Version is a greeting's version.
type Version struct {
	Application         string
	Major, Minor, Micro int
	Package             string
}

// Event is an asynchronous QMP event ("SHUTDOWN", "STOP", ...).
type Event struct {
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data,omitempty"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// Error is a command's error answer. It unwraps to an errdefs class:
// CommandNotFound is ErrNotImplemented, DeviceNotFound ErrNotFound,
// DeviceNotActive and KVMMissingCap ErrFailedPrecondition, anything else
// (GenericError) ErrUnknown.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

// Error implements error.
func (e *Error) Error() string { return e.Class + ": " + e.Desc }

// Unwrap is the errdefs class of e.
func (e *Error) Unwrap() error {
	switch e.Class {
	case "CommandNotFound":
		return errdefs.ErrNotImplemented
	case "DeviceNotFound":
		return errdefs.ErrNotFound
	case "DeviceNotActive", "KVMMissingCap":
		return errdefs.ErrFailedPrecondition
	}
	return errdefs.ErrUnknown
}

// message is any line the VMM sends: a greeting, an answer or an event.
type message struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
	ID     json.RawMessage `json:"id"`
	Event
}

// Dial connects to the QMP socket at path and reads the greeting (New),
// bounded by ctx.
func Dial(ctx context.Context, path string, o Options) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp dial %s: %w", path, err)
	}
	q, err := New(ctx, c, o)
	if err != nil {
		c.Close()
		return nil, err
	}
	return q, nil
}

// New reads the greeting on conn and, with Options.Capabilities, leaves
// capabilities negotiation mode, bounded by ctx. It owns conn from then on.
func New(ctx context.Context, conn net.Conn, o Options) (*Client, error) {
	q := &Client{conn: conn, dec: json.NewDecoder(conn), opts: o}
	q.mu.Lock()
	err := q.greet(ctx)
	q.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if o.Capabilities {
		if err := q.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
			return nil, err
		}
	}
	return q, nil
}

func (q *Client) greet(ctx context.Context) error {
	defer q.bound(ctx)()
	for {
		var m message
		if err := q.dec.Decode(&m); err != nil {
			return q.fail(ctx, "greeting", err)
		}
		if m.QMP == nil {
			continue // nothing else comes before it; tolerate it anyway
		}
		g, err := parseGreeting(m.QMP)
		if err != nil {
			return q.fail(ctx, "greeting", err)
		}
		q.greeting = g
		return nil
	}
}

// parseGreeting reads the object under "QMP": its version is keyed by the
// application's name, beside "package".
func parseGreeting(b json.RawMessage) (Greeting, error) {
	var raw struct {
		Version      map[string]json.RawMessage `json:"version"`
		Capabilities []string                   `json:"capabilities"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Greeting{}, err
	}
	g := Greeting{Capabilities: raw.Capabilities}
	for k, v := range raw.Version {
		if k == "package" {
			if err := json.Unmarshal(v, &g.Version.Package); err != nil {
				return Greeting{}, fmt.Errorf("version package: %w", err)
			}
			continue
		}
		var n struct{ Major, Minor, Micro int }
		if err := json.Unmarshal(v, &n); err != nil {
			return Greeting{}, fmt.Errorf("version %s: %w", k, err)
		}
		g.Version.Application, g.Version.Major, g.Version.Minor, g.Version.Micro = k, n.Major, n.Minor, n.Micro
	}
	return g, nil
}

// Greeting is the VMM's greeting on this connection.
func (q *Client) Greeting() Greeting { return q.greeting }

// Execute runs command with args (nil: none) and decodes the answer's
// "return" into result (nil: ignored). Events read meanwhile are kept. An
// error answer is an *Error (errdefs-classed).
func (q *Client) Execute(ctx context.Context, command string, args, result any) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.broken != nil {
		return fmt.Errorf("qmp %s: %w", command, q.broken)
	}
	req := struct {
		Execute   string  `json:"execute"`
		Arguments any     `json:"arguments,omitempty"`
		ID        *uint64 `json:"id,omitempty"`
	}{Execute: command, Arguments: args}
	id := ""
	if q.opts.IDs {
		q.nextID++
		n := q.nextID
		req.ID, id = &n, strconv.FormatUint(n, 10)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("qmp %s: %w: %w", command, err, errdefs.ErrInvalidArgument)
	}
	defer q.bound(ctx)()
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return q.fail(ctx, command, err)
	}
	for {
		var m message
		if err := q.dec.Decode(&m); err != nil {
			return q.fail(ctx, command, err)
		}
		switch {
		case m.Event.Event != "":
			q.events = append(q.events, m.Event)
			if len(q.events) > maxEvents {
				q.events = q.events[len(q.events)-maxEvents:]
			}
		case q.opts.IDs && string(m.ID) != id:
			// an answer to no command of ours: skipped
		case m.Error != nil:
			return fmt.Errorf("qmp %s: %w", command, m.Error)
		case m.Return == nil:
			// neither an answer nor an event: skipped
		case result != nil:
			if err := json.Unmarshal(m.Return, result); err != nil {
				return fmt.Errorf("qmp %s: answer: %w: %w", command, err, errdefs.ErrUnknown)
			}
			return nil
		default:
			return nil
		}
	}
}

// bound makes conn's I/O end with ctx; the returned func undoes it.
func (q *Client) bound(ctx context.Context) func() {
	if dl, ok := ctx.Deadline(); ok {
		_ = q.conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = q.conn.SetDeadline(aLongTimeAgo) })
	return func() {
		stop()
		_ = q.conn.SetDeadline(time.Time{})
	}
}

// fail marks the connection broken after an I/O error (the protocol state
// is unknown) and closes it: the error is ctx's when it ended (or its
// deadline passed), else ErrClosed for a connection the VMM closed, else
// err.
func (q *Client) fail(ctx context.Context, what string, err error) error {
	switch {
	case ctx.Err() != nil:
		err = fmt.Errorf("qmp %s: %w", what, ctx.Err())
	case errors.Is(err, os.ErrDeadlineExceeded):
		// the connection's deadline is ctx's, and may pass a moment
		// before ctx says so
		err = fmt.Errorf("qmp %s: %w", what, context.DeadlineExceeded)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		err = fmt.Errorf("qmp %s: %w", what, ErrClosed)
	default:
		err = fmt.Errorf("qmp %s: %w", what, err)
	}
	q.broken = err
	q.conn.Close()
	return err
}

// Events returns the events collected so far and forgets them.
func (q *Client) Events() []Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	ev := q.events
	q.events = nil
	return ev
}

// Status is query-status's answer (the same in QEMU's and StratoVirt's
// QMP).
type Status struct {
	// Status is the run state: "running", "paused", "prelaunch",
	// "shutdown", "internal-error", ...
	Status  string `json:"status"`
	Running bool   `json:"running"`
}

// QueryStatus asks for the VM's run state (query-status).
func (q *Client) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := q.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// Quit asks the VMM to exit at once (quit; the guest is not told). A
// connection that the VMM closes before its answer is success: it is
// exiting.
func (q *Client) Quit(ctx context.Context) error {
	if err := q.Execute(ctx, "quit", nil, nil); err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}

// Close closes the connection.
func (q *Client) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.broken == nil {
		q.broken = fmt.Errorf("closed: %w", net.ErrClosed)
		return q.conn.Close()
	}
	return nil
}

// Monitor is a VMM's QMP socket, used one connection per operation: QEMU
// and StratoVirt serve one client at a time (a second waits in the
// backlog), and nothing then ties a connection to the daemon's lifetime.
// Its operations are serialized.
type Monitor struct {
	// Path is the QMP socket.
	Path string
	// Options are the VMM's protocol variant.
	Options Options

	mu sync.Mutex
}

// Do runs f on a fresh connection (closed afterwards).
func (m *Monitor) Do(ctx context.Context, f func(q *Client) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	q, err := Dial(ctx, m.Path, m.Options)
	if err != nil {
		return err
	}
	defer q.Close()
	return f(q)
}

// Status is query-status on a fresh connection.
func (m *Monitor) Status(ctx context.Context) (Status, error) {
	var st Status
	err := m.Do(ctx, func(q *Client) (err error) {
		st, err = q.QueryStatus(ctx)
		return err
	})
	return st, err
}

// Ping is Status for a VMM's start to wait on (vmhost.Boot.Ping): its
// error, the run state logged.
func (m *Monitor) Ping(ctx context.Context) error {
	st, err := m.Status(ctx)
	if err == nil {
		log.G(ctx).WithField("status", st.Status).Debug("the VMM answers on QMP")
	}
	return err
}

// Quit is quit on a fresh connection.
func (m *Monitor) Quit(ctx context.Context) error {
	return m.Do(ctx, func(q *Client) error { return q.Quit(ctx) })
}
