package agentclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/transport"
)

// fakeAgent is a Sandbox service that only answers Health (and Setup with
// setupErr).
type fakeAgent struct {
	major    uint32
	calls    atomic.Int32
	setupErr error
}

func (f *fakeAgent) Health(context.Context, *agentapi.HealthRequest) (*agentapi.HealthResponse, error) {
	f.calls.Add(1)
	m := f.major
	if m == 0 {
		m = agentapi.Major
	}
	return &agentapi.HealthResponse{Version: agentapi.Version, Major: m, Minor: agentapi.Minor, AgentVersion: "fake"}, nil
}
func (f *fakeAgent) Setup(context.Context, *agentapi.SetupRequest) (*emptypb.Empty, error) {
	if f.setupErr != nil {
		return nil, f.setupErr
	}
	return &emptypb.Empty{}, nil
}
func (f *fakeAgent) SyncClock(context.Context, *agentapi.SyncClockRequest) (*agentapi.SyncClockResponse, error) {
	return nil, errors.New("fake: not implemented")
}
func (f *fakeAgent) GetEvents(context.Context, *agentapi.GetEventsRequest) (*agentapi.GetEventsResponse, error) {
	return &agentapi.GetEventsResponse{}, nil
}
func (f *fakeAgent) DebugExec(context.Context, *agentapi.DebugExecRequest) (*agentapi.DebugExecResponse, error) {
	return nil, errors.New("fake: not implemented")
}
func (f *fakeAgent) Shutdown(context.Context, *agentapi.ShutdownRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func newFakeServer(t *testing.T, f *fakeAgent) *ttrpc.Server {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agentapi.RegisterSandboxService(srv, f)
	t.Cleanup(func() { srv.Close() })
	return srv
}

// serveConn serves one connection (a net.Pipe end, an accepted socket).
func serveConn(t *testing.T, srv *ttrpc.Server, c net.Conn) {
	l := &oneConnListener{c: make(chan net.Conn, 1), done: make(chan struct{})}
	l.c <- c
	go func() { _ = srv.Serve(context.Background(), l) }()
	t.Cleanup(func() { l.Close() })
}

type oneConnListener struct {
	c    chan net.Conn
	done chan struct{}
	once atomic.Bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *oneConnListener) Close() error {
	if l.once.CompareAndSwap(false, true) {
		close(l.done)
	}
	return nil
}
func (l *oneConnListener) Addr() net.Addr { return &net.UnixAddr{Name: "fake", Net: "unix"} }

func sockPath(t *testing.T, name string) string {
	d, err := os.MkdirTemp("", "agentclient")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, name)
}

// fakeChardev is QEMU's virtio-serial chardev socket: it accepts and then
// the bytes go to the agent (here: straight to a ttrpc server).
func fakeChardev(t *testing.T, path string, f *fakeAgent) net.Listener {
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	srv := newFakeServer(t, f)
	go func() { _ = srv.Serve(context.Background(), l) }()
	return l
}

func TestDialSerialFake(t *testing.T) {
	p := sockPath(t, "agent.sock")
	f := &fakeAgent{}
	fakeChardev(t, p, f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, Target{Serial: p}, Options{Alive: func() error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Health().GetAgentVersion() != "fake" {
		t.Fatalf("health = %v", c.Health())
	}
	if _, err := c.Sandbox().Setup(ctx, &agentapi.SetupRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestDialSerialRetriesUntilTheSocketAppears(t *testing.T) {
	p := sockPath(t, "agent.sock")
	f := &fakeAgent{}
	go func() {
		time.Sleep(150 * time.Millisecond)
		fakeChardev(t, p, f)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, Target{Serial: p}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// fakeHybridVsock is Cloud Hypervisor's vsock muxer socket: the first
// refuse connections are dropped after CONNECT (the guest is not listening
// yet), later ones get "OK <port>" and reach the agent.
func fakeHybridVsock(t *testing.T, path string, refuse int32, f *fakeAgent) *atomic.Int32 {
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	srv := newFakeServer(t, f)
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			k := n.Add(1)
			line, err := bufio.NewReader(c).ReadString('\n') // one line; the client writes nothing more before OK
			if err != nil || line != "CONNECT 1024\n" {
				t.Errorf("fake hvsock: got %q, %v", line, err)
				c.Close()
				continue
			}
			if k <= refuse {
				c.Close()
				continue
			}
			if _, err := c.Write([]byte("OK 1073741824\n")); err != nil {
				c.Close()
				continue
			}
			serveConn(t, srv, c)
		}
	}()
	return &n
}

func TestDialHybridVsockFake(t *testing.T) {
	p := sockPath(t, "vsock.sock")
	f := &fakeAgent{}
	n := fakeHybridVsock(t, p, 2, f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, Target{HybridVsock: p}, Options{Alive: func() error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := n.Load(); got != 3 {
		t.Fatalf("%d connections, want 3 (two refused)", got)
	}
	if f.calls.Load() != 1 {
		t.Fatalf("Health calls = %d", f.calls.Load())
	}
}

func TestDialVsockFakeDialer(t *testing.T) {
	f := &fakeAgent{}
	srv := newFakeServer(t, f)
	var tries atomic.Int32
	fake := func(ctx context.Context, cid, port uint32) (net.Conn, error) {
		if cid != 7 || port != 2048 {
			t.Errorf("dialled %d:%d", cid, port)
		}
		if tries.Add(1) < 3 {
			return nil, syscall.ECONNRESET // agent not listening yet
		}
		a, b := net.Pipe()
		serveConn(t, srv, b)
		return a, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, Target{VsockCID: 7, Port: 2048}, Options{dialVsock: fake})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if tries.Load() != 3 {
		t.Fatalf("tries = %d", tries.Load())
	}
}

func TestDialRealVsockWithoutGuestNamesTheTarget(t *testing.T) {
	fd, err := syscall.Socket(40 /* AF_VSOCK */, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Skipf("no AF_VSOCK on this host (%v): the vsock path is covered by the fake dialer", err)
	}
	syscall.Close(fd)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err = Dial(ctx, Target{VsockCID: 4242}, Options{})
	if err == nil {
		t.Fatal("dialled a CID nobody has")
	}
	if !strings.Contains(err.Error(), "vsock:4242:1024") {
		t.Fatalf("error does not name the target: %v", err)
	}
	t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

func TestDialFailsFastWhenTheVMMDies(t *testing.T) {
	p := sockPath(t, "agent.sock") // never created
	var checks atomic.Int32
	alive := func() error {
		if checks.Add(1) > 3 {
			return errors.New("qemu exited with status 1")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, Target{Serial: p}, Options{Alive: alive})
	if !errors.Is(err, ErrVMMExited) {
		t.Fatalf("err = %v, want ErrVMMExited", err)
	}
	if !errors.Is(err, syscall.ENOENT) || !strings.Contains(err.Error(), "qemu exited") || !strings.Contains(err.Error(), p) {
		t.Fatalf("err %q lacks the last dial error, the reason or the target", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s: not fast", d)
	}
}

func TestDialFailsFastWhenTheVMMDiesDuringAnAttempt(t *testing.T) {
	// a chardev that accepts but whose guest never answers
	p := sockPath(t, "agent.sock")
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	dead := time.Now().Add(200 * time.Millisecond)
	alive := func() error {
		if time.Now().After(dead) {
			return errors.New("qemu killed by SIGKILL")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err = Dial(ctx, Target{Serial: p}, Options{Alive: alive})
	if !errors.Is(err, ErrVMMExited) || !strings.Contains(err.Error(), "SIGKILL") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s: not fast", d)
	}
}

func TestDialDeadlineNamesTheTarget(t *testing.T) {
	p := sockPath(t, "vsock.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, Target{HybridVsock: p, Port: 1024}, Options{Alive: func() error { return nil }})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline", err)
	}
	if !strings.Contains(err.Error(), "hvsock:"+p+":1024") || !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("err %q must name the target and the last error", err)
	}
}

func TestDialRefusesAnotherMajor(t *testing.T) {
	p := sockPath(t, "agent.sock")
	f := &fakeAgent{major: agentapi.Major + 1}
	fakeChardev(t, p, f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, Target{Serial: p}, Options{})
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("err = %v, want FailedPrecondition", err)
	}
	if f.calls.Load() != 1 {
		t.Fatalf("retried a version mismatch: %d Health calls", f.calls.Load())
	}
}

func TestTargetValidate(t *testing.T) {
	for _, bad := range []Target{{}, {Serial: "rel/path"}, {Serial: "/a", HybridVsock: "/b"}, {VsockCID: 2}, {HybridVsock: "/a/../b"}} {
		if err := bad.Validate(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	ctx := context.Background()
	if _, err := Dial(ctx, Target{}, Options{}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Dial of an empty target: %v", err)
	}
}

// TestCallErrorsAreErrdefs: the client's interceptor turns every unary
// call's error into an errdefs error.
func TestCallErrorsAreErrdefs(t *testing.T) {
	p := sockPath(t, "agent.sock")
	f := &fakeAgent{setupErr: errgrpc.ToGRPC(fmt.Errorf("interface eth9: %w", errdefs.ErrNotFound))}
	fakeChardev(t, p, f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, Target{Serial: p}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	_, err = c.Sandbox().Setup(ctx, &agentapi.SetupRequest{})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "interface eth9") {
		t.Errorf("Setup = %v, want NotFound with the agent's message", err)
	}
	if _, ok := status.FromError(err); ok {
		t.Errorf("Setup = %#v: a status leaked past the client", err)
	}
	// TTRPC()'s unary calls go through the same interceptor
	err = c.TTRPC().Call(ctx, "magnetar.agent.v1.Nothing", "Here", &emptypb.Empty{}, &emptypb.Empty{})
	if !errdefs.IsNotImplemented(err) {
		t.Errorf("call of an unknown service = %v, want NotImplemented", err)
	}
	// a call whose own context ended says so (ttrpc's dispatch returns
	// ctx.Err(); a real call may race the answer, so the invoker does)
	local := func(context.Context, *ttrpc.Request, *ttrpc.Response) error { return context.Canceled }
	if err := transport.ClientErrors(ctx, &ttrpc.Request{}, &ttrpc.Response{}, nil, local); err != context.Canceled {
		t.Errorf("a call whose context ended = %v, want context.Canceled as it is", err)
	}
	// a closed connection is Unavailable
	c.Close()
	if _, err := c.Task().State(ctx, &taskapi.StateRequest{ID: "c1"}); !errdefs.IsUnavailable(err) {
		t.Errorf("State on a closed client = %v, want Unavailable", err)
	}
}

// TestAttemptTimeoutByTransport: a connection to the vsock transports proves
// the agent listens (2 s per attempt); a serial chardev accepts before the
// guest booted (SerialAttemptTimeout).
func TestAttemptTimeoutByTransport(t *testing.T) {
	for _, tc := range []struct {
		t    Target
		o    Options
		want time.Duration
	}{
		{Target{Serial: "/run/agent.sock"}, Options{}, SerialAttemptTimeout},
		{Target{HybridVsock: "/run/vsock.sock"}, Options{}, 2 * time.Second},
		{Target{VsockCID: 3}, Options{}, 2 * time.Second},
		{Target{Serial: "/run/agent.sock"}, Options{AttemptTimeout: time.Second}, time.Second},
		{Target{VsockCID: 3}, Options{AttemptTimeout: 5 * time.Second}, 5 * time.Second},
	} {
		d := tc.o.dialOptions(tc.t)
		if d.AttemptTimeout != tc.want {
			t.Errorf("%s %+v: attempt timeout %s, want %s", tc.t, tc.o, d.AttemptTimeout, tc.want)
		}
		if d.BackoffMin != 10*time.Millisecond || d.BackoffMax != 200*time.Millisecond {
			t.Errorf("%s: backoff %s..%s, want 10ms..200ms", tc.t, d.BackoffMin, d.BackoffMax)
		}
	}
}

// TestDialHybridVsockSilentAgent: a hybrid vsock connection whose agent
// never answers Health is retried after the attempt timeout, and a dying
// VMM still ends Dial at once.
func TestDialHybridVsockSilentAgent(t *testing.T) {
	p := sockPath(t, "vsock.sock")
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
				c.Write([]byte("OK 1073741824\n"))
				io.Copy(io.Discard, r) // the agent never answers
			}()
		}
	}()
	dead := time.Now().Add(500 * time.Millisecond)
	alive := func() error {
		if time.Now().After(dead) {
			return errors.New("cloud-hypervisor exited")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err = Dial(ctx, Target{HybridVsock: p}, Options{Alive: alive, AttemptTimeout: 100 * time.Millisecond})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s", d)
	}
	if !errors.Is(err, ErrVMMExited) || !errdefs.IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "cloud-hypervisor exited") || !strings.Contains(err.Error(), "hvsock:"+p+":1024") {
		t.Fatalf("err = %v, want ErrVMMExited naming the target after Unavailable attempts", err)
	}
	if n := conns.Load(); n < 3 {
		t.Errorf("%d connections, want the silent attempts retried", n)
	}
}

// TestDialSerialLostRequest: a chardev whose first connection swallows the
// Health request (the agent discarded it while reopening its port after the
// previous host hung up) is dialled again once the attempt times out.
func TestDialSerialLostRequest(t *testing.T) {
	p := sockPath(t, "agent.sock")
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	srv := newFakeServer(t, &fakeAgent{})
	var conns atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if conns.Add(1) == 1 {
				// read and drop: never answered
				go func() { _, _ = io.Copy(io.Discard, c) }()
				continue
			}
			serveConn(t, srv, c)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	c, err := Dial(ctx, Target{Serial: p}, Options{AttemptTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("dial took %s", d)
	}
}
