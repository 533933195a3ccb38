package keeper

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/fdstore"
)

// ttrpc frame header: length uint32, stream id uint32, type uint8, flags uint8.
const (
	headerLen       = 10
	typeRequest     = 1
	typeResponse    = 2
	maxFrame        = 16 << 20
	frameChunk      = 64 << 10 // a larger frame is allocated as it arrives
	defaultMaxWait  = 5 * time.Minute
	reconnectPeriod = 50 * time.Millisecond
)

// Options tune the keeper.
type Options struct {
	// MaxWait bounds how long connections are held while the backend is away.
	MaxWait time.Duration
}

// Serve bridges every connection accepted on l to the unix socket backend
// until ctx ends.
func Serve(ctx context.Context, l net.Listener, backend string, o Options) error {
	closeOnDone(ctx, l)
	return serveFrames(ctx, l, backend, o, &activity{})
}

// ServeStream relays every connection accepted on l to the unix socket
// backend, byte for byte, dialing the backend until it answers (up to
// MaxWait). It is for the Sandbox API (gRPC): when the backend goes away the
// client's connection is closed and, on its reconnect, held until the backend
// is back, so the client's channel waits in "connecting" instead of failing
// with "connection refused".
func ServeStream(ctx context.Context, l net.Listener, backend string, o Options) error {
	closeOnDone(ctx, l)
	return serveStream(ctx, l, backend, o, &activity{})
}

// ServeFDs serves the descriptor store st (see shared/fdstore) on l until
// ctx ends. Its connections are the daemon's, not containerd's: they do not
// count for the keeper's idle and replacement rules (see Run).
func ServeFDs(ctx context.Context, l net.Listener, st *fdstore.Store) error {
	closeOnDone(ctx, l)
	return serveFDs(ctx, l, st)
}

func serveFDs(ctx context.Context, l net.Listener, st *fdstore.Store) error {
	return acceptLoop(ctx, l, &activity{}, "fd store", func(c net.Conn) {
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			return
		}
		st.ServeConn(ctx, uc)
	})
}

func serveFrames(ctx context.Context, l net.Listener, backend string, o Options, act *activity) error {
	if o.MaxWait <= 0 {
		o.MaxWait = defaultMaxWait
	}
	return acceptLoop(ctx, l, act, "task", func(c net.Conn) {
		b := &bridge{front: c, backend: backend, opts: o, pending: map[uint32][]byte{}, ctx: ctx}
		b.run()
	})
}

func serveStream(ctx context.Context, l net.Listener, backend string, o Options, act *activity) error {
	if o.MaxWait <= 0 {
		o.MaxWait = defaultMaxWait
	}
	return acceptLoop(ctx, l, act, "sandbox API", func(c net.Conn) { relay(ctx, c, backend, o.MaxWait) })
}

// closeOnDone closes l when ctx ends.
func closeOnDone(ctx context.Context, l net.Listener) {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
}

// activity counts the connections a keeper holds and remembers when one
// last opened or closed, so that Run can tell an idle keeper.
type activity struct {
	open atomic.Int64
	last atomic.Int64 // unix nanoseconds
}

func (a *activity) begin() {
	a.last.Store(time.Now().UnixNano())
	a.open.Add(1)
}

func (a *activity) end() {
	a.last.Store(time.Now().UnixNano())
	a.open.Add(-1)
}

// acceptLoop hands every connection accepted on l to handle, in its own
// goroutine, until l is closed.
func acceptLoop(ctx context.Context, l net.Listener, act *activity, kind string, handle func(net.Conn)) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		act.begin()
		go func() {
			defer act.end()
			defer recoverConn(ctx, kind, func() { c.Close() })
			handle(c)
		}()
	}
}

// recoverConn is deferred by every goroutine that serves a connection, to
// run first. A panic there (a bug, a frame nobody thought of) would end the
// keeper and with it every containerd task connection of the node; instead it
// is logged with its stack and cleanup ends that one connection.
func recoverConn(ctx context.Context, kind string, cleanup func()) {
	r := recover()
	if r == nil {
		return
	}
	log.G(ctx).WithField("connection", kind).Errorf("keeper: panic serving a connection, closing it: %v\n%s", r, debug.Stack())
	if cleanup != nil {
		cleanup()
	}
}

// bridge relays one containerd task connection (front) to the daemon
// (back), frame by frame. Every critical section of mu unlocks in a defer,
// so that a panic inside one cannot leave mu held for the recovery's close.
type bridge struct {
	ctx     context.Context
	front   net.Conn
	backend string
	opts    Options

	mu      sync.Mutex
	back    net.Conn
	gen     int // backend connection generation
	pending map[uint32][]byte
	closed  bool
}

func readFrame(r io.Reader) ([]byte, error) {
	hdr := make([]byte, headerLen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[0:4])
	if n > maxFrame {
		return nil, fmt.Errorf("ttrpc frame of %d bytes is too large", n)
	}
	if n <= frameChunk {
		frame := make([]byte, headerLen+int(n))
		copy(frame, hdr)
		if _, err := io.ReadFull(r, frame[headerLen:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // a header, then nothing: cut, not ended
			}
			return nil, err
		}
		return frame, nil
	}
	// a large frame grows as its bytes arrive: a header that declares
	// 16 MiB and sends nothing costs a chunk, not 16 MiB per connection
	buf := bytes.NewBuffer(make([]byte, 0, headerLen+frameChunk))
	buf.Write(hdr)
	if _, err := io.CopyN(buf, r, int64(n)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf.Bytes(), nil
}

func streamOf(f []byte) uint32 { return binary.BigEndian.Uint32(f[4:8]) }
func typeOf(f []byte) byte     { return f[8] }

// spawn runs f in a goroutine of this connection: a panic there closes the
// connection only.
func (b *bridge) spawn(f func()) {
	go func() {
		defer recoverConn(b.ctx, "task", b.close)
		f()
	}()
}

func (b *bridge) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	b.front.Close()
	if b.back != nil {
		b.back.Close()
	}
}

func (b *bridge) run() {
	defer b.close()
	if err := b.connect(); err != nil {
		log.G(b.ctx).WithError(err).Warn("keeper: backend unavailable, closing task connection")
		return
	}
	for {
		f, err := readFrame(b.front)
		if err != nil {
			return // containerd closed the connection
		}
		back, gen := b.track(f)
		if back == nil {
			continue // replayed once the backend is back
		}
		if _, err := back.Write(f); err != nil {
			b.spawn(func() { b.reconnect(gen) })
		}
	}
}

// track keeps a request until its response and returns the backend
// connection to write it to, if there is one.
func (b *bridge) track(f []byte) (net.Conn, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if typeOf(f) == typeRequest {
		b.pending[streamOf(f)] = f
	}
	return b.back, b.gen
}

// settle forgets the request a response answers.
func (b *bridge) settle(f []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if typeOf(f) == typeResponse {
		delete(b.pending, streamOf(f))
	}
}

// connect dials the backend, replays what is pending and starts the reader.
// Only the caller that cleared b.back calls it, so it never races itself.
func (b *bridge) connect() error {
	deadline := time.Now().Add(b.opts.MaxWait)
	for {
		var d net.Dialer
		ctx, cancel := context.WithTimeout(b.ctx, time.Second)
		conn, err := d.DialContext(ctx, "unix", b.backend)
		cancel()
		if err == nil {
			gen, replayed, werr, ok := b.attach(conn)
			if !ok {
				return nil
			}
			if replayed > 0 {
				log.G(b.ctx).WithField("replayed", replayed).Info("keeper: backend is back, pending requests replayed")
			}
			b.spawn(func() { b.readBack(conn, gen) })
			if werr != nil {
				b.spawn(func() { b.reconnect(gen) })
			}
			return nil
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			return fmt.Errorf("backend %s: %w", b.backend, err)
		}
		time.Sleep(reconnectPeriod)
	}
}

// attach makes conn the backend connection and replays the pending requests
// on it, in stream order. ok is false when the bridge is closed already.
func (b *bridge) attach(conn net.Conn) (gen, replayed int, werr error, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		conn.Close()
		return 0, 0, nil, false
	}
	b.back = conn
	b.gen++
	ids := make([]uint32, 0, len(b.pending))
	for id := range b.pending {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		if _, werr = conn.Write(b.pending[id]); werr != nil {
			break
		}
	}
	return b.gen, len(ids), werr, true
}

// reconnect replaces a failed backend connection of generation gen.
func (b *bridge) reconnect(gen int) {
	if !b.detach(gen) {
		return
	}
	if err := b.connect(); err != nil {
		log.G(b.ctx).WithError(err).Warn("keeper: backend did not come back, closing task connection")
		b.close()
	}
}

// detach drops the backend connection of generation gen; false if it is
// not the current one (another goroutine handles it) or the bridge is closed.
func (b *bridge) detach(gen int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.gen != gen || b.back == nil {
		return false
	}
	b.back.Close()
	b.back = nil
	return true
}

func (b *bridge) readBack(conn net.Conn, gen int) {
	for {
		f, err := readFrame(conn)
		if err != nil {
			b.reconnect(gen)
			return
		}
		b.settle(f)
		if _, err := b.front.Write(f); err != nil {
			b.close()
			return
		}
	}
}

func relay(ctx context.Context, front net.Conn, backend string, maxWait time.Duration) {
	defer front.Close()
	deadline := time.Now().Add(maxWait)
	var back net.Conn
	for {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "unix", backend)
		cancel()
		if err == nil {
			back = c
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return
		}
		time.Sleep(reconnectPeriod)
	}
	defer back.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		defer recoverConn(ctx, "sandbox API", nil) // relay closes both ends
		_, _ = io.Copy(dst, src)
	}
	go pipe(back, front)
	go pipe(front, back)
	<-done // either side ended: end both
}
