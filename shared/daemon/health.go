package daemon

import (
	"context"
	"fmt"
	"time"

	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/log"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// probeSandboxID names no sandbox: a Status call for it must come back
// NotFound from a daemon that serves.
const probeSandboxID = "magnetar-health-probe"

// probe checks the path containerd uses: a Controller.Status call through
// the public Sandbox API socket (the keeper's, relayed to the daemon). Any
// answer of the server counts, NotFound being the expected one; no answer
// within the timeout is an error.
func probe(ctx context.Context, apiSock string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+apiSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("health probe: %w", err)
	}
	defer conn.Close()
	_, err = sandboxapi.NewControllerClient(conn).Status(ctx, &sandboxapi.ControllerStatusRequest{SandboxID: probeSandboxID})
	switch status.Code(err) {
	case codes.OK, codes.NotFound:
		return nil
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return fmt.Errorf("health probe of %s: %w", apiSock, err)
	default:
		return nil // the server answered
	}
}

// superviseKeeper starts a new keeper when the one that owns containerd's
// sockets is gone while the daemon runs (without it containerd could not
// reach the daemon at all); containerd reconnects to the new sockets.
func superviseKeeper(ctx context.Context, ks keeperSockets, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, ok := runningKeeper(ks); ok {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		log.G(ctx).Error("the task keeper is gone: starting a new one; containerd reconnects")
		if err := ensureKeeper(ctx, ks); err != nil {
			log.G(ctx).WithError(err).Error("restarting the task keeper")
		}
	}
}
