package daemon

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// A stopping daemon must leave the task requests in flight unanswered: the
// keeper replays them to the next daemon, while an answer ("context
// canceled" from a Wait) would tell containerd that the task ended.
func TestStopLeavesRequestsInFlightUnanswered(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "task.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	srv.RegisterService("test.Block", &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"Wait": func(ctx context.Context, unmarshal func(any) error) (any, error) {
			var req emptypb.Empty
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			close(entered)
			<-ctx.Done() // like Task.Wait for a process that keeps running
			return nil, ctx.Err()
		},
	}})
	life, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = serveTasks(life, srv, l) }()
	defer srv.Close()

	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	answered := make(chan error, 1)
	go func() {
		answered <- client.Call(context.Background(), "test.Block", "Wait", &emptypb.Empty{}, &emptypb.Empty{})
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the request never reached the handler")
	}
	stop() // the daemon stops: SIGTERM
	select {
	case err := <-answered:
		t.Fatalf("a request in flight was answered when the daemon stopped: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
}
