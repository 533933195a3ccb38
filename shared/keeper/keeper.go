package keeper

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/containerd/log"
)

// ttrpc frame header: length uint32, stream id uint32, type uint8, flags uint8.
const (
	headerLen       = 10
	typeRequest     = 1
	typeResponse    = 2
	maxFrame        = 16 << 20
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
	if o.MaxWait <= 0 {
		o.MaxWait = defaultMaxWait
	}
	return acceptLoop(ctx, l, func(c net.Conn) {
		b := &bridge{front: c, backend: backend, opts: o, pending: map[uint32][]byte{}, ctx: ctx}
		b.run()
	})
}

// acceptLoop hands every connection accepted on l to handle, in its own
// goroutine, until ctx ends.
func acceptLoop(ctx context.Context, l net.Listener, handle func(net.Conn)) error {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go handle(c)
	}
}

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
	frame := make([]byte, headerLen+int(n))
	copy(frame, hdr)
	if _, err := io.ReadFull(r, frame[headerLen:]); err != nil {
		return nil, err
	}
	return frame, nil
}

func streamOf(f []byte) uint32 { return binary.BigEndian.Uint32(f[4:8]) }
func typeOf(f []byte) byte     { return f[8] }

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
		b.mu.Lock()
		if typeOf(f) == typeRequest {
			b.pending[streamOf(f)] = f
		}
		back, gen := b.back, b.gen
		b.mu.Unlock()
		if back == nil {
			continue // replayed once the backend is back
		}
		if _, err := back.Write(f); err != nil {
			go b.reconnect(gen)
		}
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
			b.mu.Lock()
			if b.closed {
				b.mu.Unlock()
				conn.Close()
				return nil
			}
			b.back = conn
			b.gen++
			gen := b.gen
			ids := make([]uint32, 0, len(b.pending))
			for id := range b.pending {
				ids = append(ids, id)
			}
			sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
			var werr error
			for _, id := range ids {
				if _, werr = conn.Write(b.pending[id]); werr != nil {
					break
				}
			}
			b.mu.Unlock()
			if len(ids) > 0 {
				log.G(b.ctx).WithField("replayed", len(ids)).Info("keeper: backend is back, pending requests replayed")
			}
			go b.readBack(conn, gen)
			if werr != nil {
				go b.reconnect(gen)
			}
			return nil
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			return fmt.Errorf("backend %s: %w", b.backend, err)
		}
		time.Sleep(reconnectPeriod)
	}
}

// reconnect replaces a failed backend connection of generation gen.
func (b *bridge) reconnect(gen int) {
	b.mu.Lock()
	if b.closed || b.gen != gen || b.back == nil {
		b.mu.Unlock()
		return
	}
	b.back.Close()
	b.back = nil
	b.mu.Unlock()
	if err := b.connect(); err != nil {
		log.G(b.ctx).WithError(err).Warn("keeper: backend did not come back, closing task connection")
		b.close()
	}
}

func (b *bridge) readBack(conn net.Conn, gen int) {
	for {
		f, err := readFrame(conn)
		if err != nil {
			b.reconnect(gen)
			return
		}
		b.mu.Lock()
		if typeOf(f) == typeResponse {
			delete(b.pending, streamOf(f))
		}
		b.mu.Unlock()
		if _, err := b.front.Write(f); err != nil {
			b.close()
			return
		}
	}
}

// ServeStream relays every connection accepted on l to the unix socket
// backend, byte for byte, dialing the backend until it answers (up to
// MaxWait). It is for the Sandbox API (gRPC): when the backend goes away the
// client's connection is closed and, on its reconnect, held until the backend
// is back, so the client's channel waits in "connecting" instead of failing
// with "connection refused".
func ServeStream(ctx context.Context, l net.Listener, backend string, o Options) error {
	if o.MaxWait <= 0 {
		o.MaxWait = defaultMaxWait
	}
	return acceptLoop(ctx, l, func(c net.Conn) { relay(ctx, c, backend, o.MaxWait) })
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
	go func() { _, _ = io.Copy(back, front); done <- struct{}{} }()
	go func() { _, _ = io.Copy(front, back); done <- struct{}{} }()
	<-done // either side ended: end both
}
