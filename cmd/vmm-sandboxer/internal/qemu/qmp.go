package qemu

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
)

// aLongTimeAgo is a deadline in the past: it unblocks I/O on cancel.
var aLongTimeAgo = time.Unix(1, 0)

// maxEvents bounds the events a QMP connection keeps (the oldest go).
const maxEvents = 256

// ErrQMPClosed is wrapped by QMP errors caused by QEMU closing the
// connection (it exited, or is exiting after quit); it is
// errdefs.ErrUnavailable.
var ErrQMPClosed = fmt.Errorf("qmp connection closed: %w", errdefs.ErrUnavailable)

// QMP is a client of QEMU's machine protocol on one connection. Commands
// are serialized; each is bounded by its context (deadline and
// cancellation both end a blocked read or write). After an I/O error or an
// interrupted command the connection is closed and every later call fails.
// Asynchronous events that arrive meanwhile are collected (Events).
type QMP struct {
	conn     net.Conn
	dec      *json.Decoder
	greeting Greeting

	mu     sync.Mutex
	nextID uint64
	events []Event
	broken error
}

// Greeting is what QEMU says first on a QMP connection.
type Greeting struct {
	Version struct {
		QEMU struct {
			Major int `json:"major"`
			Minor int `json:"minor"`
			Micro int `json:"micro"`
		} `json:"qemu"`
		Package string `json:"package"`
	} `json:"version"`
	Capabilities []string `json:"capabilities"`
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

// Error is a QMP command's error answer. It unwraps to an errdefs class:
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

// message is any line QEMU sends: a greeting, an answer or an event.
type message struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
	ID     json.RawMessage `json:"id"`
	Event
}

// DialQMP connects to the QMP socket at path and negotiates (NewQMP),
// bounded by ctx.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp dial %s: %w", path, err)
	}
	q, err := NewQMP(ctx, c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return q, nil
}

// NewQMP reads QEMU's greeting on conn and leaves capabilities negotiation
// mode (qmp_capabilities), bounded by ctx. It owns conn from then on.
func NewQMP(ctx context.Context, conn net.Conn) (*QMP, error) {
	q := &QMP{conn: conn, dec: json.NewDecoder(conn)}
	q.mu.Lock()
	err := q.greet(ctx)
	q.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := q.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		return nil, err
	}
	return q, nil
}

func (q *QMP) greet(ctx context.Context) error {
	defer q.bound(ctx)()
	for {
		var m message
		if err := q.dec.Decode(&m); err != nil {
			return q.fail(ctx, "greeting", err)
		}
		if m.QMP == nil {
			continue // nothing else comes before it; tolerate it anyway
		}
		if err := json.Unmarshal(m.QMP, &q.greeting); err != nil {
			return q.fail(ctx, "greeting", err)
		}
		return nil
	}
}

// Greeting is QEMU's greeting on this connection.
func (q *QMP) Greeting() Greeting { return q.greeting }

// Execute runs command with args (nil: none) and decodes the answer's
// "return" into result (nil: ignored). Events read meanwhile are kept. A
// QMP error answer is an *Error (errdefs-classed).
func (q *QMP) Execute(ctx context.Context, command string, args, result any) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.broken != nil {
		return fmt.Errorf("qmp %s: %w", command, q.broken)
	}
	q.nextID++
	id := strconv.FormatUint(q.nextID, 10)
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        uint64 `json:"id"`
	}{command, args, q.nextID}
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
		case string(m.ID) != id:
			// an answer to no command of ours: skipped
		case m.Error != nil:
			return fmt.Errorf("qmp %s: %w", command, m.Error)
		case result != nil && m.Return != nil:
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
func (q *QMP) bound(ctx context.Context) func() {
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
// deadline passed), else ErrQMPClosed for a connection QEMU closed, else
// err.
func (q *QMP) fail(ctx context.Context, what string, err error) error {
	switch {
	case ctx.Err() != nil:
		err = fmt.Errorf("qmp %s: %w", what, ctx.Err())
	case errors.Is(err, os.ErrDeadlineExceeded):
		// the connection's deadline is ctx's, and may pass a moment
		// before ctx says so
		err = fmt.Errorf("qmp %s: %w", what, context.DeadlineExceeded)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		err = fmt.Errorf("qmp %s: %w", what, ErrQMPClosed)
	default:
		err = fmt.Errorf("qmp %s: %w", what, err)
	}
	q.broken = err
	q.conn.Close()
	return err
}

// Events returns the events collected so far and forgets them.
func (q *QMP) Events() []Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	ev := q.events
	q.events = nil
	return ev
}

// Status is query-status's answer.
type Status struct {
	// Status is the run state: "running", "paused", "prelaunch",
	// "shutdown", "internal-error", ...
	Status  string `json:"status"`
	Running bool   `json:"running"`
}

// QueryStatus asks for the VM's run state.
func (q *QMP) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := q.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// Quit asks QEMU to exit at once (the guest is not told). A connection
// that QEMU closes before its answer is success: it is exiting.
func (q *QMP) Quit(ctx context.Context) error {
	if err := q.Execute(ctx, "quit", nil, nil); err != nil && !errors.Is(err, ErrQMPClosed) {
		return err
	}
	return nil
}

// Close closes the connection.
func (q *QMP) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.broken == nil {
		q.broken = fmt.Errorf("closed: %w", net.ErrClosed)
		return q.conn.Close()
	}
	return nil
}
