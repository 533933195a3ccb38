package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ClientErrors is a ttrpc client interceptor for a peer of ours (an agent, an
// application kernel): every call's error becomes an errdefs error
// (errdefs.IsNotFound etc. work, a closed connection is
// errdefs.ErrUnavailable), so that status codes stay at the edge: a task
// proxy turns them back with errgrpc.ToGRPC. ttrpc's Call checks the
// answer's status only after the interceptor, so the status is taken from
// resp here.
func ClientErrors(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, _ *ttrpc.UnaryClientInfo, invoke ttrpc.Invoker) error {
	if err := invoke(ctx, req, resp); err != nil {
		return FromStatus(err)
	}
	if st := resp.Status; st != nil && st.Code != int32(codes.OK) {
		return FromStatus(status.ErrorProto(st))
	}
	return nil
}

// FromStatus turns a ttrpc status back into an errdefs error; a closed
// connection becomes errdefs.ErrUnavailable. Other errors are local (the
// call's context ended) and are returned as they are.
func FromStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ttrpc.ErrClosed), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return fmt.Errorf("connection: %w: %w", err, errdefs.ErrUnavailable)
	}
	if _, ok := status.FromError(err); !ok {
		return err
	}
	return errgrpc.ToNative(err)
}
