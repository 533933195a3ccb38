package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/qmp/qmptest"
)

// qemuOpts and stratoOpts are the drivers' variants.
var (
	qemuOpts   = Options{Capabilities: true, IDs: true}
	stratoOpts = Options{}
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

// pipe connects a client with o to serve.
func pipe(t *testing.T, o Options, serve func(net.Conn)) (*Client, error) {
	t.Helper()
	cli, srv := socketPair(t)
	go serve(srv)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := New(ctx, cli, o)
	if err != nil {
		cli.Close()
		return nil, err
	}
	t.Cleanup(func() { q.Close() })
	return q, nil
}

func TestClientDialects(t *testing.T) {
	for _, c := range []struct {
		name    string
		opts    Options
		dialect qmptest.Dialect
		app     string
		major   int
		unknown func(error) bool
	}{
		{"qemu", qemuOpts, qmptest.QEMU, "qemu", 7, errdefs.IsNotImplemented},
		{"stratovirt", stratoOpts, qmptest.StratoVirt, "StratoVirt", 0, errdefs.IsUnknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			quit := make(chan bool, 1)
			q, err := pipe(t, c.opts, func(conn net.Conn) { quit <- qmptest.Serve(conn, c.dialect) })
			if err != nil {
				t.Fatal(err)
			}
			if g := q.Greeting(); g.Version.Application != c.app || g.Version.Major != c.major {
				t.Errorf("greeting %+v", g)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			st, err := q.QueryStatus(ctx)
			if err != nil || st.Status != "running" || !st.Running {
				t.Fatalf("query-status: %+v %v", st, err)
			}
			// the event before the answer was kept (and with ids the stale answer skipped)
			ev := q.Events()
			if len(ev) == 0 || ev[len(ev)-1].Event != "FAKE_TICK" || string(ev[len(ev)-1].Data) != `{"cmd":"query-status"}` || ev[len(ev)-1].Timestamp.Microseconds != 2 {
				t.Errorf("events %+v", ev)
			}
			if len(q.Events()) != 0 {
				t.Error("Events does not forget")
			}
			var qe *Error
			if err := q.Execute(ctx, "fail", nil, nil); !errors.As(err, &qe) || qe.Class != "GenericError" || !errdefs.IsUnknown(err) {
				t.Errorf("fail: %v", err)
			}
			if err := q.Execute(ctx, "device_add", map[string]string{"driver": "x"}, nil); !c.unknown(err) {
				t.Errorf("unknown command: %v", err)
			}
			if err := q.Quit(ctx); err != nil {
				t.Fatalf("quit: %v", err)
			}
			if !<-quit {
				t.Error("server saw no quit")
			}
			// the server closed the connection after quit
			if _, err := q.QueryStatus(ctx); !errors.Is(err, ErrClosed) || !errdefs.IsUnavailable(err) {
				t.Errorf("after quit: %v", err)
			}
		})
	}
}

// TestNoIDsSent: without Options.IDs a command carries no id (StratoVirt
// takes only a string id, and qmp.md shows none), and its answer is the
// first message that is not an event.
func TestNoIDsSent(t *testing.T) {
	got := make(chan map[string]json.RawMessage, 1)
	q, err := pipe(t, stratoOpts, func(c net.Conn) {
		defer c.Close()
		c.Write([]byte(`{ "QMP": { "version": { "StratoVirt": { "micro":1, "minor":0, "major":0 }, "package":"" }, "capabilities":[] } }` + "\n"))
		var req map[string]json.RawMessage
		json.NewDecoder(c).Decode(&req)
		got <- req
		c.Write([]byte(`{"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}}` + "\n"))
		c.Write([]byte(`{"return": { "running": false,"singlestep": false,"status": "paused"}}` + "\n"))
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := q.QueryStatus(context.Background())
	if err != nil || st.Status != "paused" || st.Running {
		t.Fatalf("status %+v %v", st, err)
	}
	req := <-got
	if _, ok := req["id"]; ok || string(req["execute"]) != `"query-status"` || len(req) != 1 {
		t.Errorf("request %v", req)
	}
	if ev := q.Events(); len(ev) != 1 || ev[0].Event != "STOP" {
		t.Errorf("events %+v", ev)
	}
}

// TestQuitClosed: a VMM that closes before answering quit has quit.
func TestQuitClosed(t *testing.T) {
	q, err := pipe(t, qemuOpts, func(c net.Conn) {
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

// TestContext: a silent VMM costs the context's time, no more, and leaves
// the connection closed.
func TestContext(t *testing.T) {
	// no greeting at all
	cli, srv := socketPair(t)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := New(ctx, cli, qemuOpts); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("no greeting: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s", d)
	}

	// greets, then never answers: cancellation (no deadline) ends the wait
	q, err := pipe(t, stratoOpts, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.Write([]byte(`{"QMP": {"version": {"StratoVirt": {"major": 0, "minor": 1, "micro": 0}, "package": ""}, "capabilities": []}}` + "\n"))
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

func TestBadGreeting(t *testing.T) {
	_, err := pipe(t, stratoOpts, func(c net.Conn) {
		c.Write([]byte(`{"QMP": {"version": {"StratoVirt": "zero"}, "capabilities": []}}` + "\n"))
	})
	if err == nil {
		t.Error("a greeting with a bad version accepted")
	}
}

func TestDial(t *testing.T) {
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := net.Listen("unix", dir+"/qmp.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			qmptest.Serve(c, qmptest.QEMU)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := Dial(ctx, dir+"/qmp.sock", qemuOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.QueryStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(ctx, dir+"/none.sock", qemuOpts); err == nil {
		t.Error("dialed a missing socket")
	}
}
