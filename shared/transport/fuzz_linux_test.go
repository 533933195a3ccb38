package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// FuzzParseAddress: an address ParseAddress accepts is connectable as it
// says (an absolute socket path that fits sun_path and has no NUL, no ':'
// in an hvsock path, no VMADDR_*_ANY) and formats back to a string that
// parses to the same Address; one it refuses gets an invalid-argument error.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"ttrpc+unix:///run/magnetar/a.sock", "grpc+unix:///x", "ttrpc+vsock://3:1024", "ttrpc+hvsock:///run/vm/vsock.sock:1024",
		"ttrpc+serial:///run/vm/serial.sock", "ttrpc+vsock://4294967295:1", "ttrpc+vsock://3:4294967295", "ttrpc+vsock://3:+1",
		"ttrpc+hvsock:///a:b:1", "ttrpc+hvsock://rel:1", "ttrpc+unix://relative", "unix:///x", "+unix:///x", "ttrpc+tcp://1.2.3.4:5",
		"ttrpc+unix:///" + strings.Repeat("a", 120), "ttrpc+unix:///a\x00b", "ttrpc+vsock://-1:2", "ttrpc+vsock://99999999999:1", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "transport address") {
				t.Fatalf("ParseAddress(%q) = %v: want an invalid-argument error naming the address", s, err)
			}
			return
		}
		switch a.Scheme {
		case SchemeUnix, SchemeSerial, SchemeHybridVsock:
			if !strings.HasPrefix(a.Path, "/") || len(a.Path) > MaxUnixPathLen || strings.IndexByte(a.Path, 0) >= 0 {
				t.Fatalf("ParseAddress(%q) accepted socket path %q", s, a.Path)
			}
			if a.Scheme == SchemeHybridVsock && (strings.Contains(a.Path, ":") || a.Port == vsockPortAny) {
				t.Fatalf("ParseAddress(%q) accepted hvsock %q port %d", s, a.Path, a.Port)
			}
		case SchemeVsock:
			if a.CID == vsockCIDAny || a.Port == vsockPortAny {
				t.Fatalf("ParseAddress(%q) accepted vsock %d:%d", s, a.CID, a.Port)
			}
		default:
			t.Fatalf("ParseAddress(%q) accepted scheme %q", s, a.Scheme)
		}
		if a.Protocol != ProtocolTTRPC && a.Protocol != ProtocolGRPC {
			t.Fatalf("ParseAddress(%q) accepted protocol %q", s, a.Protocol)
		}
		b, err := ParseAddress(a.String())
		if err != nil || b != a {
			t.Fatalf("ParseAddress(%q) = %+v, formats as %q, which parses to %+v, %v", s, a, a.String(), b, err)
		}
	})
}

// scriptConn is a net.Conn that reads a script a few bytes at a time (each
// Read gets at most the next chunk size) and records what is written.
type scriptConn struct {
	net.Conn // nil: the methods a test does not use panic
	in       *bytes.Reader
	chunks   []byte
	written  bytes.Buffer
}

func (c *scriptConn) Read(b []byte) (int, error) {
	if c.in.Len() == 0 {
		return 0, io.EOF
	}
	n := len(b)
	if len(c.chunks) > 0 {
		n = min(n, int(c.chunks[0])%64+1)
		c.chunks = c.chunks[1:]
	}
	return c.in.Read(b[:n])
}

func (c *scriptConn) Write(b []byte) (int, error)     { return c.written.Write(b) }
func (c *scriptConn) SetReadDeadline(time.Time) error { return errors.New("no deadlines") }

// FuzzHybridVsockHandshake: the client writes exactly "CONNECT <port>\n",
// accepts only a reply line "OK <decimal uint32>\n", reads at most
// hybridVsockReplyMax+1 bytes whatever the peer sends, and consumes nothing
// after the newline (the stream's first bytes belong to ttrpc).
func FuzzHybridVsockHandshake(f *testing.F) {
	for _, s := range []string{"OK 1073741824\n", "OK 1\nrest", "OK \n", "OK\n", "ok 1\n", "OK 1x\n", "OK -1\n", "OK 4294967296\n",
		"OK +1\n", "OK 1", "", "ERR no listener\n", "OK 1\r\n", strings.Repeat("A", 100), "OK " + strings.Repeat("1", 70) + "\n"} {
		f.Add(uint32(1024), []byte(s))
	}
	f.Fuzz(func(t *testing.T, port uint32, reply []byte) {
		c := &scriptConn{in: bytes.NewReader(reply)}
		line, err := hybridVsockHandshake(c, port)
		if err == nil {
			err = checkHybridVsockReply(line)
		}
		if got, want := c.written.String(), fmt.Sprintf("CONNECT %d\n", port); got != want {
			t.Fatalf("wrote %q, want %q", got, want)
		}
		consumed := len(reply) - c.in.Len()
		if consumed > hybridVsockReplyMax+1 {
			t.Fatalf("read %d bytes of the reply, more than the bound %d", consumed, hybridVsockReplyMax+1)
		}
		i := bytes.IndexByte(reply, '\n')
		valid := i >= 0 && i < hybridVsockReplyMax
		if valid {
			rest, ok := strings.CutPrefix(string(reply[:i]), "OK ")
			_, perr := strconv.ParseUint(rest, 10, 32)
			valid = ok && perr == nil
		}
		switch {
		case valid && err != nil:
			t.Fatalf("reply %q refused: %v", reply, err)
		case !valid && err == nil:
			t.Fatalf("reply %q accepted as %q", reply, line)
		case err == nil && consumed != i+1:
			t.Fatalf("reply %q: consumed %d bytes, the line has %d", reply, consumed, i+1)
		}
	})
}

// FuzzSessionFrameReader: whatever bytes a console stream carries (cut
// anywhere by short reads), the frame reader returns only whole frames of a
// valid header (the length it declares, at most ttrpcMaxLen; a request one
// that decodes as a ttrpc request), buffers at most one frame and one read
// beyond it, and ends with the stream's error. Valid frames written before
// the garbage come back unchanged and in order.
func FuzzSessionFrameReader(f *testing.F) {
	f.Add([]byte{}, []byte{}, []byte{})
	f.Add([]byte("hello"), []byte{}, []byte{3, 9})
	f.Add(frame(1, ttrpcRequest, []byte{1, 2}), []byte{}, []byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0}, frame(1, ttrpcData, []byte("x")), []byte{1, 1, 1})
	f.Add([]byte{0, 0x40, 0, 0, 0, 0, 0, 1, 1, 0}, []byte("short"), []byte{})
	f.Fuzz(func(t *testing.T, garbage, data, chunks []byte) {
		var valid [][]byte
		var stream bytes.Buffer
		for i := range 3 {
			fr := frame(uint32(2*i+1), ttrpcRequest, data)
			valid = append(valid, fr)
			stream.Write(fr)
			if i == 1 {
				d := frame(uint32(2*i+1), ttrpcData, data)
				valid = append(valid, d)
				stream.Write(d)
			}
		}
		stream.Write(garbage)
		c := &scriptConn{in: bytes.NewReader(stream.Bytes()), chunks: chunks}
		r := &frameReader{conn: c, stall: time.Millisecond, deadlines: true}
		const bufMax = ttrpcHeaderLen + ttrpcMaxLen + 32<<10
		for n := 0; ; n++ {
			fr, h, err := r.next()
			if len(r.buf) > bufMax || cap(r.buf) > 2*bufMax {
				t.Fatalf("frame reader holds %d bytes (cap %d), more than %d", len(r.buf), cap(r.buf), bufMax)
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("frame reader ended with %v, want the stream's EOF", err)
				}
				if n < len(valid) {
					t.Fatalf("stream ended after %d of the %d valid frames", n, len(valid))
				}
				return
			}
			if n < len(valid) && !bytes.Equal(fr, valid[n]) {
				t.Fatalf("frame %d = %x, want %x", n, fr, valid[n])
			}
			if len(fr) < ttrpcHeaderLen {
				t.Fatalf("frame of %d bytes: no header", len(fr))
			}
			ph, ok := parseHeader(fr)
			if !ok || ph != h || int(h.length) != len(fr)-ttrpcHeaderLen || h.length > ttrpcMaxLen {
				t.Fatalf("frame %x: header %+v (parsed %+v, %v) does not describe it", fr, h, ph, ok)
			}
			if h.typ == ttrpcRequest && !validRequest(fr[ttrpcHeaderLen:]) {
				t.Fatalf("request frame %x is not a ttrpc request", fr)
			}
			if n > len(valid)+len(garbage) {
				t.Fatalf("%d frames out of %d bytes of garbage", n-len(valid), len(garbage))
			}
		}
	})
}
