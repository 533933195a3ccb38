package daemon

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeController answers Status as a serving daemon does for an unknown id,
// or hangs when told to.
type fakeController struct {
	sandboxapi.UnimplementedControllerServer
	hang bool
}

func (f *fakeController) Status(ctx context.Context, r *sandboxapi.ControllerStatusRequest) (*sandboxapi.ControllerStatusResponse, error) {
	if f.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, status.Errorf(codes.NotFound, "sandbox %s: not found", r.GetSandboxID())
}

func serveFake(t *testing.T, f *fakeController) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	sandboxapi.RegisterControllerServer(s, f)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return sock
}

func TestProbe(t *testing.T) {
	ctx := context.Background()
	if err := probe(ctx, serveFake(t, &fakeController{}), time.Second); err != nil {
		t.Errorf("serving daemon: %v", err)
	}
	if err := probe(ctx, serveFake(t, &fakeController{hang: true}), 200*time.Millisecond); err == nil {
		t.Error("hung daemon: probe passed")
	}
	if err := probe(ctx, filepath.Join(t.TempDir(), "none.sock"), 200*time.Millisecond); err == nil {
		t.Error("no daemon: probe passed")
	}
}

// The watchdog pings systemd only while the health check passes.
func TestWatchdogPingsOnlyWhenHealthy(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "40000") // a ping every 20 ms
	t.Setenv("WATCHDOG_PID", "")
	var healthy atomic.Bool
	var checks atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go watchdog(ctx, func(context.Context, time.Duration) error {
		checks.Add(1)
		if healthy.Load() {
			return nil
		}
		return errors.New("unhealthy")
	})
	pings := make(chan string, 100)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			pings <- string(buf[:n])
		}
	}()
	time.Sleep(150 * time.Millisecond)
	if n := checks.Load(); n < 3 {
		t.Fatalf("%d health checks in 150 ms, want several", n)
	}
	select {
	case p := <-pings:
		t.Fatalf("pinged %q while unhealthy", p)
	default:
	}
	healthy.Store(true)
	select {
	case p := <-pings:
		if !strings.Contains(p, "WATCHDOG=1") {
			t.Fatalf("ping %q", p)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no ping once healthy")
	}
}
