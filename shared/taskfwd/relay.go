package taskfwd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

// relayBuf is the copy buffer of a relay: one Streams chunk.
const relayBuf = 32 << 10

// ctrlD is what ends a terminal's input: a terminal reads EOF from ^D, not
// from the end of the bytes written into it.
const ctrlD = 0x04

// errHostTarget marks a failed write into containerd's target: the relay
// ends (the target was closed by Delete, or is broken).
var errHostTarget = errors.New("host stdio target")

// relayOutput copies the guest's stdout or stderr of the process into the
// host target w until EOF, re-attaching after a broken connection (the
// agent keeps what was not read for the next reader). It ends early when
// the process is deleted, lost, or the daemon ends.
func (p *process) relayOutput(s agentapi.StdStream, w *os.File) {
	defer p.outputs.Done()
	open := StreamConn.Stdout
	if s == agentapi.StdStream_STDERR {
		open = StreamConn.Stderr
	}
	err := withConn(p.ctx, p.c.g, func(conn Conn) error {
		sc, err := asStreamConn(conn)
		if err != nil {
			return err
		}
		r, err := open(sc, p.ctx, p.c.id, p.execID)
		if err != nil {
			return err
		}
		defer r.Close() // detaches in the guest: unread output stays there
		return copyOut(w, r)
	})
	switch {
	case err == nil, p.ctx.Err() != nil, errdefs.IsNotFound(err):
		// EOF; or the process was deleted (here or in the guest) or lost
	default:
		p.logger().WithError(err).WithField("stream", s.String()).Warn("output relay ended")
	}
}

// copyOut copies r to w until r's EOF (nil). A failed write wraps
// errHostTarget; a read error is r's (Unavailable for a broken connection).
func copyOut(w io.Writer, r io.Reader) error {
	buf := make([]byte, relayBuf)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return fmt.Errorf("%w: %w", errHostTarget, err)
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// relayStdin copies containerd's stdin (r: the read end of the pipe
// shared/stdio fills from the host FIFO) into the process's stdin in the
// guest. The guest's stream is opened with the first bytes (most processes
// never get any), and again after a broken connection. At the end of the
// host's stdin (containerd closed it, or CloseIO) the guest's stdin is
// closed after the last bytes (see endStdin). Once the guest refuses stdin
// (the process is gone) the rest is read and dropped, so that containerd's
// writes never block.
func (p *process) relayStdin(r *os.File) {
	s := &guestStdin{p: p}
	defer func() {
		// end the guest's stream unless the daemon ends: a restarted
		// daemon attaches again, with stdin still open
		if s.w != nil && (p.guestExit.IsSet() || p.deleting.Load()) {
			_ = s.w.Close()
		}
	}()
	buf := make([]byte, relayBuf)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := s.write(buf[:n]); err != nil {
				p.dropStdin(r, err)
				return
			}
		}
		if errors.Is(rerr, io.EOF) {
			p.unhold(streamStdin) // shared/stdio closed the FIFO
			p.endStdin(s)
			return
		}
		if rerr != nil { // closed here: deleted, exited, or the daemon ends
			return
		}
	}
}

// endStdin closes the guest's stdin after what was sent through s. A
// terminal's input ends only with CloseIO, as with containerd's shim (the
// end of the host FIFO alone leaves the terminal open): ^D, then the close.
func (p *process) endStdin(s *guestStdin) {
	var eof []byte
	if p.cfg.Terminal {
		select {
		case <-p.closeReq:
		case <-p.guestExit.Done():
		case <-p.ctx.Done():
		}
		eof = []byte{ctrlD}
	}
	if p.guestExit.IsSet() || p.ctx.Err() != nil {
		return // nobody reads it any more, or the daemon ends
	}
	if err := s.close(eof); err != nil && p.ctx.Err() == nil && !errdefs.IsNotFound(err) && !p.guestExit.IsSet() {
		p.logger().WithError(err).Warn("closing stdin in the guest")
	}
}

// guestStdin is a process's stdin stream in the guest, opened on the
// guest's current connection when needed: at first use, and again after
// its connection broke.
type guestStdin struct {
	p *process
	w io.WriteCloser // nil: none open
}

// on runs f on an open stream, retried on the next connection when the
// stream's broke.
func (s *guestStdin) on(f func(w io.WriteCloser) error) error {
	p := s.p
	return withConn(p.ctx, p.c.g, func(conn Conn) error {
		if s.w == nil {
			sc, err := asStreamConn(conn)
			if err != nil {
				return err
			}
			w, err := sc.Stdin(p.ctx, p.c.id, p.execID)
			if err != nil {
				return err
			}
			s.w = w
		}
		err := f(s.w)
		if errdefs.IsUnavailable(err) {
			s.w = nil // broken with its connection
		}
		return err
	})
}

// write writes data into the guest's stdin.
func (s *guestStdin) write(data []byte) error {
	return s.on(func(w io.WriteCloser) error {
		n, err := w.Write(data)
		data = data[n:]
		return err
	})
}

// close writes eof (a terminal's ^D), then ends the guest's stdin once the
// agent has written everything into it.
func (s *guestStdin) close(eof []byte) error {
	return s.on(func(w io.WriteCloser) error {
		if len(eof) > 0 {
			if _, err := w.Write(eof); err != nil {
				return err
			}
			eof = nil
		}
		err := w.Close()
		s.w = nil
		return err
	})
}

// dropStdin reads and drops the rest of the host's stdin once the guest
// took no more (why: err), until the host side is closed.
func (p *process) dropStdin(r io.Reader, err error) {
	if p.ctx.Err() == nil && !p.guestExit.IsSet() && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
		p.logger().WithError(err).Warn("stdin relay: the guest takes no more input, dropping it")
	}
	if _, err := io.Copy(io.Discard, r); err == nil {
		p.unhold(streamStdin) // EOF: shared/stdio closed the FIFO
	}
}

// Streams, as the keys of the descriptors held for them name them.
const (
	streamStdin  = "stdin"
	streamStdout = "stdout"
	streamStderr = "stderr"
)

// fdKey names what the keeper holds for stream of the process:
// "<container id>/<exec id or ->/<stream>".
func (p *process) fdKey(stream string) string {
	execID := p.execID
	if execID == "" {
		execID = "-"
	}
	return p.c.id + "/" + execID + "/" + stream
}

// streams are the host streams containerd gave the process (a terminal's
// single output is stdout).
func (p *process) streams() []string {
	var ss []string
	for _, s := range []struct {
		name string
		set  bool
	}{{streamStdin, p.cfg.Stdin != ""}, {streamStdout, p.cfg.Stdout != ""}, {streamStderr, p.cfg.Stderr != "" && !p.cfg.Terminal}} {
		if s.set {
			ss = append(ss, s.name)
		}
	}
	return ss
}

// holdIO has the keeper hold containerd's FIFOs of the process once they
// are open here: a write end of each output FIFO, so that containerd's
// reader sees no EOF while no daemon writes, and a read end of the stdin
// FIFO, so that containerd's writes fill the FIFO instead of failing with
// EPIPE while no daemon reads (a reader is no writer: containerd's close
// still reaches the daemon as EOF). Other targets (files, loggers) need
// nothing. A failure is logged: only a daemon restart would cut the stream.
func (p *process) holdIO() {
	if p.c.b.fds == nil || p.io == nil {
		return
	}
	_, stdout, stderr := p.io.Files()
	p.hold(streamStdout, func() (*os.File, error) { return fifoWriteEnd(stdout) })
	p.hold(streamStderr, func() (*os.File, error) { return fifoWriteEnd(stderr) })
	p.hold(streamStdin, func() (*os.File, error) { return fifoReadEnd(p.cfg.Stdin) })
}

// hold has the keeper hold what open returns (nil: nothing to hold) for
// stream.
func (p *process) hold(stream string, open func() (*os.File, error)) {
	f, err := open()
	if f != nil {
		err = p.c.b.fds.Hold(p.fdKey(stream), f)
		f.Close()
	}
	if err != nil {
		p.fdsFailed(err, stream, "containerd's FIFO not held in the keeper: a daemon restart would cut the stream")
	}
}

// unhold releases what the keeper holds for streams of the process, which
// ended for good, before the daemon closes its own ends of them: a write
// end held on would keep containerd's reader from EOF. Not when the daemon
// ends: the next one relays them again.
func (p *process) unhold(streams ...string) {
	if p.c.b.fds == nil || len(streams) == 0 || p.c.b.life.Err() != nil || p.c.fw.StdioByPath {
		return
	}
	keys := make([]string, len(streams))
	for i, s := range streams {
		keys[i] = p.fdKey(s)
	}
	if err := p.c.b.fds.Release(keys...); err != nil {
		p.fdsFailed(err, strings.Join(streams, ","), "releasing containerd's FIFOs in the keeper: containerd may see their end only after the next daemon restart")
	}
}

// fdsFailed logs a failed call to the keeper's store for stream: at debug
// level when there is no store (a keeper started by an older daemon, which
// the daemon logged at its start).
func (p *process) fdsFailed(err error, stream, msg string) {
	l := p.logger().WithError(err).WithField("stream", stream)
	if errdefs.IsUnavailable(err) {
		l.Debug(msg)
		return
	}
	l.Warn(msg)
}

// fifoWriteEnd opens a write-only end of the FIFO f is open on (read-write,
// as shared/stdio opens output FIFOs), through /proc: never blocking, f is
// a reader. nil when f is nil or not a FIFO.
func fifoWriteEnd(f *os.File) (*os.File, error) {
	if f == nil {
		return nil, nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var w *os.File
	var oerr error
	if err := rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if oerr = unix.Fstat(int(fd), &st); oerr != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
			return
		}
		var nfd int
		nfd, oerr = unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if oerr == nil {
			w = os.NewFile(uintptr(nfd), f.Name())
		}
	}); err != nil {
		return nil, err
	}
	return w, oerr
}

// fifoReadEnd opens a read end of the FIFO at path, without blocking (no
// writer is needed). nil when path is no FIFO (none, a file:// target).
func fifoReadEnd(path string) (*os.File, error) {
	if !filepath.IsAbs(path) {
		return nil, nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		_ = unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}
