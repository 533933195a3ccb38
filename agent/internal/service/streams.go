package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/rpcserver"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
)

// streams implements agentapi.StreamsService over the hub.
type streams struct{ h *Hub }

func checkProc(id, exec string) error {
	if err := sandbox.ValidateID("container_id", id); err != nil {
		return err
	}
	if exec != "" {
		return sandbox.ValidateID("exec_id", exec)
	}
	return nil
}

// maxCredit is the most chunks a client may have outstanding: ttrpc's
// client keeps 64 messages per stream and drops the stream when they are
// not taken within a second.
const maxCredit = 64

// errDetached ends an Output whose client closed its side.
var errDetached = errors.New("output reader detached")

// Output serves Streams.Output: a process's stdout or stderr, flow-controlled
// by the client's credits.
func (s *streams) Output(ctx context.Context, srv agentapi.Streams_OutputServer) (err error) {
	defer rpcserver.Recover(ctx, "/magnetar.agent.v1.Streams/Output", &err)
	first, err := srv.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("output: the first message must name the stream: %w", errdefs.ErrInvalidArgument)
		}
		return err
	}
	id, exec := first.GetContainerId(), first.GetExecId()
	if err := checkProc(id, exec); err != nil {
		return err
	}
	var stream string
	switch first.GetStream() {
	case agentapi.StdStream_STDOUT:
		stream = agentapi.Stdout
	case agentapi.StdStream_STDERR:
		stream = agentapi.Stderr
	default:
		return fmt.Errorf("stream: %v is not STDOUT or STDERR: %w", first.GetStream(), errdefs.ErrInvalidArgument)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cr := &credits{wake: make(chan struct{}, 1)}
	if err := cr.add(first.GetCredit()); err != nil {
		return err
	}
	go func() {
		for {
			m, err := srv.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = errDetached
				}
				cancel(err)
				return
			}
			if err := cr.add(m.GetCredit()); err != nil {
				cancel(err)
				return
			}
		}
	}()
	err = s.h.Output(ctx, id, exec, stream, func(b []byte) error {
		if err := cr.take(ctx); err != nil {
			return err
		}
		return srv.Send(&agentapi.OutputChunk{Data: b})
	})
	lg := log.G(ctx).WithFields(log.Fields{"container_id": id, "exec_id": exec, "stream": stream})
	if errors.Is(err, errDetached) || errors.Is(context.Cause(ctx), errDetached) {
		lg.Debug("output reader detached")
		return nil
	}
	if err != nil {
		lg.WithError(err).Debug("output stream ended")
	}
	return err
}

// credits counts the chunks a client can take.
type credits struct {
	mu   sync.Mutex
	n    uint32
	wake chan struct{}
}

func (c *credits) add(n uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n+n > maxCredit || c.n+n < c.n {
		return fmt.Errorf("credit: %d outstanding chunks is more than %d: %w", uint64(c.n)+uint64(n), maxCredit, errdefs.ErrInvalidArgument)
	}
	c.n += n
	if c.n > 0 {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

func (c *credits) take(ctx context.Context) error {
	for {
		c.mu.Lock()
		if c.n > 0 {
			c.n--
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
		select {
		case <-c.wake:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// inputWindow is how many stdin chunks the client may send ahead: the
// agent's ttrpc server keeps 64 messages per stream and, when a handler does
// not take them, stalls the whole connection for up to a second and then
// drops the stream.
const inputWindow = 16

// Input serves Streams.Input: a process's stdin, with credits granted as
// the chunks reach the FIFO.
func (s *streams) Input(ctx context.Context, srv agentapi.Streams_InputServer) (err error) {
	defer rpcserver.Recover(ctx, "/magnetar.agent.v1.Streams/Input", &err)
	first, err := srv.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("input: the first message must name the process: %w", errdefs.ErrInvalidArgument)
		}
		return err
	}
	id, exec := first.GetContainerId(), first.GetExecId()
	if err := checkProc(id, exec); err != nil {
		return err
	}
	if err := srv.Send(&agentapi.InputAck{Credit: inputWindow}); err != nil {
		return err
	}
	pending := first.GetData()
	var taken uint32
	n, err := s.h.Input(ctx, id, exec, func() ([]byte, error) {
		if pending != nil {
			b := pending
			pending = nil
			return b, nil
		}
		// the chunks taken so far are in the FIFO: hand their credit back
		if taken >= inputWindow/2 {
			if err := srv.Send(&agentapi.InputAck{Credit: taken}); err != nil {
				return nil, err
			}
			taken = 0
		}
		m, err := srv.Recv()
		if err != nil {
			return nil, err
		}
		taken++
		return m.GetData(), nil
	})
	if err != nil {
		log.G(ctx).WithError(err).WithFields(log.Fields{"container_id": id, "exec_id": exec}).Debug("input stream broke: stdin stays open")
		return err
	}
	return srv.Send(&agentapi.InputAck{Closed: true, Written: n})
}
