// Package rpcserver builds every ttrpc and gRPC server of Magnetar (a
// sandboxer's Sandbox API and Task API, the in-guest agent's services) with
// the same edge around each call:
//
//   - a panicking handler does not take the process down (for the agent,
//     PID 1 of the guest, that would panic the guest kernel): the panic is
//     logged with its stack (log.G(ctx)) and the call answered
//     codes.Internal, naming the method;
//   - a handler may return errdefs errors: they become their gRPC status
//     here (errgrpc.ToGRPC), while a status a handler made itself is left
//     alone;
//   - a ttrpc request whose payload does not decode is answered
//     codes.InvalidArgument, naming the method (ttrpc itself says
//     Internal); gRPC decodes before any interceptor, so there it stays
//     grpc-go's Internal;
//   - a failed call is logged at debug level with its method.
//
// NewTTRPC and NewGRPC install that edge as interceptors; interceptors a
// caller adds with ttrpc.WithChainUnaryServerInterceptor or
// grpc.ChainUnaryInterceptor/ChainStreamInterceptor run inside it. ttrpc
// v1.2.9 has no option to install a stream server interceptor, so every ttrpc
// stream handler defers Recover itself, with a named error result:
//
//	func (s *streams) Output(ctx context.Context, srv agentapi.Streams_OutputServer) (err error) {
//		defer rpcserver.Recover(ctx, "/magnetar.agent.v1.Streams/Output", &err)
//		…
//	}
//
// A panic in a goroutine that a handler started is not recovered by any of
// this: such goroutines must not panic.
package rpcserver
