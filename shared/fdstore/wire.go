package fdstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// MaxKeyLen is the longest key, in bytes.
const MaxKeyLen = 255

// Operations of a request (its first line).
const (
	opHold    = "HOLD"
	opRelease = "RELEASE"
	opRetain  = "RETAIN"
	opList    = "LIST"
)

const (
	replyOK  = "OK"
	replyErr = "ERR"
	// headerLen is a frame's length prefix.
	headerLen = 4
	// maxFrame bounds a frame: a RETAIN or a LIST of MaxFDs keys of
	// MaxKeyLen bytes is about 4 MiB.
	maxFrame = 8 << 20
	// maxRights is how many descriptors a frame is read with: more than a
	// HOLD's one is refused; beyond maxRights the kernel drops them
	// (MSG_CTRUNC), which is refused too.
	maxRights = 4
)

// codes are the error categories a reply names, and back.
var codes = []struct {
	code string
	err  error
}{
	{"invalid-argument", errdefs.ErrInvalidArgument},
	{"resource-exhausted", errdefs.ErrResourceExhausted},
	{"not-implemented", errdefs.ErrNotImplemented},
	{"unavailable", errdefs.ErrUnavailable},
}

const codeInternal = "internal"

// codeOf is the reply code of err.
func codeOf(err error) string {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return codeInternal
}

// errOf is the error of a reply's code and message (the store's error
// text, which ends with its category's).
func errOf(code, msg string) error {
	for _, c := range codes {
		if c.code == code {
			return fmt.Errorf("fd store: %s: %w", strings.TrimSuffix(msg, ": "+c.err.Error()), c.err)
		}
	}
	return fmt.Errorf("fd store: %s (%s)", msg, code)
}

// ValidateKey checks that key can name a held descriptor: 1 to MaxKeyLen
// bytes of printable ASCII other than space.
func ValidateKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("key of %d bytes: want 1 to %d: %w", len(key), MaxKeyLen, errdefs.ErrInvalidArgument)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("key %q: byte %#x at %d is not printable ASCII other than space: %w", key, c, i, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// request is a frame's text: the operation, then the keys.
func request(op string, keys []string) []byte {
	return []byte(strings.Join(append([]string{op}, keys...), "\n"))
}

// parseRequest splits a request's text into its operation and keys.
func parseRequest(b []byte) (op string, keys []string) {
	lines := strings.Split(string(b), "\n")
	return lines[0], lines[1:]
}

// writeFrame writes payload as one frame on c, with the descriptor fd
// (SCM_RIGHTS) unless it is negative.
func writeFrame(c *net.UnixConn, payload []byte, fd int) error {
	if len(payload) > maxFrame {
		return fmt.Errorf("frame of %d bytes is too large: %w", len(payload), errdefs.ErrInvalidArgument)
	}
	buf := make([]byte, headerLen+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)))
	copy(buf[headerLen:], payload)
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	// the descriptor travels with the first bytes; a large frame may need
	// more than one write for the rest
	n, _, err := c.WriteMsgUnix(buf, oob, nil)
	if err == nil && n < len(buf) {
		_, err = c.Write(buf[n:])
	}
	return err
}

// readFrame reads one frame from c, with the descriptors sent with it
// (the caller owns them, also with an error). io.EOF: c ended between
// frames.
func readFrame(c *net.UnixConn) (payload []byte, fds []int, err error) {
	hdr := make([]byte, headerLen)
	if err := readFull(c, hdr, &fds, true); err != nil {
		return nil, fds, err
	}
	n := binary.BigEndian.Uint32(hdr)
	if n > maxFrame {
		return nil, fds, fmt.Errorf("frame of %d bytes is too large: %w", n, errdefs.ErrInvalidArgument)
	}
	payload = make([]byte, n)
	if err := readFull(c, payload, &fds, false); err != nil {
		return nil, fds, err
	}
	return payload, fds, nil
}

// readFull fills b from c, adding the descriptors received on the way to
// fds. first: an EOF before any byte is io.EOF, not a truncated frame.
func readFull(c *net.UnixConn, b []byte, fds *[]int, first bool) error {
	oob := make([]byte, unix.CmsgSpace(maxRights*4))
	for read := 0; read < len(b); {
		n, oobn, flags, _, err := c.ReadMsgUnix(b[read:], oob)
		if oobn > 0 {
			got, perr := rights(oob[:oobn])
			*fds = append(*fds, got...)
			if perr != nil {
				return perr
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return fmt.Errorf("frame carries more than %d descriptors: %w", maxRights, errdefs.ErrInvalidArgument)
		}
		read += n
		if err == nil && n == 0 {
			err = io.EOF
		}
		if err != nil {
			if errors.Is(err, io.EOF) && (read > 0 || !first) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// rights are the descriptors of the SCM_RIGHTS messages in oob.
func rights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	var fds []int
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return fds, fmt.Errorf("control message: %w", err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// closeFDs closes descriptors nobody keeps.
func closeFDs(fds []int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}
