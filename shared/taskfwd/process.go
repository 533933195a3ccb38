package taskfwd

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// killWait bounds how long a Delete that the guest refuses because the
// process still runs (a SIGKILL was just sent) waits for its exit.
const killWait = 10 * time.Second

// procKey names a process in a guest: container id, exec id ("" for the
// init).
type procKey struct{ id, exec string }

// process is one forwarded process, a container's init or an exec: the
// host's stdio relayed to the guest's streams, and its exit as the guest
// reported it.
type process struct {
	c      *ctr
	execID string
	// cfg is containerd's stdio for the process, on the host.
	cfg stdio.Config
	pid atomic.Uint32

	// ctx bounds the relays: it ends on Delete, when the process is lost,
	// and with the daemon (whose end leaves the guest's process running).
	ctx    context.Context
	cancel context.CancelFunc

	// io holds containerd's host targets open (nil: none, or not reopened).
	io *stdio.IO
	// ttyOut is a terminal's output target, closed once drained (the
	// stdin FIFO stays open until Delete, as shared/stdio keeps it).
	ttyOut *os.File
	// outputs counts the output relays; drained is closed once they all
	// reached EOF.
	outputs sync.WaitGroup
	drained chan struct{}

	// guestExit is the exit as the guest reported it (or lost); exit is
	// task.Process's: set once guestExit is and the output is drained.
	guestExit exit.Latch
	exit      exit.Latch
	lost      atomic.Bool
	// started is set once the process ran (a Start, or found running):
	// a process killed before it started has no output to wait for.
	started atomic.Bool
	// deleting is set by Delete: the relays end for good.
	deleting atomic.Bool
	// closeReq is closed by CloseIO.
	closeReq  chan struct{}
	closeOnce sync.Once
}

var (
	_ task.Process  = (*process)(nil)
	_ exit.Notifier = (*process)(nil) // the task service watches it without a goroutine
)

// newProcess makes the process execID of c ("" for its init).
func (c *ctr) newProcess(execID string, cfg stdio.Config) *process {
	p := &process{c: c, execID: execID, cfg: cfg, drained: make(chan struct{}), closeReq: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(c.b.life)
	return p
}

func (p *process) key() procKey { return procKey{p.c.id, p.execID} }

// logger is the lifetime logger with the process's ids.
func (p *process) logger() *log.Entry {
	f := log.Fields{"container_id": p.c.id}
	if p.execID != "" {
		f["exec_id"] = p.execID
	}
	if p.c.g != nil {
		f["sandbox_id"] = p.c.g.ID()
	}
	return log.G(p.c.b.life).WithFields(f)
}

// name is the process as the binary logger knows it: the container's id
// for its init, the exec id for an exec (as containerd's shim names them).
func (p *process) name() string {
	if p.execID == "" {
		return p.c.id
	}
	return p.execID
}

// openIO opens containerd's host targets of the process with shared/stdio:
// FIFOs, file:// targets, a binary:// logger. The guest owns the terminal,
// so the host side is plain bytes either way: a terminal's single output
// goes to stdout. The FIFOs are held in the keeper too (holdIO), from now
// until they end for good (unhold). The targets are closed when the
// relays' context ends.
func (p *process) openIO(ctx context.Context, recovered bool) error {
	if p.c.fw.StdioByPath {
		return p.bindStdio()
	}
	hc := p.cfg
	if hc.Terminal {
		hc.Stderr = ""
	}
	hc.Terminal = false
	if hc.Stdin == "" && hc.Stdout == "" && hc.Stderr == "" {
		return nil
	}
	hc.ID, hc.Namespace = p.name(), p.c.ns
	open := stdio.Open
	if recovered {
		// containerd's readers were open long ago (stdio.Reopen)
		open = stdio.Reopen
	}
	sio, err := open(ctx, hc)
	if err != nil {
		return err
	}
	p.io = sio
	context.AfterFunc(p.ctx, func() { _ = sio.Close() })
	p.holdIO()
	return nil
}

// attach starts the relays between the host targets and the guest's
// streams, and the watcher that turns the guest's exit into Exited.
func (p *process) attach() {
	if p.io != nil {
		stdin, stdout, stderr := p.io.Files()
		if p.cfg.Terminal {
			p.ttyOut = stdout
		}
		for _, o := range []struct {
			f *os.File
			s agentapi.StdStream
		}{{stdout, agentapi.StdStream_STDOUT}, {stderr, agentapi.StdStream_STDERR}} {
			if o.f != nil {
				p.outputs.Add(1)
				go p.relayOutput(o.s, o.f)
			}
		}
		if stdin != nil {
			go p.relayStdin(stdin)
		}
	}
	go func() {
		p.outputs.Wait()
		close(p.drained)
	}()
	go p.watch()
	if p.c.fw.WaitExits {
		go p.waitExit()
	}
}

// watch waits for the guest's exit, holds it until the output is drained
// (at most the drain timeout), reports it, and then releases the host
// targets once the output is drained.
func (p *process) watch() {
	select {
	case <-p.guestExit.Done():
	case <-p.ctx.Done():
		return
	}
	if !p.lost.Load() && p.started.Load() {
		t := time.NewTimer(p.c.b.drain)
		select {
		case <-p.drained:
		case <-t.C:
			p.logger().Warnf("output not drained %s after the exit: reporting the exit; the output is still copied until EOF or delete", p.c.b.drain)
		case <-p.ctx.Done():
		}
		t.Stop()
	}
	p.exit.Set(p.guestExit.ExitStatus())
	select {
	case <-p.drained:
		p.finishIO()
	case <-p.ctx.Done():
	}
}

// finishIO releases the host targets of a process that exited and whose
// output is drained, in the keeper first (containerd's readers see EOF):
// everything but a terminal's stdin FIFO, which stays open (drained) until
// Delete, so that containerd never sees a broken pipe while it still reads
// the output (CRI ends a TTY's output copy when its stdin copy ends).
func (p *process) finishIO() {
	switch {
	case p.io == nil:
	case p.ttyOut != nil:
		p.unhold(streamStdout)
		_ = p.ttyOut.Close()
	default:
		p.unhold(p.streams()...)
		_ = p.io.Close()
	}
}

// exited records the exit the guest reported.
func (p *process) exited(code uint32, at time.Time) {
	if p.guestExit.Set(code, at) {
		p.logger().WithField("exit_status", code).Debug("guest reported the exit")
	}
}

// markLost ends a process whose guest is gone: exit sandbox.ExitCodeLost at
// once (unless the guest had reported its exit already), relays stopped.
func (p *process) markLost() {
	p.lost.Store(true)
	p.guestExit.Set(sandbox.ExitCodeLost, time.Now())
	p.exit.Set(p.guestExit.ExitStatus())
	p.unhold(p.streams()...)
	p.cancel()
}

// markEnded makes a process that had exited before the daemon restarted
// (containerd was told) exited again, with nothing to relay: what an
// earlier daemon still held for it (it died before the output was
// drained) is released.
func (p *process) markEnded(code uint32, at time.Time) {
	p.guestExit.Set(code, at)
	p.exit.Set(code, at)
	p.unhold(p.streams()...)
}

// Pid is the guest pid (0 before an exec started).
func (p *process) Pid() uint32 { return p.pid.Load() }

// Exited is closed once the guest reported the exit and the output is
// drained (or the drain timeout passed), or the guest is gone.
func (p *process) Exited() <-chan struct{} { return p.exit.Done() }

// Notify has f called once the exit is recorded (exit.Latch.Notify).
func (p *process) Notify(f func()) { p.exit.Notify(f) }

// ExitStatus is the exit code and time the guest reported.
func (p *process) ExitStatus() (uint32, time.Time) { return p.exit.ExitStatus() }

// Start starts the process in the guest.
func (p *process) Start(ctx context.Context) error {
	ctx, t, err := p.c.taskAPI(ctx)
	if err != nil {
		return err
	}
	// started before the call: a quick process's exit may reach the pump
	// before the answer, and its output must still be waited for
	p.started.Store(true)
	r, err := t.Start(ctx, &taskapi.StartRequest{ID: p.c.id, ExecID: p.execID})
	if err != nil {
		p.started.Store(false)
		return p.c.guestErr("start", err)
	}
	p.pid.Store(r.GetPid())
	return nil
}

// Kill signals the process in the guest (all: every process of the
// container). A guest that is gone took its processes with it.
func (p *process) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	if p.c.guestGone() {
		return nil
	}
	ctx, t, err := p.c.taskAPI(ctx)
	if err != nil {
		return err
	}
	_, err = t.Kill(ctx, &taskapi.KillRequest{ID: p.c.id, ExecID: p.execID, Signal: uint32(sig), All: all})
	return p.c.guestErr("kill", err)
}

// ResizePty resizes the process's terminal in the guest.
func (p *process) ResizePty(ctx context.Context, width, height uint32) error {
	ctx, t, err := p.c.taskAPI(ctx)
	if err != nil {
		return err
	}
	_, err = t.ResizePty(ctx, &taskapi.ResizePtyRequest{ID: p.c.id, ExecID: p.execID, Width: width, Height: height})
	return p.c.guestErr("resize pty", err)
}

// CloseStdin ends the process's stdin (CloseIO): the host side of the
// stdin relay is closed, so the relay delivers what it has read and then
// closes the guest's stdin, in order (a terminal gets ^D). Without a relay
// (the host target could not be reopened after a restart) CloseIO is
// forwarded.
func (p *process) CloseStdin(ctx context.Context) error {
	if p.cfg.Stdin == "" {
		return nil
	}
	p.closeOnce.Do(func() { close(p.closeReq) })
	if p.io != nil {
		p.io.CloseStdin()
		return nil
	}
	ctx, t, err := p.c.taskAPI(ctx)
	if err != nil {
		return err
	}
	_, err = t.CloseIO(ctx, &taskapi.CloseIORequest{ID: p.c.id, ExecID: p.execID, Stdin: true})
	return p.c.guestErr("close stdin", err)
}

// Delete deletes an exec in the guest and releases its host side.
// Idempotent.
func (p *process) Delete(ctx context.Context) error {
	if err := p.deleteInGuest(ctx); err != nil {
		return err
	}
	p.release()
	return nil
}

// deleteInGuest deletes the process in the guest: gone already (NotFound),
// or with its guest, is fine. A process the guest still runs (a SIGKILL
// just sent, as when a cut Create is rolled back) is waited for first.
func (p *process) deleteInGuest(ctx context.Context) error {
	if p.c.guestGone() {
		return nil
	}
	del := func() error {
		cctx, t, err := p.c.taskAPI(ctx)
		if err == nil {
			_, err = t.Delete(cctx, &taskapi.DeleteRequest{ID: p.c.id, ExecID: p.execID})
		}
		return err
	}
	err := del()
	if errdefs.IsFailedPrecondition(err) {
		t := time.NewTimer(killWait)
		select {
		case <-p.guestExit.Done():
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		err = del()
	}
	if err == nil || errdefs.IsNotFound(err) || p.c.guestGone() {
		return nil
	}
	return p.c.guestErr("delete", err)
}

// release ends the relays, closes the host targets (released in the
// keeper first) and stops watching the guest's events for the process.
// Idempotent.
func (p *process) release() {
	if !p.deleting.Swap(true) {
		p.unhold(p.streams()...)
	}
	p.cancel()
	if p.c.pump != nil {
		p.c.pump.remove(p)
	}
	if p.c.fw.StdioByPath {
		p.unbindStdio()
	}
}

// guestStdio is the stdio of the process as the guest gets it: the paths
// of the agentapi stdio contract (under the guest's IORoot), or of the
// files containerd's FIFOs are bound to (Forwarding.StdioByPath); no
// stderr with a terminal.
func (p *process) guestStdio() stdio.Config {
	if p.c.fw.StdioByPath {
		return p.pathStdio()
	}
	return agentStdio(p.c.g, p.c.id, p.execID, p.cfg)
}
