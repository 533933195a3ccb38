package events

import (
	"context"
	"net"
	"sync"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Topics of the task events, as containerd names them.
const (
	TopicTaskCreate       = "/tasks/create"
	TopicTaskStart        = "/tasks/start"
	TopicTaskExit         = "/tasks/exit"
	TopicTaskDelete       = "/tasks/delete"
	TopicTaskExecAdded    = "/tasks/exec-added"
	TopicTaskExecStarted  = "/tasks/exec-started"
	TopicTaskOOM          = "/tasks/oom"
	TopicTaskPaused       = "/tasks/paused"
	TopicTaskResumed      = "/tasks/resumed"
	TopicTaskCheckpointed = "/tasks/checkpointed"
)

// Publisher is what a task server needs of an event sink.
type Publisher interface {
	Publish(ctx context.Context, namespace, topic string, event proto.Message)
}

// Forwarder is the interface of the remote events service (a fake in tests).
type Forwarder interface {
	Forward(ctx context.Context, req *eventsapi.ForwardRequest) error
}

// Dialer connects to containerd's ttrpc address.
type Dialer func(ctx context.Context) (Forwarder, closer, error)

// closer is anything with Close.
type closer interface{ Close() error }

// Options tune the queue.
type Options struct {
	// MaxQueue bounds the number of pending events (default 4096).
	MaxQueue int
	// MaxBackoff caps the retry delay (default 2s).
	MaxBackoff time.Duration
	// Timeout bounds one Forward call (default 5s).
	Timeout time.Duration
}

// Queue is an ordered, retried publisher.
type Queue struct {
	dial Dialer
	opts Options

	mu      sync.Mutex
	cond    *sync.Cond
	pending []*eventsapi.ForwardRequest
	closed  bool
	done    chan struct{}
	dropped int
}

// NewQueue starts a sender under the lifetime context life; dial makes a
// connection when one is needed.
func NewQueue(life context.Context, dial Dialer, opts Options) *Queue {
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = 4096
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 2 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	q := &Queue{dial: dial, opts: opts, done: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	go q.run(life)
	go func() {
		<-life.Done()
		q.Close()
	}()
	return q
}

// NewTTRPCQueue publishes to containerd's ttrpc socket at address.
func NewTTRPCQueue(life context.Context, address string, opts Options) *Queue {
	return NewQueue(life, func(ctx context.Context) (Forwarder, closer, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", address)
		if err != nil {
			return nil, nil, err
		}
		client := ttrpc.NewClient(conn)
		return forwarder{eventsapi.NewTTRPCEventsClient(client)}, client, nil
	}, opts)
}

type forwarder struct{ c eventsapi.TTRPCEventsService }

func (f forwarder) Forward(ctx context.Context, req *eventsapi.ForwardRequest) error {
	_, err := f.c.Forward(ctx, req)
	return err
}

// Publish queues an event. It never blocks on containerd.
func (q *Queue) Publish(ctx context.Context, namespace, topic string, event proto.Message) {
	a, err := typeurl.MarshalAny(event)
	if err != nil {
		log.G(ctx).WithError(err).WithField("topic", topic).Error("encoding event")
		return
	}
	req := &eventsapi.ForwardRequest{Envelope: &types.Envelope{
		Timestamp: timestamppb.Now(),
		Namespace: namespace,
		Topic:     topic,
		Event:     &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: a.GetValue()},
	}}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if len(q.pending) >= q.opts.MaxQueue {
		q.pending = q.pending[1:]
		q.dropped++
		log.G(ctx).WithField("dropped", q.dropped).Warn("event queue full, dropping the oldest event")
	}
	q.pending = append(q.pending, req)
	q.cond.Signal()
}

// Flush waits until the queue is empty or ctx ends (tests, shutdown).
func (q *Queue) Flush(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		q.mu.Lock()
		n := len(q.pending)
		q.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close stops the sender; pending events are dropped.
func (q *Queue) Close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		q.cond.Broadcast()
	}
	q.mu.Unlock()
}

func (q *Queue) run(life context.Context) {
	var (
		fwd     Forwarder
		cl      closer
		backoff = 50 * time.Millisecond
	)
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	for {
		q.mu.Lock()
		for len(q.pending) == 0 && !q.closed {
			q.cond.Wait()
		}
		if q.closed {
			q.mu.Unlock()
			return
		}
		req := q.pending[0]
		q.mu.Unlock()

		err := func() error {
			ctx, cancel := context.WithTimeout(life, q.opts.Timeout)
			defer cancel()
			if fwd == nil {
				f, c, err := q.dial(ctx)
				if err != nil {
					return err
				}
				fwd, cl = f, c
			}
			return fwd.Forward(ctx, req)
		}()
		if err != nil {
			log.G(life).WithError(err).WithField("topic", req.Envelope.Topic).Debug("forwarding event failed, will retry")
			if cl != nil {
				cl.Close()
			}
			fwd, cl = nil, nil
			select {
			case <-life.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, q.opts.MaxBackoff)
			continue
		}
		backoff = 50 * time.Millisecond
		q.mu.Lock()
		if len(q.pending) > 0 && q.pending[0] == req {
			q.pending = q.pending[1:]
		}
		q.mu.Unlock()
	}
}
