package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"

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

// fakePort is a virtio-serial port as the guest sees it: one descriptor
// for every host connection in turn; a read ends with EOF when the
// current host hangs up, and blocks until the next one is there. Closing
// it would drop what it holds (as virtio_console does): it counts closes.
type fakePort struct {
	net.Conn // unused methods
	hosts    chan net.Conn
	mu       sync.Mutex
	cur      net.Conn
	closes   atomic.Int32
}

func (p *fakePort) current() net.Conn {
	p.mu.Lock()
	c := p.cur
	p.mu.Unlock()
	if c != nil {
		return c
	}
	c = <-p.hosts
	p.mu.Lock()
	p.cur = c
	p.mu.Unlock()
	return c
}

func (p *fakePort) Read(b []byte) (int, error) {
	c := p.current()
	n, err := c.Read(b)
	if err != nil {
		p.mu.Lock()
		p.cur = nil
		p.mu.Unlock()
		return n, io.EOF
	}
	return n, nil
}

func (p *fakePort) Write(b []byte) (int, error) {
	p.mu.Lock()
	c := p.cur
	p.mu.Unlock()
	if c == nil {
		return len(b), nil // no host: dropped
	}
	return c.Write(b)
}

func (p *fakePort) Close() error                     { p.closes.Add(1); return nil }
func (p *fakePort) LocalAddr() net.Addr              { return &net.UnixAddr{Name: "port", Net: "serial"} }
func (p *fakePort) SetDeadline(time.Time) error      { return nil }
func (p *fakePort) SetReadDeadline(time.Time) error  { return nil }
func (p *fakePort) SetWriteDeadline(time.Time) error { return nil }

// TestServeSessionsKeepsThePortOpen: hosts come and go on one open port;
// each is served by a new session, and the port is never closed between
// them (closing a virtio-serial port drops the next host's first request).
func TestServeSessionsKeepsThePortOpen(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := service.New(ctx, service.Config{Backend: noBackend{}, StateDir: filepath.Join(dir, "task"), IORoot: filepath.Join(dir, "io"),
		System: noSystem{}, Monitor: runc.Monitor})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Server.Close()
	port := &fakePort{hosts: make(chan net.Conn)}
	done := make(chan struct{})
	go func() {
		serveSessions(ctx, a, log.G(ctx), port, true)
		close(done)
	}()
	for round := 1; round <= 3; round++ {
		host, guest := net.Pipe()
		port.hosts <- guest
		hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := agentclient.New(hctx, host)
		hcancel()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		c.Close() // the host leaves
		if n := port.closes.Load(); n != 0 {
			t.Fatalf("round %d: the port was closed %d times between hosts", round, n)
		}
	}
	cancel()
	// the serving loop ends with its context, at once or when the port's
	// read ends
	host, guest := net.Pipe()
	host.Close()
	select {
	case <-done:
	case port.hosts <- guest:
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("serveSessions did not end with its context")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serveSessions did not end with its context")
	}
	if port.closes.Load() != 1 {
		t.Errorf("the port was closed %d times, want once at the end", port.closes.Load())
	}
}
