package taskv2

import (
	"context"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
)

// Service names of the Task API on a ttrpc connection.
const (
	ServiceV2 = "containerd.task.v2.Task"
	ServiceV3 = "containerd.task.v3.Task"
)

// ClientInterceptor renames the v3 Task service to v2 in each request (the
// payload is the same bytes in both versions); other services pass as they
// are. Chain it on a ttrpc client whose peer serves v2 only.
func ClientInterceptor(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, _ *ttrpc.UnaryClientInfo, invoke ttrpc.Invoker) error {
	if req.Service == ServiceV3 {
		req.Service = ServiceV2
	}
	return invoke(ctx, req, resp)
}

// Client is the Task API of a v2 peer as a v3 client: c must have been made
// with ClientInterceptor in its chain (ttrpc.WithChainUnaryClientInterceptor).
func Client(c *ttrpc.Client) taskv3.TTRPCTaskService { return taskv3.NewTTRPCTaskClient(c) }

// Register serves svc, a v3 implementation, as containerd.task.v2.Task on
// srv.
func Register(srv *ttrpc.Server, svc taskv3.TTRPCTaskService) {
	srv.RegisterService(ServiceV2, serviceDesc(svc))
}

// serviceDesc is the ttrpc service of svc: one method per RPC of the Task
// API.
func serviceDesc(svc taskv3.TTRPCTaskService) *ttrpc.ServiceDesc {
	return &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"State":      method(svc.State),
		"Create":     method(svc.Create),
		"Start":      method(svc.Start),
		"Delete":     method(svc.Delete),
		"Pids":       method(svc.Pids),
		"Pause":      method(svc.Pause),
		"Resume":     method(svc.Resume),
		"Checkpoint": method(svc.Checkpoint),
		"Kill":       method(svc.Kill),
		"Exec":       method(svc.Exec),
		"ResizePty":  method(svc.ResizePty),
		"CloseIO":    method(svc.CloseIO),
		"Update":     method(svc.Update),
		"Wait":       method(svc.Wait),
		"Stats":      method(svc.Stats),
		"Connect":    method(svc.Connect),
		"Shutdown":   method(svc.Shutdown),
	}}
}

// method is a ttrpc method calling f with the request decoded into f's
// (v3) request type.
func method[Req any, PReq interface {
	*Req
	proto.Message
}, Resp any](f func(context.Context, PReq) (Resp, error)) ttrpc.Method {
	return func(ctx context.Context, unmarshal func(any) error) (any, error) {
		req := PReq(new(Req))
		if err := unmarshal(req); err != nil {
			return nil, err
		}
		return f(ctx, req)
	}
}
