package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// hostSide stands in for the successive host clients of a console port:
// one reader pumps the host end of the stream to whichever client is
// current, and a client that goes away just stops getting bytes (the
// stream itself stays, as a console port's does).
type hostSide struct {
	conn net.Conn
	mu   sync.Mutex
	cur  *io.PipeWriter
}

func newHostSide(conn net.Conn) *hostSide {
	h := &hostSide{conn: conn}
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := conn.Read(buf)
			h.mu.Lock()
			cur := h.cur
			h.mu.Unlock()
			if n > 0 && cur != nil {
				cur.Write(buf[:n])
			}
			if err != nil {
				if cur != nil {
					cur.CloseWithError(err)
				}
				return
			}
		}
	}()
	return h
}

// client is a new host client on the stream; earlier ones stop reading.
func (h *hostSide) client() net.Conn {
	pr, pw := io.Pipe()
	h.mu.Lock()
	if h.cur != nil {
		h.cur.CloseWithError(io.EOF)
	}
	h.cur = pw
	h.mu.Unlock()
	return &hostClient{r: pr, host: h}
}

type hostClient struct {
	r    *io.PipeReader
	host *hostSide
}

func (c *hostClient) Read(b []byte) (int, error)         { return c.r.Read(b) }
func (c *hostClient) Write(b []byte) (int, error)        { return c.host.conn.Write(b) }
func (c *hostClient) Close() error                       { return c.r.Close() }
func (c *hostClient) LocalAddr() net.Addr                { return c.host.conn.LocalAddr() }
func (c *hostClient) RemoteAddr() net.Addr               { return c.host.conn.RemoteAddr() }
func (c *hostClient) SetDeadline(t time.Time) error      { return nil }
func (c *hostClient) SetReadDeadline(t time.Time) error  { return nil }
func (c *hostClient) SetWriteDeadline(t time.Time) error { return nil }

// countingListener counts the connections Accept yields.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// frame is a ttrpc frame of type typ on stream with payload p; a request's
// p is carried in a ttrpc request message.
func frame(stream uint32, typ uint8, p []byte) []byte {
	if typ == ttrpcRequest {
		p, _ = proto.Marshal(&ttrpc.Request{Service: "test", Method: "Do", Payload: p})
	}
	b := make([]byte, ttrpcHeaderLen, ttrpcHeaderLen+len(p))
	binary.BigEndian.PutUint32(b[0:4], uint32(len(p)))
	binary.BigEndian.PutUint32(b[4:8], stream)
	b[8] = typ
	return append(b, p...)
}

// TestSessionTTRPCOverPTY: the agent serves ttrpc on a tty through
// SessionListener (as on /dev/hvcN); successive host clients, each
// numbering its streams from 1 again, are each served, also after one
// that died mid-frame and after line noise.
func TestSessionTTRPCOverPTY(t *testing.T) {
	master, slave := openPTY(t)
	port, err := OpenSerial(slave)
	if err != nil {
		t.Fatal(err)
	}
	l := &countingListener{Listener: newSessionListener(port, 200*time.Millisecond, false)}
	serveEcho(t, l)
	host := newHostSide(master)

	echoCalls(t, host.client())
	echoCalls(t, host.client())
	if n := l.n.Load(); n != 2 {
		t.Errorf("%d sessions after two clients, want 2", n)
	}

	// a client that died in the middle of a request frame
	partial := frame(1, ttrpcRequest, bytes.Repeat([]byte{0x0a}, 100))[:40]
	if _, err := master.Write(partial); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	echoCalls(t, host.client())

	// bytes no ttrpc peer sends
	if _, err := master.Write([]byte("\xff\xff\xff\xff garbage \x00\x00\x00\x01\x07")); err != nil {
		t.Fatal(err)
	}
	echoCalls(t, host.client())
	if n := l.n.Load(); n != 4 {
		t.Errorf("%d sessions after four clients, want 4", n)
	}
}

// TestSessionStaleWrites: once a new session started, what the previous
// session's server writes never reaches the stream, not even part of a
// frame; the current session's frames pass whole, also when written in
// pieces; the previous session reads EOF.
func TestSessionStaleWrites(t *testing.T) {
	host, guest := net.Pipe()
	defer host.Close()
	l := newSessionListener(guest, time.Second, false)
	defer l.Close()
	accept := func() net.Conn {
		t.Helper()
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	go host.Write(frame(1, ttrpcRequest, []byte("first")))
	s1 := accept()
	got := make([]byte, 64)
	n, err := io.ReadAtLeast(s1, got, ttrpcHeaderLen+5)
	if err != nil || !bytes.Equal(got[:n], frame(1, ttrpcRequest, []byte("first"))) {
		t.Fatalf("session 1 read %q %v", got[:n], err)
	}
	// a response written in two pieces reaches the host whole
	resp := frame(1, 2, []byte("answer"))
	go func() {
		s1.Write(resp[:4])
		s1.Write(resp[4:])
	}()
	buf := make([]byte, len(resp))
	if _, err := io.ReadFull(host, buf); err != nil || !bytes.Equal(buf, resp) {
		t.Fatalf("host read %q %v", buf, err)
	}
	// half a frame from session 1, then a new client
	if _, err := s1.Write(resp[:7]); err != nil {
		t.Fatal(err)
	}
	go host.Write(frame(1, ttrpcRequest, []byte("second")))
	s2 := accept()
	if _, err := io.ReadAtLeast(s2, got, ttrpcHeaderLen+6); err != nil {
		t.Fatal(err)
	}
	if n, err := s1.Read(got); err != io.EOF {
		t.Errorf("stale session read %d %v, want EOF", n, err)
	}
	if _, err := s1.Write(resp[7:]); !errors.Is(err, net.ErrClosed) {
		t.Errorf("stale session write: %v, want ErrClosed", err)
	}
	if _, err := s1.Write(resp); !errors.Is(err, net.ErrClosed) {
		t.Errorf("stale session write: %v, want ErrClosed", err)
	}
	go s2.Write(frame(1, 2, []byte("two")))
	want := frame(1, 2, []byte("two"))
	buf = make([]byte, len(want))
	if _, err := io.ReadFull(host, buf); err != nil || !bytes.Equal(buf, want) {
		t.Errorf("host read %q %v: want session 2's frame only", buf, err)
	}
	// the stream ends: Accept fails, the session reads EOF
	host.Close()
	if _, err := l.Accept(); err == nil {
		t.Error("Accept after the stream ended")
	}
	if _, err := s2.Read(got); err != io.EOF {
		t.Errorf("session read after the stream ended: %v", err)
	}
}

// TestSessionOneClient: a client's increasing stream ids and its data
// frames stay in one session.
func TestSessionOneClient(t *testing.T) {
	host, guest := net.Pipe()
	defer host.Close()
	l := newSessionListener(guest, time.Second, false)
	defer l.Close()
	go func() {
		for _, f := range [][]byte{frame(1, ttrpcRequest, nil), frame(3, ttrpcRequest, []byte("x")), frame(3, ttrpcData, []byte("d")), frame(5, ttrpcRequest, nil)} {
			host.Write(f)
		}
	}()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	total := 4*ttrpcHeaderLen + 2
	got := make([]byte, total)
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
			close(accepted)
		}
	}()
	select {
	case <-accepted:
		t.Error("a second session for one client")
	case <-time.After(100 * time.Millisecond):
	}
}

func TestFindSessionStart(t *testing.T) {
	start := frame(1, ttrpcRequest, []byte("p"))
	for _, c := range []struct {
		b    []byte
		want int
	}{
		{start, 0},
		{append([]byte("junk"), start...), 4},
		{frame(3, ttrpcRequest, nil), -1},
		{frame(1, 2, nil), -1},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0}, -1},
	} {
		if got := findSessionStart(c.b); got != c.want {
			t.Errorf("findSessionStart(%q) = %d, want %d", c.b, got, c.want)
		}
	}
}

// TestSessionEchoOverPipe is TestSessionTTRPCOverPTY's echo on a plain
// connection, for hosts without ptys.
func TestSessionEchoOverPipe(t *testing.T) {
	h, g := net.Pipe()
	defer h.Close()
	serveEcho(t, SessionListener(g, false))
	host := newHostSide(h)
	for range 3 {
		c := ttrpc.NewClient(host.client())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var resp wrapperspb.BytesValue
		if err := c.Call(ctx, echoService, "Echo", &wrapperspb.BytesValue{Value: []byte("hi")}, &resp); err != nil || string(resp.Value) != "hi" {
			t.Fatalf("echo: %q %v", resp.Value, err)
		}
		cancel()
		c.Close()
	}
}

// serialPort stands in for a virtserialport's character device in the
// guest: reads end (EOF) while no host is connected and when the host
// goes away; what the guest writes with no host there is lost.
type serialPort struct {
	mu   sync.Mutex
	host net.Conn // the guest's end of the connected host's pipe
}

// connect is a new host on the port, its end of the stream.
func (p *serialPort) connect() net.Conn {
	h, g := net.Pipe()
	p.mu.Lock()
	p.host = g
	p.mu.Unlock()
	return h
}

func (p *serialPort) cur() net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.host
}

func (p *serialPort) Read(b []byte) (int, error) {
	c := p.cur()
	if c == nil {
		return 0, io.EOF
	}
	n, err := c.Read(b)
	if err != nil {
		p.mu.Lock()
		if p.host == c {
			p.host = nil
		}
		p.mu.Unlock()
		return n, io.EOF
	}
	return n, nil
}

func (p *serialPort) Write(b []byte) (int, error) {
	if c := p.cur(); c != nil {
		_, _ = c.Write(b)
	}
	return len(b), nil
}

func (p *serialPort) Close() error                     { return nil }
func (p *serialPort) LocalAddr() net.Addr              { return fileAddr{network: "serial", name: "port"} }
func (p *serialPort) RemoteAddr() net.Addr             { return fileAddr{network: "serial", name: "port"} }
func (p *serialPort) SetDeadline(time.Time) error      { return os.ErrNoDeadline }
func (p *serialPort) SetReadDeadline(time.Time) error  { return os.ErrNoDeadline }
func (p *serialPort) SetWriteDeadline(time.Time) error { return os.ErrNoDeadline }

// TestSessionHangups: on a port that reads EOF when its host goes away
// (hangups), the EOF ends the session (its server reads EOF) even though
// the next host's first request does not restart the stream ids, while
// no host is there reading goes on, and successive ttrpc clients are each
// served on the one open port.
func TestSessionHangups(t *testing.T) {
	port := &serialPort{}
	l := SessionListener(port, true)
	defer l.Close()

	h1 := port.connect()
	go h1.Write(frame(1, ttrpcRequest, []byte("a")))
	s1, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := s1.Read(buf); err != nil || !bytes.Equal(buf[:n], frame(1, ttrpcRequest, []byte("a"))) {
		t.Fatalf("first session read %q, %v", buf[:n], err)
	}
	h1.Close()
	done := make(chan error, 1)
	go func() { _, err := s1.Read(buf); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("first session after its host hung up: %v, want EOF", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("first session still open after its host hung up")
	}
	// no host for a while: the listener keeps reading
	time.Sleep(300 * time.Millisecond)
	h2 := port.connect()
	defer h2.Close()
	go h2.Write(frame(3, ttrpcRequest, []byte("b")))
	s2, err := l.Accept()
	if err != nil {
		t.Fatalf("second host: %v", err)
	}
	if n, err := s2.Read(buf); err != nil || !bytes.Equal(buf[:n], frame(3, ttrpcRequest, []byte("b"))) {
		t.Fatalf("second session read %q, %v", buf[:n], err)
	}
}

// TestSessionHangupsTTRPC: ttrpc clients one after another on a hanging-up
// port, each reconnecting right after the previous one left.
func TestSessionHangupsTTRPC(t *testing.T) {
	port := &serialPort{}
	serveEcho(t, SessionListener(port, true))
	for i := range 3 {
		c := ttrpc.NewClient(port.connect())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var resp wrapperspb.BytesValue
		if err := c.Call(ctx, echoService, "Echo", &wrapperspb.BytesValue{Value: []byte("hi")}, &resp); err != nil || string(resp.Value) != "hi" {
			t.Fatalf("client %d: echo %q %v", i, resp.Value, err)
		}
		cancel()
		c.Close()
	}
}

// TestSessionMangledFirstRequest: a request mangled on its way (a console
// port's first bytes, read by a tty not yet raw: bytes dropped, its length
// now a lie) neither starts a session nor swallows the next client's
// request: that one is served, after at most a stall.
func TestSessionMangledFirstRequest(t *testing.T) {
	h, g := net.Pipe()
	defer h.Close()
	l := newSessionListener(g, 200*time.Millisecond, false)
	defer l.Close()
	good := frame(1, ttrpcRequest, []byte("second"))
	bad := frame(1, ttrpcRequest, bytes.Repeat([]byte("x"), 60))
	mangled := append(append([]byte{}, bad[:ttrpcHeaderLen]...), bad[ttrpcHeaderLen+20:]...)
	go func() {
		h.Write(mangled)
		time.Sleep(50 * time.Millisecond)
		h.Write(good)
	}()
	type res struct {
		b   []byte
		err error
	}
	got := make(chan res, 1)
	go func() {
		s, err := l.Accept()
		if err != nil {
			got <- res{err: err}
			return
		}
		buf := make([]byte, 256)
		n, err := s.Read(buf)
		got <- res{buf[:n], err}
	}()
	select {
	case r := <-got:
		if r.err != nil || !bytes.Equal(r.b, good) {
			t.Errorf("session read %q, %v; want the second client's request", r.b, r.err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the second client's request was not served")
	}
}
