package agentclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/transport"
)

// Client is a connection to one VM's agent. Its methods are safe for
// concurrent use; everything shares the one connection.
type Client struct {
	conn    net.Conn
	tc      *ttrpc.Client
	task    taskapi.TTRPCTaskService
	sandbox agentapi.SandboxService
	streams agentapi.StreamsClient
	health  *agentapi.HealthResponse
	done    chan struct{}
}

func newClient(conn net.Conn) *Client {
	c := &Client{conn: conn, done: make(chan struct{})}
	var once sync.Once
	c.tc = ttrpc.NewClient(conn, ttrpc.WithOnClose(func() { once.Do(func() { close(c.done) }) }),
		ttrpc.WithUnaryClientInterceptor(transport.ClientErrors))
	c.task = taskapi.NewTTRPCTaskClient(c.tc)
	c.sandbox = agentapi.NewSandboxClient(c.tc)
	c.streams = agentapi.NewStreamsClient(c.tc)
	return c
}

// New wraps an already open connection (e.g. from Connect), checks the
// agent's version with Health and returns the client. On error conn is
// closed.
func New(ctx context.Context, conn net.Conn) (*Client, error) {
	c := newClient(conn)
	h, err := c.sandbox.Health(ctx, &agentapi.HealthRequest{ClientVersion: agentapi.Version})
	if err != nil && ctx.Err() == nil && !errdefs.IsUnavailable(err) {
		// An agent always answers Health; an error here is the session, not
		// the agent: on virtio-serial a client that dials again right after
		// another closed sends its first request into the old ttrpc session
		// before the guest has seen the old one end ("StreamID cannot be
		// re-used"). Dial retries it.
		err = fmt.Errorf("%v (the guest still served the previous connection?): %w", err, errdefs.ErrUnavailable)
	}
	if err == nil {
		err = agentapi.CheckVersion(h)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("agent health: %w", err)
	}
	c.health = h
	return c, nil
}

// Task is containerd's Task API v3 as the agent serves it: the host's task
// proxy forwards calls here after rewriting paths (agentapi's contract).
// Put the containerd namespace in the ttrpc metadata
// ("containerd-namespace-ttrpc"), as containerd does. Errors are errdefs
// errors (errgrpc.ToGRPC turns them back into a status for containerd).
func (c *Client) Task() taskapi.TTRPCTaskService { return c.task }

// Sandbox is the agent's VM-level service; errors are errdefs errors.
func (c *Client) Sandbox() agentapi.SandboxService { return c.sandbox }

// Streams is the raw stdio stream service (its errors are ttrpc statuses);
// Stdout, Stderr and Stdin wrap it.
func (c *Client) Streams() agentapi.StreamsClient { return c.streams }

// Health is the agent's answer at connect time (versions, boot time).
func (c *Client) Health() *agentapi.HealthResponse { return c.health }

// TTRPC is the underlying ttrpc client, for services this package does not
// wrap. Its unary calls return errdefs errors too; its streams are raw.
func (c *Client) TTRPC() *ttrpc.Client { return c.tc }

// Done is closed when the connection ends (closed, or the VM went away).
func (c *Client) Done() <-chan struct{} { return c.done }

// Close closes the connection. Containers in the VM keep running; a new
// Dial reaches the same agent again.
func (c *Client) Close() error { return c.tc.Close() }

// Stdout streams a process's stdout (execID "" for the init) until EOF.
// It is flow-controlled (see Output): a reader may stall as long as it
// likes. Close the reader when done; Close detaches in the guest.
func (c *Client) Stdout(ctx context.Context, id, execID string) (io.ReadCloser, error) {
	return c.Output(ctx, id, execID, agentapi.StdStream_STDOUT)
}

// Stderr is Stdout for stderr.
func (c *Client) Stderr(ctx context.Context, id, execID string) (io.ReadCloser, error) {
	return c.Output(ctx, id, execID, agentapi.StdStream_STDERR)
}

// outputWindow is how many chunks the client lets the agent send ahead
// (agentapi: at most 64, ttrpc's per-stream buffer).
const outputWindow = 16

// Output streams stdout or stderr of a process; see Stdout. Flow control:
// the agent sends at most outputWindow chunks (32 KiB each) ahead of what
// Read consumed, so a slow reader slows the process instead of overflowing
// the connection. Close detaches (the agent stops reading; what it has not
// read stays for the next reader; up to a window already sent is dropped).
func (c *Client) Output(ctx context.Context, id, execID string, s agentapi.StdStream) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	st, err := c.streams.Output(ctx)
	if err == nil {
		err = st.Send(&agentapi.OutputControl{ContainerId: id, ExecId: execID, Stream: s, Credit: outputWindow})
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s of %s: %w", s, procName(id, execID), transport.FromStatus(err))
	}
	return &outputReader{st: st, cancel: cancel}, nil
}

type outputReader struct {
	st       agentapi.Streams_OutputClient
	cancel   context.CancelFunc
	buf      []byte
	err      error
	consumed uint32
	mu       sync.Mutex
	closed   bool
	// ended is set (under mu) once the agent ended the stream (EOF): Close
	// then sends nothing, as the stream is gone on both sides (a CloseSend
	// on it would be answered on a stream the client no longer knows).
	ended bool
}

func (r *outputReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		m, err := r.st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				r.err = io.EOF
				r.mu.Lock()
				r.ended = true
				r.mu.Unlock()
			} else {
				r.err = transport.FromStatus(err)
			}
			continue
		}
		r.buf = m.GetData()
		if r.consumed++; r.consumed >= outputWindow/2 {
			r.mu.Lock()
			if !r.closed {
				_ = r.st.Send(&agentapi.OutputControl{Credit: r.consumed})
			}
			r.mu.Unlock()
			r.consumed = 0
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// Close detaches from the agent and waits (up to a second) for the agent to
// end the stream, so that no reader stays attached in the guest.
func (r *outputReader) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	if r.ended {
		r.mu.Unlock()
		r.cancel()
		return nil
	}
	err := r.st.CloseSend()
	r.mu.Unlock()
	if err == nil {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if _, err := r.st.Recv(); err != nil {
					return
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
	}
	r.cancel()
	return nil
}

// maxChunk is the largest stdin message the client sends.
const maxChunk = 32 << 10

// Stdin opens a process's stdin. Writes are flow-controlled by the agent's
// credits (a process that does not read its stdin blocks Write, not the
// connection). Close (after the last Write) ends the process's stdin with
// EOF and waits for the agent to confirm; cancelling ctx instead leaves
// stdin open for a later Stdin.
func (c *Client) Stdin(ctx context.Context, id, execID string) (io.WriteCloser, error) {
	st, err := c.streams.Input(ctx)
	if err == nil {
		err = st.Send(&agentapi.InputChunk{ContainerId: id, ExecId: execID})
	}
	if err != nil {
		return nil, fmt.Errorf("stdin of %s: %w", procName(id, execID), transport.FromStatus(err))
	}
	w := &stdinWriter{ctx: ctx, st: st, name: procName(id, execID), credit: make(chan struct{}, 64), done: make(chan struct{})}
	go w.acks()
	return w, nil
}

type stdinWriter struct {
	ctx    context.Context
	st     agentapi.Streams_InputClient
	name   string
	credit chan struct{}
	done   chan struct{} // closed when the ack stream ended
	final  *agentapi.InputAck
	err    error // why the ack stream ended without a final ack

	mu     sync.Mutex
	closed bool
}

func (w *stdinWriter) acks() {
	defer close(w.done)
	for {
		a, err := w.st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("agent ended the stream without closing stdin: %w", errdefs.ErrUnavailable)
			}
			w.err = transport.FromStatus(err)
			return
		}
		for i := uint32(0); i < a.GetCredit(); i++ {
			select {
			case w.credit <- struct{}{}:
			default: // more than the agent may grant: ignore the excess
			}
		}
		if a.GetClosed() {
			w.final = a
			// the stream's end follows: receive it, or the ttrpc client
			// keeps the stream for the connection's lifetime
			go func() {
				for {
					if _, err := w.st.Recv(); err != nil {
						return
					}
				}
			}()
			return
		}
	}
}

func (w *stdinWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, io.ErrClosedPipe
	}
	n := 0
	for len(p) > 0 {
		select {
		case <-w.credit:
		case <-w.done:
			return n, fmt.Errorf("stdin of %s: %w", w.name, w.err)
		case <-w.ctx.Done():
			return n, w.ctx.Err()
		}
		k := min(len(p), maxChunk)
		if err := w.st.Send(&agentapi.InputChunk{Data: p[:k]}); err != nil {
			return n, fmt.Errorf("stdin of %s: %w", w.name, transport.FromStatus(err))
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// Close ends the stream cleanly, which closes the process's stdin, and
// waits for the agent's confirmation.
func (w *stdinWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if err := w.st.CloseSend(); err != nil {
		return fmt.Errorf("stdin of %s: %w", w.name, transport.FromStatus(err))
	}
	select {
	case <-w.done:
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
	if w.final == nil {
		return fmt.Errorf("stdin of %s: %w", w.name, w.err)
	}
	return nil
}

func procName(id, execID string) string {
	if execID == "" {
		return "container " + id
	}
	return "exec " + execID + " of container " + id
}

// SyncClock measures the guest clock's offset from the host's (guest minus
// host, midpoint of one round trip) and, when it exceeds maxSkew, steps the
// guest clock by it in a second round. It returns the offset measured before
// any step.
func (c *Client) SyncClock(ctx context.Context, maxSkew time.Duration) (time.Duration, error) {
	t0 := time.Now()
	r, err := c.sandbox.SyncClock(ctx, &agentapi.SyncClockRequest{HostSendTime: timestamppb.New(t0)})
	if err != nil {
		return 0, fmt.Errorf("sync clock: %w", err)
	}
	t3 := time.Now()
	g1, g2 := r.GetGuestArriveTime().AsTime(), r.GetGuestSendTime().AsTime()
	// NTP's offset: ((g1 - t0) + (g2 - t3)) / 2, with monotonic host times
	offset := (g1.Sub(t0) + g2.Sub(t3)) / 2
	if offset <= maxSkew && offset >= -maxSkew {
		return offset, nil
	}
	if _, err := c.sandbox.SyncClock(ctx, &agentapi.SyncClockRequest{HostSendTime: timestamppb.Now(), DeltaNs: int64(-offset)}); err != nil {
		return offset, fmt.Errorf("sync clock: step by %s: %w", -offset, err)
	}
	return offset, nil
}

// Events long-polls the agent's task events from after the sequence number
// afterSeq (0 at first) and calls fn for each in order. An event is
// acknowledged (never sent again) once fn returned nil for it and the next
// poll went out. Events returns when ctx ends, the connection breaks or fn
// fails, with the seq of the last event fn accepted, to resume from.
func (c *Client) Events(ctx context.Context, afterSeq uint64, fn func(*agentapi.Event) error) (uint64, error) {
	for {
		r, err := c.sandbox.GetEvents(ctx, &agentapi.GetEventsRequest{AfterSeq: afterSeq, TimeoutMs: 10000})
		if err != nil {
			if ctx.Err() != nil {
				return afterSeq, ctx.Err()
			}
			return afterSeq, fmt.Errorf("agent events: %w", err)
		}
		for _, ev := range r.GetEvents() {
			if ev.GetSeq() <= afterSeq {
				continue
			}
			if err := fn(ev); err != nil {
				return afterSeq, err
			}
			afterSeq = ev.GetSeq()
		}
	}
}
