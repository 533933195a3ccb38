package service

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

// EventQueue is the task server's events.Publisher inside the guest: it
// keeps events in order until the host acknowledges them through GetEvents.
type EventQueue struct {
	mu      sync.Mutex
	events  []*agentapi.Event // seq ascending, unacknowledged
	next    uint64
	dropped uint64
	max     int
	wake    chan struct{} // closed and replaced on every publish
}

// NewEventQueue keeps at most max unacknowledged events (0: 4096).
func NewEventQueue(max int) *EventQueue {
	if max <= 0 {
		max = 4096
	}
	return &EventQueue{next: 1, max: max, wake: make(chan struct{})}
}

// Publish queues an event; it never blocks.
func (q *EventQueue) Publish(ctx context.Context, namespace, topic string, event proto.Message) {
	a, err := typeurl.MarshalAny(event)
	if err != nil {
		log.G(ctx).WithError(err).WithField("topic", topic).Error("event not queued: cannot marshal")
		return
	}
	ev := &agentapi.Event{Timestamp: timestamppb.Now(), Namespace: namespace, Topic: topic,
		Event: &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: a.GetValue()}}
	q.mu.Lock()
	ev.Seq = q.next
	q.next++
	q.events = append(q.events, ev)
	if over := len(q.events) - q.max; over > 0 {
		q.dropped += uint64(over)
		q.events = append([]*agentapi.Event(nil), q.events[over:]...)
		log.G(ctx).WithField("dropped", over).Warn("event queue full: oldest events dropped (is the host polling GetEvents?)")
	}
	close(q.wake)
	q.wake = make(chan struct{})
	q.mu.Unlock()
}

// Get acknowledges events up to afterSeq and returns up to max of the
// following ones, waiting up to timeout for the first.
func (q *EventQueue) Get(ctx context.Context, afterSeq uint64, max int, timeout time.Duration) ([]*agentapi.Event, uint64) {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		q.mu.Lock()
		i := 0
		for i < len(q.events) && q.events[i].GetSeq() <= afterSeq {
			i++
		}
		if i > 0 {
			q.events = append([]*agentapi.Event(nil), q.events[i:]...)
		}
		if len(q.events) > 0 {
			n := min(max, len(q.events))
			out := append([]*agentapi.Event(nil), q.events[:n]...)
			d := q.dropped
			q.mu.Unlock()
			return out, d
		}
		wake, d := q.wake, q.dropped
		q.mu.Unlock()
		select {
		case <-wake:
		case <-tm.C:
			return nil, d
		case <-ctx.Done():
			return nil, d
		}
	}
}
