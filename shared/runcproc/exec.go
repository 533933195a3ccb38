package runcproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// Exec is an exec process of a container: `runc exec --detach`.
type Exec struct {
	init *Init
	id   string
	spec *specs.Process
	cfg  stdio.Config

	iomu sync.Mutex
	io   *stdio.IO

	status
}

var (
	_ task.Process  = (*Exec)(nil)
	_ exit.Notifier = (*Exec)(nil) // the task service watches it without a goroutine
	_ exit.Notifier = (*Init)(nil)
)

// ID is the exec's id.
func (e *Exec) ID() string { return e.id }

// Start opens the exec's stdio and runs `runc exec --detach`, its pid file
// and log in the container's dir (removed after).
func (e *Exec) Start(ctx context.Context) (retErr error) {
	ioh, err := stdio.Open(ctx, e.cfg)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			ioh.Close()
		}
	}()
	pidFile := filepath.Join(e.init.dir, "exec-"+e.id+".pid")
	logFile := filepath.Join(e.init.dir, "exec-"+e.id+".log")
	defer os.Remove(pidFile)
	defer os.Remove(logFile)
	opts := &runc.ExecOpts{IO: ioh, PidFile: pidFile, Detach: true, LogFile: logFile}
	if h := e.init.Hooks.ExecArgs; h != nil {
		opts.ExtraArgs = h(e.id)
	}
	pid, wait, err := e.init.spawn(e.cfg.Terminal, ioh, pidFile, "exec", e.init.waiter.Watch, func(sock runc.ConsoleSocket) error {
		opts.ConsoleSocket = sock
		if err := e.init.r.Exec(ctx, e.init.id, *e.spec, opts); err != nil {
			return e.init.error("exec", logFile, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.iomu.Lock()
	e.io = ioh
	e.iomu.Unlock()
	e.setPid(pid)
	e.watch(wait, ioh, nil)
	return nil
}

// AdoptExec is exec id of the container found running again after a
// daemon restart, as pid, whose end wait reports: it has no stdio (its
// output went to containerd's FIFOs directly and still does), Kill signals
// the pid.
func (p *Init) AdoptExec(id string, pid int, wait Waited) *Exec {
	e := &Exec{init: p, id: id}
	e.setPid(pid)
	e.watch(wait, nil, nil)
	return e
}

func (e *Exec) stdio() *stdio.IO {
	e.iomu.Lock()
	defer e.iomu.Unlock()
	return e.io
}

// Kill signals the exec's pid; all is ignored (see the init's Kill). An
// exec not started or exited is not an error.
func (e *Exec) Kill(ctx context.Context, sig syscall.Signal, _ bool) error {
	pid := int(e.Pid())
	if pid == 0 || e.exited() {
		return nil
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill exec %s: %w", e.id, err)
	}
	return nil
}

// ResizePty resizes the exec's terminal.
func (e *Exec) ResizePty(ctx context.Context, w, h uint32) error {
	ioh := e.stdio()
	if ioh == nil {
		return fmt.Errorf("exec %s has not started: %w", e.id, errdefs.ErrFailedPrecondition)
	}
	return ioh.Resize(w, h)
}

// CloseStdin closes the exec's stdin.
func (e *Exec) CloseStdin(ctx context.Context) error {
	if ioh := e.stdio(); ioh != nil {
		ioh.CloseStdin()
	}
	return nil
}

// Delete closes the exec's stdio.
func (e *Exec) Delete(ctx context.Context) error {
	if ioh := e.stdio(); ioh != nil {
		ioh.Close()
	}
	return nil
}
