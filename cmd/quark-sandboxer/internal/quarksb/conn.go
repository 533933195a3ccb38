package quarksb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"

	"github.com/magnetar-runtime/magnetar/shared/taskfwd"
	"github.com/magnetar-runtime/magnetar/shared/taskv2"
	"github.com/magnetar-runtime/magnetar/shared/transport"
)

// conn is a connection to a pod's Quark sandbox: its Task API v2 on the
// task socket, spoken with v3's types (shared/taskv2), errors as errdefs
// errors (transport.ClientErrors). It is the taskfwd.Conn of the pod.
type conn struct {
	c    *ttrpc.Client
	task taskapi.TTRPCTaskService
	done chan struct{}
}

var _ taskfwd.Conn = (*conn)(nil)

func newConn(nc net.Conn) *conn {
	c := &conn{done: make(chan struct{})}
	var once sync.Once
	c.c = ttrpc.NewClient(nc, ttrpc.WithOnClose(func() { once.Do(func() { close(c.done) }) }),
		ttrpc.WithChainUnaryClientInterceptor(transport.ClientErrors, taskv2.ClientInterceptor))
	c.task = taskv2.Client(c.c)
	return c
}

func (c *conn) Task() taskapi.TTRPCTaskService { return c.task }
func (c *conn) Done() <-chan struct{}          { return c.done }
func (c *conn) Close() error                   { return c.c.Close() }

// probeID is the container id of the request that proves the sandbox's
// task server answers: no container has it (an empty id), so any answer
// but a broken connection will do (Quark: NotFound; the stand-in:
// InvalidArgument).
const probeID = ""

// probeTimeout bounds one probe on a new connection.
const probeTimeout = 2 * time.Second

// dial connects to the sandbox's task socket until it answers, ctx ends or
// alive says the sandbox process is gone.
func dial(ctx context.Context, sock string, alive func() error) (*conn, error) {
	return transport.DialWith(ctx, transport.UnixAddress(sock), transport.DialOptions{Alive: alive, AttemptTimeout: probeTimeout},
		func(ctx context.Context, nc net.Conn) (*conn, error) {
			c := newConn(nc)
			_, err := c.task.State(ctx, &taskapi.StateRequest{ID: probeID})
			if err == nil || !errdefs.IsUnavailable(err) && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
				return c, nil
			}
			c.Close()
			return nil, fmt.Errorf("task server not answering yet: %v: %w", err, errdefs.ErrUnavailable)
		})
}
