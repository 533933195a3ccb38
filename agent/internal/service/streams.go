package service

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
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

func (s *streams) Output(ctx context.Context, r *agentapi.OutputRequest, srv agentapi.Streams_OutputServer) error {
	if err := checkProc(r.GetContainerId(), r.GetExecId()); err != nil {
		return errgrpc.ToGRPC(err)
	}
	var stream string
	switch r.GetStream() {
	case agentapi.StdStream_STDOUT:
		stream = agentapi.Stdout
	case agentapi.StdStream_STDERR:
		stream = agentapi.Stderr
	default:
		return errgrpc.ToGRPC(fmt.Errorf("stream: %v is not STDOUT or STDERR: %w", r.GetStream(), errdefs.ErrInvalidArgument))
	}
	err := s.h.Output(ctx, r.GetContainerId(), r.GetExecId(), stream, func(b []byte) error {
		return srv.Send(&agentapi.OutputChunk{Data: b})
	})
	if err != nil {
		log.G(ctx).WithError(err).WithFields(log.Fields{"container_id": r.GetContainerId(), "exec_id": r.GetExecId(), "stream": stream}).Debug("output stream ended")
	}
	return errgrpc.ToGRPC(err)
}

func (s *streams) Input(ctx context.Context, srv agentapi.Streams_InputServer) (*agentapi.InputResponse, error) {
	first, err := srv.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errgrpc.ToGRPC(fmt.Errorf("input: the first message must name the process: %w", errdefs.ErrInvalidArgument))
		}
		return nil, err
	}
	id, exec := first.GetContainerId(), first.GetExecId()
	if err := checkProc(id, exec); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	pending := first.GetData()
	n, err := s.h.Input(ctx, id, exec, func() ([]byte, error) {
		if pending != nil {
			b := pending
			pending = nil
			return b, nil
		}
		m, err := srv.Recv()
		if err != nil {
			return nil, err
		}
		return m.GetData(), nil
	})
	if err != nil {
		log.G(ctx).WithError(err).WithFields(log.Fields{"container_id": id, "exec_id": exec}).Debug("input stream broke: stdin stays open")
		return nil, errgrpc.ToGRPC(err)
	}
	return &agentapi.InputResponse{Written: n}, nil
}
