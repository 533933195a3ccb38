package criclient

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Labels put on every pod (and container) a benchmark creates, so that its
// pods, and only those, can be found and removed, also after an error or an
// interrupted run: LabelBench names the benchmark's, LabelRun one run's.
const (
	LabelBench = "magnetar-bench"
	LabelRun   = "magnetar-bench-run"
)

// MaxRecvMsgSize is the largest reply accepted (a ListContainers of many
// pods outgrows gRPC's default of 4 MiB).
const MaxRecvMsgSize = 64 << 20

// Client is a CRI client of one containerd socket.
type Client struct {
	Runtime runtimeapi.RuntimeServiceClient
	Images  runtimeapi.ImageServiceClient
	// Timeout bounds each call made with a context from RPC.
	Timeout time.Duration

	conn *grpc.ClientConn
}

// Dial makes a client of the CRI socket sock (a unix socket path). It does
// not connect yet: the first call does.
func Dial(sock string, timeout time.Duration) (*Client, error) {
	conn, err := grpc.NewClient("unix://"+sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxRecvMsgSize)))
	if err != nil {
		return nil, err
	}
	return &Client{Runtime: runtimeapi.NewRuntimeServiceClient(conn), Images: runtimeapi.NewImageServiceClient(conn),
		Timeout: timeout, conn: conn}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// RPC is the context of one call: ctx bounded by Timeout.
func (c *Client) RPC(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.Timeout)
}
