package runcproc

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// killWait bounds the wait for a SIGKILLed init in Terminate.
const killWait = 5 * time.Second

// Init is a container's init process and the runc calls on the container.
// It implements task.Process (but Delete: see Terminate and Release) and
// the runc parts of task.Container and task.Pauser; a backend embeds it.
type Init struct {
	id     string
	dir    string
	r      *runc.Runc
	waiter Waiter
	io     *stdio.IO

	// OnExit, if set before Create or Watch, is called once the init has
	// exited and its output is drained, before Exited is closed.
	OnExit func(Exit)
	// Namespace is the container's containerd namespace, given with its id
	// to a binary:// logger of the init and of the execs; set before Create
	// and Exec.
	Namespace string
	// Hooks adapt the init to runsc; the zero value is runc. Set them
	// before Create or Watch.
	Hooks Hooks

	status
}

// Hooks adapt Init to a runtime with runc's command line whose containers
// are not host processes of their own: runsc, where every container of a
// pod runs inside the pod's one sandbox process, the pid `create` writes
// is that sandbox's (no exit of the container can be learnt from it), and
// a container joining a sandbox takes its stdio at `start`, not at
// `create`. Everything else (stdio, console socket, pid files, exec, the
// calls acting on the container, errors) stays Init's.
type Hooks struct {
	// WaitInit, if set, learns the init's exit instead of the Waiter,
	// which still watches the exec processes (a host process each, with
	// runsc too). pid is what the runtime wrote to the pid file.
	WaitInit func(pid int) (Waited, error)
	// Start, if set, starts the init instead of `runc start`, and the
	// init's stdio goes to it rather than to `create`: io is the init's
	// (with a terminal, whose console came through the console socket at
	// create, the streams to give are /dev/null). Its error is returned
	// as it is.
	Start func(ctx context.Context, io *stdio.IO) error
	// ExecArgs, if set, are more flags of `exec` for exec id (runsc:
	// --internal-pid-file, the exec's pid inside the sandbox).
	ExecArgs func(id string) []string
}

// New makes the init of container id. dir is runc's bundle (config.json;
// init and exec pid files go there too); r's Log is the log read for runc's
// errors; w learns the exits of the init and of the execs.
func New(id, dir string, r *runc.Runc, w Waiter) *Init {
	return &Init{id: id, dir: dir, r: r, waiter: w}
}

// error is Error for a call of the container's runtime.
func (p *Init) error(op, logFile string, err error) error {
	name := filepath.Base(p.r.Command)
	if p.r.Command == "" {
		name = runc.DefaultCommand
	}
	return Error(name, op, logFile, err)
}

// ID is the container's id.
func (p *Init) ID() string { return p.id }

// IO is the init's stdio: nil before Create and after a Watch.
func (p *Init) IO() *stdio.IO { return p.io }

// Create opens the init's stdio and runs `runc create` (with a console
// socket for a terminal; --no-pivot if noPivot), then watches the init.
// After a failure, Release frees what was taken.
func (p *Init) Create(ctx context.Context, cfg stdio.Config, noPivot bool) error {
	cfg.ID, cfg.Namespace = p.id, p.Namespace
	var err error
	if p.io, err = stdio.Open(ctx, cfg); err != nil {
		return err
	}
	opts := &runc.CreateOpts{IO: p.io, PidFile: filepath.Join(p.dir, "init.pid"), NoPivot: noPivot}
	if p.Hooks.Start != nil {
		opts.IO = nil // the stdio is Start's
	}
	pid, wait, err := p.spawn(cfg.Terminal, p.io, opts.PidFile, "init", p.watchInit, func(sock runc.ConsoleSocket) error {
		opts.ConsoleSocket = sock
		if err := p.r.Create(ctx, p.id, p.dir, opts); err != nil {
			return p.error("create", p.r.Log, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	p.setPid(pid)
	p.watch(wait, p.io, p.OnExit)
	return nil
}

// watchInit watches the init: through Hooks.WaitInit when set, else the
// Waiter.
func (p *Init) watchInit(pid int, since time.Time) (Waited, error) {
	if p.Hooks.WaitInit != nil {
		return p.Hooks.WaitInit(pid)
	}
	return p.waiter.Watch(pid, since)
}

// spawn makes call, the runc call that starts a process (create, exec):
// with a console socket for a terminal (nil without), whose master then goes
// to io. The pid that runc wrote to pidFile is then watched with watch.
// what names the process in errors.
func (p *Init) spawn(terminal bool, io *stdio.IO, pidFile, what string, watch func(int, time.Time) (Waited, error), call func(runc.ConsoleSocket) error) (int, Waited, error) {
	var sock *runc.Socket
	var cs runc.ConsoleSocket // nil, not a nil *runc.Socket, without a terminal
	if terminal {
		var err error
		if sock, err = runc.NewTempConsoleSocket(); err != nil {
			return 0, nil, fmt.Errorf("console socket: %w", err)
		}
		defer sock.Close()
		cs = sock
	}
	since := time.Now()
	if err := call(cs); err != nil {
		return 0, nil, err
	}
	if sock != nil {
		con, err := sock.ReceiveMaster()
		if err != nil {
			return 0, nil, fmt.Errorf("console: %w", err)
		}
		io.AttachConsole(con)
	}
	pid, err := runc.ReadPidFile(pidFile)
	if err != nil {
		return 0, nil, fmt.Errorf("reading %s pid: %w", what, err)
	}
	wait, err := watch(pid, since)
	if err != nil {
		return 0, nil, err
	}
	return pid, wait, nil
}

// Watch adopts an init found again (after a restart): no stdio.
func (p *Init) Watch(pid int, wait Waited) {
	p.setPid(pid)
	p.watch(wait, nil, p.OnExit)
}

// Start runs `runc start` (Hooks.Start instead when set).
func (p *Init) Start(ctx context.Context) error {
	if p.Hooks.Start != nil {
		return p.Hooks.Start(ctx, p.io)
	}
	if err := p.r.Start(ctx, p.id); err != nil {
		return p.error("start", p.r.Log, err)
	}
	return nil
}

// Kill runs `runc kill` (--all if all). Signalling an init that has exited
// (or that runc finds not running) is not an error, but for all.
func (p *Init) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	if p.exited() && !all {
		return nil
	}
	if err := p.r.Kill(ctx, p.id, int(sig), &runc.KillOpts{All: all}); err != nil {
		if p.exited() {
			return nil // exited meanwhile
		}
		if gone(LastError(p.r.Log)) {
			return nil
		}
		return p.error("kill", p.r.Log, err)
	}
	return nil
}

// ResizePty resizes the init's terminal.
func (p *Init) ResizePty(ctx context.Context, w, h uint32) error {
	if p.io == nil {
		return fmt.Errorf("container %s: no terminal attached (daemon restarted?): %w", p.id, errdefs.ErrFailedPrecondition)
	}
	return p.io.Resize(w, h)
}

// CloseStdin closes the init's stdin.
func (p *Init) CloseStdin(ctx context.Context) error {
	if p.io != nil {
		p.io.CloseStdin()
	}
	return nil
}

// Terminate makes sure the init has exited: a created, never started init
// is SIGKILLed (with all the container's processes) and waited for.
func (p *Init) Terminate(ctx context.Context) error {
	if p.exited() {
		return nil
	}
	_ = p.r.Kill(ctx, p.id, int(syscall.SIGKILL), &runc.KillOpts{All: true})
	select {
	case <-p.Exited():
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("container %s did not exit after SIGKILL: %w", p.id, errdefs.ErrUnavailable)
	}
}

// releaseTimeout bounds the `runc delete` of Release.
const releaseTimeout = 30 * time.Second

// Release runs `runc delete --force` and closes the init's stdio;
// idempotent. The delete runs to its end even when ctx ends (a containerd
// killed in the middle of its RemoveContainer): the task's record goes,
// and runc's state and cgroups must go with it.
func (p *Init) Release(ctx context.Context) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := p.r.Delete(dctx, p.id, &runc.DeleteOpts{Force: true}); err != nil {
		if msg := LastError(p.r.Log); msg != "" && !strings.Contains(msg, "does not exist") {
			log.G(ctx).WithField("container_id", p.id).Warnf("%s delete: %s", filepath.Base(p.r.Command), msg)
		}
	}
	if p.io != nil {
		p.io.Close()
	}
}

// Pids runs `runc ps`.
func (p *Init) Pids(ctx context.Context) ([]*tasktypes.ProcessInfo, error) {
	pids, err := p.r.Ps(ctx, p.id)
	if err != nil {
		return nil, p.error("ps", p.r.Log, err)
	}
	out := make([]*tasktypes.ProcessInfo, 0, len(pids))
	for _, pid := range pids {
		out = append(out, &tasktypes.ProcessInfo{Pid: uint32(pid)})
	}
	return out, nil
}

// Update runs `runc update`.
func (p *Init) Update(ctx context.Context, r *specs.LinuxResources, _ map[string]string) error {
	if err := p.r.Update(ctx, p.id, r); err != nil {
		return p.error("update", p.r.Log, err)
	}
	return nil
}

// Pause runs `runc pause`.
func (p *Init) Pause(ctx context.Context) error {
	if err := p.r.Pause(ctx, p.id); err != nil {
		return p.error("pause", p.r.Log, err)
	}
	return nil
}

// Resume runs `runc resume`.
func (p *Init) Resume(ctx context.Context) error {
	if err := p.r.Resume(ctx, p.id); err != nil {
		return p.error("resume", p.r.Log, err)
	}
	return nil
}

// Exec prepares an exec process; its Start runs it.
func (p *Init) Exec(ctx context.Context, id string, sp *specs.Process, io stdio.Config) (task.Process, error) {
	io.ID, io.Namespace = id, p.Namespace
	return &Exec{init: p, id: id, spec: sp, cfg: io}, nil
}
