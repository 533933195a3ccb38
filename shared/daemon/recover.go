package daemon

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A panic in one request must not take down the daemon and every pod's
// control with it: it becomes an Internal error, logged with its stack.

func recoverTTRPC(ctx context.Context, um ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (resp interface{}, err error) {
	defer func() {
		if r := recover(); r != nil {
			log.G(ctx).WithField("method", info.FullMethod).Errorf("panic: %v\n%s", r, debug.Stack())
			err = status.Error(codes.Internal, fmt.Sprintf("%s: internal error: %v", info.FullMethod, r))
		}
	}()
	return m(ctx, um)
}

func recoverGRPC(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			log.G(ctx).WithField("method", info.FullMethod).Errorf("panic: %v\n%s", r, debug.Stack())
			err = status.Error(codes.Internal, fmt.Sprintf("%s: internal error: %v", info.FullMethod, r))
		}
	}()
	return h(ctx, req)
}
