package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	runc "github.com/containerd/go-runc"

	"github.com/magnetar-runtime/magnetar/agent/internal/service"
	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

type noBackend struct{}

func (noBackend) Create(context.Context, *task.CreateRequest) (task.Container, error) {
	return nil, errors.New("no containers in this test")
}

type noSystem struct{ service.System }

// TestServeSerialServesAgainAfterTheHostLeaves runs the serial serving loop
// on a "port" that is a unix socket (OpenSerial dials sockets, as for QEMU's
// chardev): the host connects, leaves, connects again, and is served again.
func TestServeSerialServesAgainAfterTheHostLeaves(t *testing.T) {
	dir, err := os.MkdirTemp("", "serial")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "port.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := service.New(ctx, service.Config{Backend: noBackend{}, StateDir: filepath.Join(dir, "task"), IORoot: filepath.Join(dir, "io"),
		System: noSystem{}, Monitor: runc.Monitor})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Server.Close()
	calls := 0
	go serveSerial(ctx, a, "serial:test", func() (string, error) {
		if calls++; calls < 3 {
			return "", os.ErrNotExist // the port appears once its module loaded
		}
		return sock, nil
	})
	for round := 1; round <= 3; round++ {
		_ = l.(*net.UnixListener).SetDeadline(time.Now().Add(10 * time.Second))
		conn, err := l.Accept()
		if err != nil {
			t.Fatalf("round %d: the agent did not open the port again: %v", round, err)
		}
		hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := agentclient.New(hctx, conn)
		hcancel()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if c.Health().GetVersion() != agentapi.Version {
			t.Fatalf("round %d: %v", round, c.Health())
		}
		c.Close() // the host leaves
	}
}
