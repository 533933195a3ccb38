package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
)

// ttrpc's framing (github.com/containerd/ttrpc channel.go): a 10-byte
// header, big-endian length and stream id, type, flags; then the payload.
const (
	ttrpcHeaderLen   = 10
	ttrpcMaxLen      = 4 << 20
	ttrpcRequest     = 0x1
	ttrpcData        = 0x3
	ttrpcMaxType     = 0x3
	firstClientStrID = 1
)

// SessionStall is how long a ttrpc frame may stay incomplete on a
// SessionListener's stream before it is taken for the remains of a client
// that went away mid-frame and dropped.
const SessionStall = time.Second

// SessionListener serves ttrpc on a byte stream that successive host
// clients share without any sign of a hang-up: a virtio console port
// (/dev/hvcN in the guest). Unlike a virtserialport, whose reads end
// (EOF) when the host side disconnects, a console port is never told, so
// the frames of a new client follow those of the old one on the same
// stream, and a ttrpc server would refuse them (stream ids restart at 1).
//
// The listener reads ttrpc frames from conn and yields a new connection
// (Accept) for each client session: a session starts with the first
// request, and a request whose stream id is not above the last request's
// (a ttrpc client numbers its streams upwards from 1) starts the next one.
// The previous session's connection then reads EOF, and what its server
// still writes is dropped, a whole frame at a time: every frame reaches
// conn whole, from the current session only.
//
// A frame left incomplete for SessionStall (a client that died mid-write),
// or a header no ttrpc peer sends, is dropped, and the stream is skipped up
// to the start of a new session's first request (stream 1).
//
// hangups is for a stream that does tell: a virtserialport's character
// device, which reads EOF when the host side goes away and for as long as
// no host is there (it must stay open: virtio_console discards what a port
// holds unread when it is released, and with it the first request of a
// host that came back before the guest noticed). Each EOF then ends the
// current session, drops an incomplete frame, and reading goes on (every
// 10 ms to 100 ms while it reads EOF). Without hangups, and for any other
// read error, Accept fails once reading ends; the caller reopens the
// device (or dials a socket again).
func SessionListener(conn net.Conn, hangups bool) net.Listener {
	return newSessionListener(conn, SessionStall, hangups)
}

// hangupBackoff bounds the wait between reads of a stream that reads EOF
// while no host is connected.
const (
	hangupBackoffMin = 10 * time.Millisecond
	hangupBackoffMax = 100 * time.Millisecond
)

func newSessionListener(conn net.Conn, stall time.Duration, hangups bool) *sessionListener {
	l := &sessionListener{conn: conn, sessions: make(chan *sessionConn), done: make(chan struct{}), stall: stall, hangups: hangups}
	go l.readLoop()
	return l
}

type sessionListener struct {
	conn     net.Conn
	sessions chan *sessionConn
	done     chan struct{} // closed by Close
	stall    time.Duration
	hangups  bool // EOF ends a session, not the stream

	wmu     sync.Mutex   // serializes frames to conn
	mu      sync.Mutex   // guards the fields below
	current *sessionConn // the session whose frames reach conn
	err     error        // why reading ended
	closed  bool
}

var _ net.Listener = (*sessionListener)(nil)

func (l *sessionListener) Accept() (net.Conn, error) {
	select {
	case s, ok := <-l.sessions:
		if ok {
			return s, nil
		}
	case <-l.done:
	}
	l.mu.Lock()
	err := l.err
	l.mu.Unlock()
	if err == nil {
		err = net.ErrClosed
	}
	return nil, &net.OpError{Op: "accept", Net: "session", Addr: l.Addr(), Err: err}
}

// Close stops accepting and closes conn; sessions read EOF.
func (l *sessionListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return &net.OpError{Op: "close", Net: "session", Addr: l.Addr(), Err: net.ErrClosed}
	}
	l.closed = true
	close(l.done)
	l.mu.Unlock()
	return l.conn.Close()
}

func (l *sessionListener) Addr() net.Addr { return l.conn.LocalAddr() }

// frameReader reads ttrpc frames from the stream.
type frameReader struct {
	conn  net.Conn
	stall time.Duration
	buf   []byte
	// deadlines says whether conn takes read deadlines (stall detection)
	deadlines bool
}

// header is a parsed ttrpc frame header.
type header struct {
	length uint32
	stream uint32
	typ    uint8
}

func parseHeader(b []byte) (header, bool) {
	h := header{length: binary.BigEndian.Uint32(b[0:4]), stream: binary.BigEndian.Uint32(b[4:8]), typ: b[8]}
	ok := h.length <= ttrpcMaxLen && h.typ >= ttrpcRequest && h.typ <= ttrpcMaxType
	return h, ok
}

// fill reads more bytes; a stall (no byte for r.stall while a frame is
// incomplete) is errStall.
func (r *frameReader) fill(partial bool) error {
	if r.deadlines {
		dl := time.Time{}
		if partial {
			dl = time.Now().Add(r.stall)
		}
		if err := r.conn.SetReadDeadline(dl); err != nil {
			r.deadlines = false
		}
	}
	var tmp [32 << 10]byte
	n, err := r.conn.Read(tmp[:])
	r.buf = append(r.buf, tmp[:n]...)
	if n > 0 {
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errStall
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

var errStall = errors.New("frame incomplete")

// next returns the next whole frame (header and payload). After a stall or
// a header no peer sends it resynchronizes on a session's first request.
func (r *frameReader) next() ([]byte, header, error) {
	resync := false
	for {
		if resync {
			if i := findSessionStart(r.buf); i >= 0 {
				r.buf = r.buf[i:]
				resync = false
			} else if len(r.buf) >= ttrpcHeaderLen {
				// keep what may be the start of a header
				r.buf = r.buf[len(r.buf)-ttrpcHeaderLen+1:]
			}
		}
		if !resync && len(r.buf) >= ttrpcHeaderLen {
			h, ok := parseHeader(r.buf)
			if !ok {
				resync = true
				r.buf = r.buf[1:]
				continue
			}
			if n := ttrpcHeaderLen + int(h.length); len(r.buf) >= n {
				if h.typ == ttrpcRequest && !validRequest(r.buf[ttrpcHeaderLen:n]) {
					// a frame cut or mangled (a console port's first
					// bytes, read before the tty was raw): what follows
					// its first byte may hold a client's request
					resync = true
					r.buf = r.buf[1:]
					continue
				}
				f := bytes.Clone(r.buf[:n])
				r.buf = r.buf[n:]
				return f, h, nil
			}
		}
		err := r.fill(!resync && len(r.buf) > 0)
		if errors.Is(err, errStall) {
			// an incomplete frame: a client that died mid-frame, or a
			// header that lies about its length; a new client's request
			// may have followed it
			resync = true
			if len(r.buf) > 0 {
				r.buf = r.buf[1:]
			}
			continue
		}
		if err != nil {
			return nil, header{}, err
		}
	}
}

// validRequest reports whether p is a ttrpc request message naming a
// service and a method.
func validRequest(p []byte) bool {
	var req ttrpc.Request
	return proto.Unmarshal(p, &req) == nil && req.Service != "" && req.Method != ""
}

// findSessionStart is the offset in b of what may be a new client's first
// frame: a request on stream 1 of a plausible length; -1 if none.
func findSessionStart(b []byte) int {
	for i := 0; i+ttrpcHeaderLen <= len(b); i++ {
		h, ok := parseHeader(b[i:])
		if ok && h.typ == ttrpcRequest && h.stream == firstClientStrID {
			return i
		}
	}
	return -1
}

func (l *sessionListener) readLoop() {
	r := &frameReader{conn: l.conn, stall: l.stall, deadlines: true}
	var last uint32 // last request stream id of the current session
	defer func() {
		l.mu.Lock()
		cur := l.current
		l.current = nil
		l.mu.Unlock()
		if cur != nil {
			cur.in.CloseWithError(io.EOF)
		}
		close(l.sessions)
	}()
	backoff := hangupBackoffMin
	for {
		f, h, err := r.next()
		if err != nil && l.hangups && errors.Is(err, io.EOF) {
			// the host went away (or is not there yet): its session ends,
			// the next request starts a new one
			r.buf = r.buf[:0]
			l.endCurrent(nil)
			select {
			case <-l.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, hangupBackoffMax)
			continue
		}
		if err != nil {
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			return
		}
		backoff = hangupBackoffMin
		l.mu.Lock()
		cur := l.current
		l.mu.Unlock()
		if h.typ == ttrpcRequest && (cur == nil || h.stream <= last) {
			next := newSessionConn(l)
			l.endCurrent(next)
			select {
			case l.sessions <- next:
			case <-l.done:
				return
			}
			cur = next
		}
		if cur == nil {
			continue // data before any request: no session to give it to
		}
		if h.typ == ttrpcRequest {
			last = h.stream
		}
		// blocks until the session's server reads it (or closes)
		_, _ = cur.in.Write(f)
	}
}

// endCurrent makes next the current session (nil: none until the next
// request); the one it replaces reads EOF.
func (l *sessionListener) endCurrent(next *sessionConn) {
	l.mu.Lock()
	cur := l.current
	l.current = next
	l.mu.Unlock()
	if cur != nil {
		cur.in.CloseWithError(io.EOF)
	}
}

// sessionConn is one client session on the listener's stream.
type sessionConn struct {
	l   *sessionListener
	out *io.PipeReader // what the session's server reads
	in  *io.PipeWriter // where the listener puts the session's frames

	wmu     sync.Mutex // guards pending
	pending []byte     // an incomplete frame written by the server
}

func newSessionConn(l *sessionListener) *sessionConn {
	pr, pw := io.Pipe()
	return &sessionConn{l: l, out: pr, in: pw}
}

var _ net.Conn = (*sessionConn)(nil)

func (s *sessionConn) Read(b []byte) (int, error) { return s.out.Read(b) }

// Write passes whole frames to the stream while the session is current;
// an incomplete frame waits for the rest. A session that is no longer
// current gets net.ErrClosed and nothing of it is written.
func (s *sessionConn) Write(b []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.pending = append(s.pending, b...)
	for len(s.pending) >= ttrpcHeaderLen {
		h, ok := parseHeader(s.pending)
		if !ok {
			s.pending = nil
			return 0, fmt.Errorf("session write: not a ttrpc frame header: %w", net.ErrClosed)
		}
		n := ttrpcHeaderLen + int(h.length)
		if len(s.pending) < n {
			break
		}
		if err := s.writeFrame(s.pending[:n]); err != nil {
			s.pending = nil
			return 0, err
		}
		s.pending = s.pending[n:]
	}
	return len(b), nil
}

func (s *sessionConn) writeFrame(f []byte) error {
	s.l.wmu.Lock()
	defer s.l.wmu.Unlock()
	s.l.mu.Lock()
	current := s.l.current == s
	s.l.mu.Unlock()
	if !current {
		return &net.OpError{Op: "write", Net: "session", Addr: s.LocalAddr(), Err: net.ErrClosed}
	}
	_, err := s.l.conn.Write(f)
	return err
}

// Close ends the session: its reads end, the stream stays open.
func (s *sessionConn) Close() error {
	s.out.CloseWithError(net.ErrClosed)
	s.l.mu.Lock()
	if s.l.current == s {
		s.l.current = nil
	}
	s.l.mu.Unlock()
	return nil
}

func (s *sessionConn) LocalAddr() net.Addr  { return s.l.conn.LocalAddr() }
func (s *sessionConn) RemoteAddr() net.Addr { return s.l.conn.RemoteAddr() }

// Deadlines are not supported on a session (a ttrpc server sets none).
func (s *sessionConn) SetDeadline(time.Time) error      { return os.ErrNoDeadline }
func (s *sessionConn) SetReadDeadline(time.Time) error  { return os.ErrNoDeadline }
func (s *sessionConn) SetWriteDeadline(time.Time) error { return os.ErrNoDeadline }
