package qemu

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// socketPair is a connected pair of unix stream sockets (buffered, unlike
// net.Pipe: a server may write what the client does not read).
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		if conns[i], err = net.FileConn(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	return conns[0], conns[1]
}

// pipeQMP connects a client to serve.
func pipeQMP(t *testing.T, serve func(net.Conn)) (*QMP, error) {
	t.Helper()
	cli, srv := socketPair(t)
	go serve(srv)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := NewQMP(ctx, cli)
	if err != nil {
		cli.Close()
		return nil, err
	}
	t.Cleanup(func() { q.Close() })
	return q, nil
}

func TestQMPClient(t *testing.T) {
	quit := make(chan bool, 1)
	q, err := pipeQMP(t, func(c net.Conn) { quit <- serveQMP(c) })
	if err != nil {
		t.Fatal(err)
	}
	if g := q.Greeting(); g.Version.QEMU.Major != 7 || g.Version.QEMU.Minor != 2 || g.Version.Package != "fake" {
		t.Errorf("greeting %+v", g)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := q.QueryStatus(ctx)
	if err != nil || st.Status != "running" || !st.Running {
		t.Fatalf("query-status: %+v %v", st, err)
	}
	// the event before each answer was kept, the stale answer skipped
	ev := q.Events()
	if len(ev) != 2 || ev[0].Event != "FAKE_TICK" || string(ev[1].Data) != `{"cmd":"query-status"}` || ev[1].Timestamp.Microseconds != 2 {
		t.Errorf("events %+v", ev)
	}
	if len(q.Events()) != 0 {
		t.Error("Events does not forget")
	}
	var qe *Error
	if err := q.Execute(ctx, "fail", nil, nil); !errors.As(err, &qe) || qe.Class != "GenericError" || !errdefs.IsUnknown(err) {
		t.Errorf("fail: %v", err)
	}
	if err := q.Execute(ctx, "device_add", map[string]string{"driver": "x"}, nil); !errdefs.IsNotImplemented(err) {
		t.Errorf("unknown command: %v", err)
	}
	if err := q.Quit(ctx); err != nil {
		t.Fatalf("quit: %v", err)
	}
	if !<-quit {
		t.Error("server saw no quit")
	}
	// the server closed the connection after quit
	if _, err := q.QueryStatus(ctx); !errors.Is(err, ErrQMPClosed) || !errdefs.IsUnavailable(err) {
		t.Errorf("after quit: %v", err)
	}
}

// TestQMPQuitClosed: a QEMU that closes before answering quit has quit.
func TestQMPQuitClosed(t *testing.T) {
	q, err := pipeQMP(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.Write([]byte(`{"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": ""}, "capabilities": []}}` + "\r\n"))
		c.Read(buf)
		c.Write([]byte(`{"return": {}, "id": 1}` + "\r\n"))
		c.Read(buf)
		c.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Quit(context.Background()); err != nil {
		t.Errorf("quit on a closing connection: %v", err)
	}
}

// TestQMPContext: a silent QEMU costs the context's time, no more, and
// leaves the connection closed.
func TestQMPContext(t *testing.T) {
	// no greeting at all
	cli, srv := socketPair(t)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := NewQMP(ctx, cli); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("no greeting: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s", d)
	}

	// greets, then never answers: cancellation (no deadline) ends the wait
	q, err := pipeQMP(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.Write([]byte(`{"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": ""}, "capabilities": []}}` + "\n"))
		c.Read(buf)
		c.Write([]byte(`{"return": {}, "id": 1}` + "\n"))
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, ccancel)
	if _, err := q.QueryStatus(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
	if _, err := q.QueryStatus(context.Background()); !errors.Is(err, context.Canceled) {
		t.Errorf("a broken connection must stay broken: %v", err)
	}
}

func TestQMPDial(t *testing.T) {
	dir := shortTempDir(t)
	l, err := net.Listen("unix", dir+"/qmp.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			serveQMP(c)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := DialQMP(ctx, dir+"/qmp.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.QueryStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := DialQMP(ctx, dir+"/none.sock"); err == nil {
		t.Error("dialed a missing socket")
	}
}
