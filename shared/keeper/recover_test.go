package keeper

import (
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// faultyListener hands out its first connection wrapped so that reading or
// writing it panics, as a bug serving one connection would.
type faultyListener struct {
	net.Listener
	panicRead, panicWrite bool
	n                     atomic.Int32
}

func (l *faultyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || l.n.Add(1) != 1 {
		return c, err
	}
	fc := &faultyConn{Conn: c, panicRead: l.panicRead, panicWrite: l.panicWrite}
	return fc, nil
}

type faultyConn struct {
	net.Conn
	panicRead, panicWrite bool
}

func (c *faultyConn) Read(p []byte) (int, error) {
	if c.panicRead {
		panic("injected read panic")
	}
	return c.Conn.Read(p)
}

func (c *faultyConn) Write(p []byte) (int, error) {
	if c.panicWrite {
		panic("injected write panic")
	}
	return c.Conn.Write(p)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logCtx is a context whose log.G writes to the returned buffer.
func logCtx(t *testing.T) (context.Context, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	l := logrus.New()
	l.SetOutput(buf)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return log.WithLogger(ctx, logrus.NewEntry(l)), buf
}

func expectPanicLogged(t *testing.T, logs *syncBuffer, value string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), value) {
		if time.Now().After(deadline) {
			t.Fatalf("no log of the panic %q: %q", value, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := logs.String(); !strings.Contains(got, "goroutine ") || !strings.Contains(got, "keeper.") {
		t.Errorf("the panic's log has no stack: %q", got)
	}
}

func echoCall(t *testing.T, path string) (string, error) {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		return "", err
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var resp wrapperspb.StringValue
	err = client.Call(ctx, "test.Echo", "Who", &emptypb.Empty{}, &resp)
	return resp.Value, err
}

// A panic on one task connection, in the goroutine reading containerd's
// requests or in the one writing the daemon's answers, closes that
// connection only: the keeper serves the next one.
func TestPanicOnTaskConnection(t *testing.T) {
	for _, tc := range []struct {
		name              string
		panicRead, panicW bool
		value             string
	}{
		{"reading requests", true, false, "injected read panic"},
		{"writing responses", false, true, "injected write panic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			front, back := filepath.Join(dir, "task.sock"), filepath.Join(dir, "backend.sock")
			var calls int32
			s, _ := serveBackend(t, back, "daemon", 0, &calls)
			defer s.Close()
			nl, err := net.Listen("unix", front)
			if err != nil {
				t.Fatal(err)
			}
			ctx, logs := logCtx(t)
			go Serve(ctx, &faultyListener{Listener: nl, panicRead: tc.panicRead, panicWrite: tc.panicW}, back, Options{MaxWait: 10 * time.Second})

			if _, err := echoCall(t, front); err == nil {
				t.Fatal("the faulty connection was answered")
			}
			expectPanicLogged(t, logs, tc.value)
			got, err := echoCall(t, front)
			if err != nil || got != "daemon" {
				t.Fatalf("after a panic on another connection: %q, %v", got, err)
			}
		})
	}
}

// Likewise for the Sandbox API relay.
func TestPanicOnStreamConnection(t *testing.T) {
	dir := t.TempDir()
	front, back := filepath.Join(dir, "api.sock"), filepath.Join(dir, "api-backend.sock")
	bl, err := net.Listen("unix", back)
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Close()
	go func() {
		for {
			b, err := bl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer b.Close()
				buf := make([]byte, 5)
				if _, err := io.ReadFull(b, buf); err == nil {
					b.Write(append([]byte("echo:"), buf...))
				}
			}()
		}
	}()
	nl, err := net.Listen("unix", front)
	if err != nil {
		t.Fatal(err)
	}
	ctx, logs := logCtx(t)
	go ServeStream(ctx, &faultyListener{Listener: nl, panicRead: true}, back, Options{MaxWait: 10 * time.Second})

	bad, err := net.Dial("unix", front)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bad.Write([]byte("hello"))
	expectPanicLogged(t, logs, "injected read panic")

	c, err := net.Dial("unix", front)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("again"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 10)
	n, _ := io.ReadFull(c, buf)
	if string(buf[:n]) != "echo:again" {
		t.Fatalf("after a panic on another connection: got %q", buf[:n])
	}
}
