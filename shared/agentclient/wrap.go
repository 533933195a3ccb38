package agentclient

// Error-converting wrappers: the generated clients return ttrpc (gRPC)
// statuses; these return errdefs errors (errdefs.IsNotFound etc. work, a
// closed connection is errdefs.ErrUnavailable). Status codes stay at the
// edge: a host task proxy turns them back with errgrpc.ToGRPC.

import (
	"context"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

type taskClient struct{ c taskapi.TTRPCTaskService }

var _ taskapi.TTRPCTaskService = taskClient{}

func (t taskClient) State(ctx context.Context, r *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	resp, err := t.c.State(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) Create(ctx context.Context, r *taskapi.CreateTaskRequest) (*taskapi.CreateTaskResponse, error) {
	resp, err := t.c.Create(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) Start(ctx context.Context, r *taskapi.StartRequest) (*taskapi.StartResponse, error) {
	resp, err := t.c.Start(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) Delete(ctx context.Context, r *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	resp, err := t.c.Delete(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) Pids(ctx context.Context, r *taskapi.PidsRequest) (*taskapi.PidsResponse, error) {
	resp, err := t.c.Pids(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) Pause(ctx context.Context, r *taskapi.PauseRequest) (*emptypb.Empty, error) {
	resp, err := t.c.Pause(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) Resume(ctx context.Context, r *taskapi.ResumeRequest) (*emptypb.Empty, error) {
	resp, err := t.c.Resume(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) Checkpoint(ctx context.Context, r *taskapi.CheckpointTaskRequest) (*emptypb.Empty, error) {
	resp, err := t.c.Checkpoint(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) Kill(ctx context.Context, r *taskapi.KillRequest) (*emptypb.Empty, error) {
	resp, err := t.c.Kill(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) Exec(ctx context.Context, r *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	resp, err := t.c.Exec(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) ResizePty(ctx context.Context, r *taskapi.ResizePtyRequest) (*emptypb.Empty, error) {
	resp, err := t.c.ResizePty(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) CloseIO(ctx context.Context, r *taskapi.CloseIORequest) (*emptypb.Empty, error) {
	resp, err := t.c.CloseIO(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) Update(ctx context.Context, r *taskapi.UpdateTaskRequest) (*emptypb.Empty, error) {
	resp, err := t.c.Update(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) Wait(ctx context.Context, r *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	resp, err := t.c.Wait(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) Stats(ctx context.Context, r *taskapi.StatsRequest) (*taskapi.StatsResponse, error) {
	resp, err := t.c.Stats(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) Connect(ctx context.Context, r *taskapi.ConnectRequest) (*taskapi.ConnectResponse, error) {
	resp, err := t.c.Connect(ctx, r)
	return resp, errorFromStatus(err)
}

func (t taskClient) Shutdown(ctx context.Context, r *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	resp, err := t.c.Shutdown(ctx, r)
	return resp, errorFromStatus(err)
}

type sandboxClient struct{ c agentapi.SandboxService }

var _ agentapi.SandboxService = sandboxClient{}

func (s sandboxClient) Health(ctx context.Context, r *agentapi.HealthRequest) (*agentapi.HealthResponse, error) {
	resp, err := s.c.Health(ctx, r)
	return resp, errorFromStatus(err)
}

func (s sandboxClient) Setup(ctx context.Context, r *agentapi.SetupRequest) (*emptypb.Empty, error) {
	resp, err := s.c.Setup(ctx, r)
	return resp, errorFromStatus(err)
}

func (s sandboxClient) SyncClock(ctx context.Context, r *agentapi.SyncClockRequest) (*agentapi.SyncClockResponse, error) {
	resp, err := s.c.SyncClock(ctx, r)
	return resp, errorFromStatus(err)
}

func (s sandboxClient) GetEvents(ctx context.Context, r *agentapi.GetEventsRequest) (*agentapi.GetEventsResponse, error) {
	resp, err := s.c.GetEvents(ctx, r)
	return resp, errorFromStatus(err)
}

func (s sandboxClient) DebugExec(ctx context.Context, r *agentapi.DebugExecRequest) (*agentapi.DebugExecResponse, error) {
	resp, err := s.c.DebugExec(ctx, r)
	return resp, errorFromStatus(err)
}

func (s sandboxClient) Shutdown(ctx context.Context, r *agentapi.ShutdownRequest) (*emptypb.Empty, error) {
	resp, err := s.c.Shutdown(ctx, r)
	return resp, errorFromStatus(err)
}
