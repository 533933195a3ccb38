package rpcserver

import (
	"context"
	"runtime/debug"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// NewTTRPC returns a ttrpc server whose unary calls go through the edge the
// package describes, configured further by opts. Its stream handlers must
// defer Recover.
func NewTTRPC(opts ...ttrpc.ServerOpt) (*ttrpc.Server, error) {
	return ttrpc.NewServer(append([]ttrpc.ServerOpt{ttrpc.WithChainUnaryServerInterceptor(unaryTTRPC)}, opts...)...)
}

// NewGRPC returns a gRPC server whose unary and stream calls go through the
// edge the package describes, configured further by opts.
func NewGRPC(opts ...grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unaryGRPC),
		grpc.ChainStreamInterceptor(streamGRPC),
	}, opts...)...)
}

// Recover is deferred by a ttrpc stream handler, which no interceptor can
// reach, with the handler's named error result: a panic becomes a
// codes.Internal error naming method (logged with its stack), an errdefs
// error its status, and a failure is logged at debug level, as NewTTRPC
// does for unary calls. method is the full method, "/<service>/<method>".
func Recover(ctx context.Context, method string, errp *error) {
	*errp = finish(ctx, method, recover(), *errp)
}

// finish is every call's way out: r is what the handler panicked with (nil
// if it returned), err what it returned.
func finish(ctx context.Context, method string, r any, err error) error {
	if r != nil {
		log.G(ctx).WithFields(log.Fields{"method": method, "stack": string(debug.Stack())}).Errorf("panic in handler: %v", r)
		return status.Errorf(codes.Internal, "%s: internal error: panic: %v", method, r)
	}
	if err == nil {
		return nil
	}
	err = errgrpc.ToGRPC(err)
	log.G(ctx).WithError(err).WithField("method", method).Debug("call failed")
	return err
}

func unaryTTRPC(ctx context.Context, um ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (_ any, err error) {
	defer Recover(ctx, info.FullMethod, &err)
	// ttrpc answers a payload it cannot decode Internal: it is the
	// caller's request that is bad
	return m(ctx, func(v any) error {
		if err := um(v); err != nil {
			return status.Errorf(codes.InvalidArgument, "%s: the request is not a valid %T: %v", info.FullMethod, v, status.Convert(err).Message())
		}
		return nil
	})
}

func unaryGRPC(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (_ any, err error) {
	defer Recover(ctx, info.FullMethod, &err)
	return h(ctx, req)
}

func streamGRPC(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer Recover(ss.Context(), info.FullMethod, &err)
	return h(srv, ss)
}
