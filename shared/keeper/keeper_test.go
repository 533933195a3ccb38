package keeper

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// trackingListener remembers the connections it accepted, so that a test can
// cut them all at once as a killed daemon would (ttrpc's Server.Close may
// still send the answer of a call in flight).
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// kill closes the listener and every accepted connection.
func (l *trackingListener) kill() {
	l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

// A real ttrpc client and server with the keeper between them: a call in
// flight while the server dies is answered by the next server.
func serveBackend(t *testing.T, path string, name string, delay time.Duration, calls *int32) (*ttrpc.Server, *trackingListener) {
	t.Helper()
	s, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	s.RegisterService("test.Echo", &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"Who": func(ctx context.Context, unmarshal func(any) error) (any, error) {
			var req emptypb.Empty
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			atomic.AddInt32(calls, 1)
			time.Sleep(delay)
			return wrapperspb.String(name), nil
		},
	}})
	nl, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l := &trackingListener{Listener: nl}
	go s.Serve(context.Background(), l)
	return s, l
}

func TestReplayAcrossBackendRestart(t *testing.T) {
	dir := t.TempDir()
	front, back := filepath.Join(dir, "task.sock"), filepath.Join(dir, "backend.sock")
	var calls int32
	s1, l1 := serveBackend(t, back, "first", 500*time.Millisecond, &calls)
	fl, err := net.Listen("unix", front)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, fl, back, Options{MaxWait: 10 * time.Second})

	conn, err := net.Dial("unix", front)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	client := ttrpc.NewClient(conn, ttrpc.WithOnClose(func() { close(closed) }))
	defer client.Close()
	var resp wrapperspb.StringValue
	if err := client.Call(ctx, "test.Echo", "Who", &emptypb.Empty{}, &resp); err != nil || resp.Value != "first" {
		t.Fatalf("first call: %v %q", err, resp.Value)
	}
	// a slow call is in flight when the backend dies
	done := make(chan string, 1)
	go func() {
		var r wrapperspb.StringValue
		if err := client.Call(ctx, "test.Echo", "Who", &emptypb.Empty{}, &r); err != nil {
			done <- "error: " + err.Error()
			return
		}
		done <- r.Value
	}()
	time.Sleep(100 * time.Millisecond)
	l1.kill() // as kill -9 would: the answer in flight is never sent
	s1.Close()
	time.Sleep(300 * time.Millisecond)
	s2, _ := serveBackend(t, back, "second", 0, &calls)
	defer s2.Close()
	select {
	case got := <-done:
		if got != "second" {
			t.Fatalf("in-flight call answered %q, want the restarted backend's answer", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight call never answered")
	}
	select {
	case <-closed:
		t.Fatal("the client saw its connection close")
	default:
	}
	if err := client.Call(ctx, "test.Echo", "Who", &emptypb.Empty{}, &resp); err != nil || resp.Value != "second" {
		t.Fatalf("call after restart: %v %q", err, resp.Value)
	}
}

func TestGivesUp(t *testing.T) {
	dir := t.TempDir()
	front, back := filepath.Join(dir, "task.sock"), filepath.Join(dir, "none.sock")
	fl, _ := net.Listen("unix", front)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, fl, back, Options{MaxWait: 300 * time.Millisecond})
	conn, _ := net.Dial("unix", front)
	closed := make(chan struct{})
	client := ttrpc.NewClient(conn, ttrpc.WithOnClose(func() { close(closed) }))
	defer client.Close()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("keeper held a connection to a backend that never came")
	}
}

func TestStreamRelayWaitsForBackend(t *testing.T) {
	dir := t.TempDir()
	front, back := filepath.Join(dir, "api.sock"), filepath.Join(dir, "api-backend.sock")
	fl, _ := net.Listen("unix", front)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ServeStream(ctx, fl, back, Options{MaxWait: 10 * time.Second})
	c, err := net.Dial("unix", front) // accepted although no backend is up
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		time.Sleep(200 * time.Millisecond)
		bl, _ := net.Listen("unix", back)
		b, _ := bl.Accept()
		buf := make([]byte, 5)
		b.Read(buf)
		b.Write(append([]byte("echo:"), buf...))
	}()
	c.Write([]byte("hello"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 10)
	n, _ := io.ReadFull(c, buf)
	if string(buf[:n]) != "echo:hello" {
		t.Fatalf("got %q", buf[:n])
	}
}
