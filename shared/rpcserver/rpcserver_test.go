package rpcserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// logged returns a context whose logger records every entry, debug
// included.
func logged() (context.Context, *logtest.Hook) {
	l, hook := logtest.NewNullLogger()
	l.SetLevel(logrus.DebugLevel)
	return log.WithLogger(context.Background(), logrus.NewEntry(l)), hook
}

// hasEntry reports whether hook saw an entry at level whose message
// contains msg and whose method field is method.
func hasEntry(hook *logtest.Hook, level logrus.Level, msg, method string) bool {
	for _, e := range hook.AllEntries() {
		if e.Level == level && strings.Contains(e.Message, msg) && e.Data["method"] == method {
			return true
		}
	}
	return false
}

// loggedPanic reports whether hook saw the panic of method logged with a
// stack that shows where it happened (boom).
func loggedPanic(hook *logtest.Hook, method string) bool {
	for _, e := range hook.AllEntries() {
		stack, _ := e.Data["stack"].(string)
		if e.Level == logrus.ErrorLevel && strings.Contains(e.Message, "panic in handler: boom") &&
			e.Data["method"] == method && strings.Contains(stack, "rpcserver.boom") {
			return true
		}
	}
	return false
}

// boom panics; its name must appear in the logged stack.
func boom() { panic("boom: nil map") }

func wantCode(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Errorf("%s = %v, want %s containing %q", what, err, code, msg)
	}
}

// serveTTRPC serves a test service on a NewTTRPC server and returns a
// client.
func serveTTRPC(t *testing.T, ctx context.Context) *ttrpc.Client {
	t.Helper()
	srv, err := NewTTRPC()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	empty := func(unmarshal func(any) error) error { return unmarshal(&emptypb.Empty{}) }
	srv.RegisterService("test.Edge", &ttrpc.ServiceDesc{
		Methods: map[string]ttrpc.Method{
			"Panic": func(ctx context.Context, unmarshal func(any) error) (any, error) {
				boom()
				return nil, nil
			},
			"NotFound": func(ctx context.Context, unmarshal func(any) error) (any, error) {
				return nil, fmt.Errorf("container c1: %w", errdefs.ErrNotFound)
			},
			"Status": func(ctx context.Context, unmarshal func(any) error) (any, error) {
				return nil, status.Error(codes.ResourceExhausted, "queue full")
			},
			"OK": func(ctx context.Context, unmarshal func(any) error) (any, error) {
				return &emptypb.Empty{}, empty(unmarshal)
			},
		},
		Streams: map[string]ttrpc.Stream{
			// (a stream's name must differ from every method's)
			"PanicStream": {
				Handler: func(ctx context.Context, ss ttrpc.StreamServer) (_ any, err error) {
					defer Recover(ctx, "/test.Edge/PanicStream", &err)
					boom()
					return nil, nil
				},
				StreamingServer: true,
			},
			"NotFoundStream": {
				Handler: func(ctx context.Context, ss ttrpc.StreamServer) (_ any, err error) {
					defer Recover(ctx, "/test.Edge/NotFoundStream", &err)
					return nil, fmt.Errorf("stdout of c1: %w", errdefs.ErrNotFound)
				},
				StreamingServer: true,
			},
		},
	})
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "t.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ctx, l) }()
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestTTRPCUnary(t *testing.T) {
	ctx, hook := logged()
	c := serveTTRPC(t, ctx)
	call := func(method string) error {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return c.Call(cctx, "test.Edge", method, &emptypb.Empty{}, &emptypb.Empty{})
	}

	wantCode(t, "Panic", call("Panic"), codes.Internal, "/test.Edge/Panic: internal error: panic: boom: nil map")
	if !loggedPanic(hook, "/test.Edge/Panic") {
		t.Errorf("the panic was not logged with its stack: %v", hook.AllEntries())
	}
	if err := call("OK"); err != nil {
		t.Errorf("the call after a panic: %v", err)
	}
	wantCode(t, "NotFound", call("NotFound"), codes.NotFound, "container c1")
	if !hasEntry(hook, logrus.DebugLevel, "call failed", "/test.Edge/NotFound") {
		t.Errorf("the failed call was not logged: %v", hook.AllEntries())
	}
	wantCode(t, "Status", call("Status"), codes.ResourceExhausted, "queue full")
}

func TestTTRPCStream(t *testing.T) {
	ctx, hook := logged()
	c := serveTTRPC(t, ctx)
	recv := func(method string) error {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := c.NewStream(cctx, &ttrpc.StreamDesc{StreamingServer: true}, "test.Edge", method, &emptypb.Empty{})
		if err != nil {
			return err
		}
		return st.RecvMsg(&emptypb.Empty{})
	}
	wantCode(t, "Panic stream", recv("PanicStream"), codes.Internal, "/test.Edge/PanicStream: internal error: panic: boom")
	if !loggedPanic(hook, "/test.Edge/PanicStream") {
		t.Errorf("the panic was not logged with its stack: %v", hook.AllEntries())
	}
	wantCode(t, "NotFound stream", recv("NotFoundStream"), codes.NotFound, "stdout of c1")
	if !hasEntry(hook, logrus.DebugLevel, "call failed", "/test.Edge/NotFoundStream") {
		t.Errorf("the failed stream was not logged: %v", hook.AllEntries())
	}
	if err := c.Call(ctx, "test.Edge", "OK", &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		t.Errorf("the call after a panic: %v", err)
	}
}

// TestNewTTRPCKeepsOptions: a caller's interceptor runs inside the edge.
func TestNewTTRPCKeepsOptions(t *testing.T) {
	var seen atomic.Bool
	srv, err := NewTTRPC(ttrpc.WithChainUnaryServerInterceptor(
		func(ctx context.Context, um ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (any, error) {
			seen.Store(true)
			panic("in the caller's interceptor")
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.RegisterService("test.Edge", &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"OK": func(context.Context, func(any) error) (any, error) { return &emptypb.Empty{}, nil },
	}})
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "t.sock"))
	if err != nil {
		t.Fatal(err)
	}
	sctx, _ := logged()
	go func() { _ = srv.Serve(sctx, l) }()
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = c.Call(ctx, "test.Edge", "OK", &emptypb.Empty{}, &emptypb.Empty{})
	if !seen.Load() {
		t.Fatal("the caller's interceptor did not run")
	}
	wantCode(t, "OK", err, codes.Internal, "in the caller's interceptor")
}

// health is a gRPC service whose handlers panic while boom is set.
type health struct {
	healthpb.UnimplementedHealthServer
	boom atomic.Bool
}

func (h *health) Check(ctx context.Context, r *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if h.boom.Load() {
		boom()
	}
	if r.GetService() != "" {
		return nil, fmt.Errorf("service %q: %w", r.GetService(), errdefs.ErrNotFound)
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (h *health) List(ctx context.Context, r *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	return nil, status.Error(codes.ResourceExhausted, "too many services")
}

func (h *health) Watch(r *healthpb.HealthCheckRequest, ws healthpb.Health_WatchServer) error {
	if h.boom.Load() {
		boom()
	}
	return fmt.Errorf("watch: %w", errdefs.ErrNotImplemented)
}

func TestGRPC(t *testing.T) {
	// gRPC's contexts carry no logger of ours: record the default one
	lctx, hook := logged()
	defaultLogger := log.L
	log.L = log.G(lctx)
	t.Cleanup(func() { log.L = defaultLogger })
	h := &health{}
	srv := NewGRPC()
	healthpb.RegisterHealthServer(srv, h)
	sock := filepath.Join(t.TempDir(), "g.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	watch := func() error {
		ws, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		_, err = ws.Recv()
		return err
	}

	h.boom.Store(true)
	_, err = c.Check(ctx, &healthpb.HealthCheckRequest{})
	wantCode(t, "Check", err, codes.Internal, "/grpc.health.v1.Health/Check: internal error: panic: boom")
	wantCode(t, "Watch", watch(), codes.Internal, "/grpc.health.v1.Health/Watch: internal error: panic: boom")
	if !loggedPanic(hook, "/grpc.health.v1.Health/Check") || !loggedPanic(hook, "/grpc.health.v1.Health/Watch") {
		t.Errorf("the panics were not logged with their stacks: %v", hook.AllEntries())
	}
	h.boom.Store(false)
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("the call after a panic: %v", err)
	}
	_, err = c.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
	wantCode(t, "Check(nope)", err, codes.NotFound, `service "nope"`)
	if !hasEntry(hook, logrus.DebugLevel, "call failed", "/grpc.health.v1.Health/Check") {
		t.Errorf("the failed call was not logged: %v", hook.AllEntries())
	}
	wantCode(t, "Watch", watch(), codes.Unimplemented, "watch")
	_, err = c.List(ctx, &healthpb.HealthListRequest{})
	wantCode(t, "List", err, codes.ResourceExhausted, "too many services")
}

func TestRecoverLeavesAnswersAlone(t *testing.T) {
	ctx, hook := logged()
	run := func(err error) (got error) {
		defer Recover(ctx, "/test.Edge/Run", &got)
		return err
	}
	if err := run(nil); err != nil {
		t.Errorf("nil became %v", err)
	}
	if n := len(hook.AllEntries()); n != 0 {
		t.Errorf("a successful call was logged: %v", hook.AllEntries())
	}
	st := status.Error(codes.Aborted, "preempted")
	if err := run(st); !errors.Is(err, st) {
		t.Errorf("a status became %v", err)
	}
	wantCode(t, "errdefs", run(errdefs.ErrFailedPrecondition), codes.FailedPrecondition, "failed precondition")
}

// A ttrpc request whose payload is no message of the method's type is the
// caller's fault: InvalidArgument naming the method, not ttrpc's own
// Internal (found by hack/rpcfuzz).
func TestTTRPCUndecodablePayload(t *testing.T) {
	ctx, _ := logged()
	info := &ttrpc.UnaryServerInfo{FullMethod: "/x.v1.S/M"}
	called := false
	_, err := unaryTTRPC(ctx, func(any) error {
		return status.Errorf(codes.Internal, "ttrpc: error unmarshalling payload: proto: cannot parse invalid wire-format data")
	}, info, func(ctx context.Context, unmarshal func(any) error) (any, error) {
		var req emptypb.Empty
		if err := unmarshal(&req); err != nil {
			return nil, err
		}
		called = true
		return &req, nil
	})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "/x.v1.S/M") || called {
		t.Errorf("undecodable payload: %v (handler ran: %v), want InvalidArgument naming the method", err, called)
	}
}
