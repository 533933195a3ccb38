package stdio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
)

// loggerReadyTimeout bounds the wait for a binary:// logger to get ready
// (the request's context may end it sooner).
const loggerReadyTimeout = 10 * time.Second

// startLogger starts the binary:// logger that out and/or errT name (the
// same one when both do) and makes the write ends of its pipes the child's
// stdout and/or stderr. It is containerd's binary logging, as its runc
// shim runs it:
//
//   - the program is the URI's path; its arguments are the URI's query,
//     keys sorted, each key followed by its value (once for each value; an
//     empty value is left out), e.g. binary:///bin/logger?-dir=/x gives
//     `/bin/logger -dir /x`;
//   - its environment is CONTAINER_ID and CONTAINER_NAMESPACE only
//     (Config.ID and Config.Namespace);
//   - fds 3 and 4 are the read ends of the stdout and stderr pipes (a
//     stream not given to it reads EOF at once), fd 5 the write end of a
//     "ready" pipe, which it writes a byte to or closes once it is ready.
//
// Lifetime: the logger runs in its own process group (a signal to the
// daemon's group does not reach it), is not tied to the daemon, and is
// started and reaped through go-runc's Monitor (the guest agent's reaper
// there). Once ready it is never signalled: as with containerd's shim, it is
// left to exit by itself on EOF on fds 3 and 4, which comes once the process
// (and whatever inherited its stdout and stderr) has exited and our ends are
// closed (CloseAfterStart, CloseChildEnds or Close). If it is not ready
// within loggerReadyTimeout, or before ctx ends, it is SIGKILLed with its
// process group and Open fails.
func (s *IO) startLogger(ctx context.Context, out, errT target) error {
	name, v, t := "stdout", s.cfg.Stdout, out
	if out.kind != binary {
		name, v, t = "stderr", s.cfg.Stderr, errT
	}
	if s.cfg.ID == "" || s.cfg.Namespace == "" {
		return fmt.Errorf("%s %q: a binary logger needs the process's id and namespace: %w", name, v, errdefs.ErrFailedPrecondition)
	}
	// Everything made here is closed at return (the logger has its own
	// copies of its ends), but for the write ends that become the process's
	// stdout and stderr, closed with the IO's other child ends. A stream the
	// logger does not take is thus EOF at once on its fd.
	var made []*os.File
	defer func() {
		for _, f := range made {
			if f != s.stdout && f != s.stderr {
				f.Close()
			}
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		if r, w, err = os.Pipe(); err != nil {
			return nil, nil, fmt.Errorf("%s: logger pipe: %w", name, err)
		}
		made = append(made, r, w)
		return r, w, nil
	}
	outR, outW, err := pipe()
	if err != nil {
		return err
	}
	errR, errW, err := pipe()
	if err != nil {
		return err
	}
	readyR, readyW, err := pipe()
	if err != nil {
		return err
	}
	if out.kind == binary {
		s.stdout = outW
	}
	if errT.kind == binary {
		s.stderr = errW
	}

	cmd := exec.Command(t.path, loggerArgs(t.uri)...)
	cmd.Env = []string{"CONTAINER_ID=" + s.cfg.ID, "CONTAINER_NAMESPACE=" + s.cfg.Namespace}
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	ec, err := runc.Monitor.Start(cmd)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOEXEC) {
			return fmt.Errorf("%s %q: starting the logger: %v: %w", name, v, err, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("%s %q: starting the logger: %w", name, v, err)
	}
	pid := cmd.Process.Pid
	lg := log.G(ctx).WithFields(log.Fields{"logger": t.path, "logger_pid": pid})
	go func() {
		status, err := runc.Monitor.Wait(cmd, ec)
		lg.WithError(err).WithField("exit_status", status).Debug("binary logger exited")
	}()
	readyW.Close() // the logger's copy alone now: EOF when it closes it or exits
	if err := waitReady(ctx, readyR); err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return fmt.Errorf("%s %q: logger not ready: %w", name, v, err)
	}
	lg.Debug("binary logger ready")
	return nil
}

// waitReady waits for a byte or EOF on r, for at most loggerReadyTimeout and
// until ctx ends.
func waitReady(ctx context.Context, r *os.File) error {
	if err := r.SetReadDeadline(time.Now().Add(loggerReadyTimeout)); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = r.SetReadDeadline(time.Now()) })
	defer stop()
	_, err := r.Read(make([]byte, 1))
	switch {
	case err == nil || errors.Is(err, io.EOF):
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("not ready within %s: %w", loggerReadyTimeout, context.DeadlineExceeded)
	default:
		return err
	}
}

// loggerArgs are the arguments of the logger u names: its query, keys
// sorted, each key followed by its value, once for each value, an empty
// value left out.
func loggerArgs(u *url.URL) []string {
	q := u.Query()
	var args []string
	for _, k := range slices.Sorted(maps.Keys(q)) {
		for _, v := range q[k] {
			args = append(args, k)
			if v != "" {
				args = append(args, v)
			}
		}
	}
	return args
}
