package taskfwd

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// namespaceKey is the ttrpc metadata key containerd puts its namespace in;
// the guest's task server reads it from there too.
const namespaceKey = "containerd-namespace-ttrpc"

// Retry pacing of the relays and the pump while a guest's connection is
// down: from retryMin, doubling, up to retryMax.
const (
	retryMin = 10 * time.Millisecond
	retryMax = time.Second
)

// withNamespace is ctx with the containerd namespace ns in its outgoing
// ttrpc metadata (the rest of the metadata, e.g. containerd's own, kept).
func withNamespace(ctx context.Context, ns string) context.Context {
	md := ttrpc.MD{}
	if in, ok := ttrpc.GetMetadata(ctx); ok {
		md = in.Clone()
	}
	md.Set(namespaceKey, ns)
	return ttrpc.WithMetadata(ctx, md)
}

// gone reports whether the guest has exited.
func gone(g Guest) bool {
	select {
	case <-g.Exited():
		return true
	default:
		return false
	}
}

// errGone is the error of an operation that needs a guest that is gone
// (nil: a pod not found again after a restart).
func errGone(g Guest) error {
	if g == nil {
		return fmt.Errorf("its pod is gone: %w", errdefs.ErrUnavailable)
	}
	return fmt.Errorf("guest of pod %s is gone: %w", g.ID(), errdefs.ErrUnavailable)
}

// withConn calls f with the guest's current connection until f succeeds or
// fails for good. An Unavailable error from f (its connection broke) or a
// failed Conn is retried on the next connection, paced, until ctx ends or
// the guest is gone. f is where relays and the pump do their long-running
// work, so that they resume on the new connection after a reconnect.
func withConn(ctx context.Context, g Guest, f func(Conn) error) error {
	delay := retryMin
	for {
		conn, err := g.Conn(ctx)
		if err == nil {
			began := time.Now()
			if err = f(conn); err == nil || !errdefs.IsUnavailable(err) {
				return err
			}
			if time.Since(began) > retryMax {
				delay = retryMin // it had worked for a while: a fresh break
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if gone(g) {
			return errGone(g)
		}
		var broken <-chan struct{}
		if conn != nil {
			broken = conn.Done()
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
		case <-g.Exited():
		case <-broken: // redial at once
		case <-t.C:
		}
		t.Stop()
		delay = min(2*delay, retryMax)
	}
}

// asStreamConn is conn as a StreamConn; a guest whose connection carries
// no streams must take Forwarding.StdioByPath.
func asStreamConn(conn Conn) (StreamConn, error) {
	if sc, ok := conn.(StreamConn); ok {
		return sc, nil
	}
	return nil, fmt.Errorf("the guest's connection (%T) carries no stdio streams (a guest without them takes Forwarding.StdioByPath): %w", conn, errdefs.ErrFailedPrecondition)
}

// asEventConn is conn as an EventConn; a guest whose connection carries no
// event queue must take Forwarding.WaitExits.
func asEventConn(conn Conn) (EventConn, error) {
	if ec, ok := conn.(EventConn); ok {
		return ec, nil
	}
	return nil, fmt.Errorf("the guest's connection (%T) carries no event queue (a guest without one takes Forwarding.WaitExits): %w", conn, errdefs.ErrFailedPrecondition)
}

// timeOf is a guest timestamp as a time; now when the guest sent none.
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Now()
	}
	return ts.AsTime()
}
