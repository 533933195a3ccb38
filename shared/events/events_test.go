package events

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
)

// fakeForwarder records envelopes and fails the first n calls.
type fakeForwarder struct {
	mu     sync.Mutex
	failN  int
	topics []string
	dials  int
}

func (f *fakeForwarder) Forward(ctx context.Context, req *eventsapi.ForwardRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failN > 0 {
		f.failN--
		return errors.New("containerd away")
	}
	f.topics = append(f.topics, req.Envelope.Topic+"@"+req.Envelope.Namespace)
	return nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

func TestOrderAndRetry(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &fakeForwarder{failN: 3}
	q := NewQueue(ctx, func(context.Context) (Forwarder, closer, error) {
		f.mu.Lock()
		f.dials++
		f.mu.Unlock()
		return f, nopCloser{}, nil
	}, Options{MaxBackoff: 10 * time.Millisecond})
	want := []string{TopicTaskCreate, TopicTaskStart, TopicTaskExit, TopicTaskDelete}
	for _, tp := range want {
		q.Publish(ctx, "k8s.io", tp, &apievents.TaskCreate{ContainerID: "c"})
	}
	fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
	defer fcancel()
	if err := q.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.topics) != len(want) {
		t.Fatalf("got %v", f.topics)
	}
	for i, tp := range want {
		if f.topics[i] != tp+"@k8s.io" {
			t.Errorf("event %d = %s, want %s", i, f.topics[i], tp)
		}
	}
	if f.dials < 2 {
		t.Errorf("dials = %d: a failed forward must redial", f.dials)
	}
}

func TestBoundedQueue(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q := NewQueue(ctx, func(context.Context) (Forwarder, closer, error) {
		return nil, nil, errors.New("never up")
	}, Options{MaxQueue: 3, MaxBackoff: time.Hour})
	for i := 0; i < 10; i++ {
		q.Publish(ctx, "ns", TopicTaskExit, &apievents.TaskExit{})
	}
	q.mu.Lock()
	n := len(q.pending)
	q.mu.Unlock()
	if n != 3 {
		t.Fatalf("pending = %d, want 3", n)
	}
	q.Close()
	q.Publish(ctx, "ns", TopicTaskExit, &apievents.TaskExit{})
}
