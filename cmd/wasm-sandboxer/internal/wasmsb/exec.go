package wasmsb

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// execProc is an exec: a new instance of a module of the container's rootfs
// (args[0] of the exec spec, resolved as for the container), with the
// container's preopens and memory limit, its own args, env, cwd, stdio and
// exit code. It shares nothing else with the container's instance (WASI
// preview1 instances share no memory).
type execProc struct {
	exit.Latch
	c   *ctr
	id  string
	mod wasi.Module
	run wasi.RunConfig
	cfg stdio.Config

	mu      sync.Mutex
	io      *stdio.IO
	inst    wasi.Instance
	final   usage
	deleted bool
}

var _ task.Process = (*execProc)(nil)

// Exec reads and loads the exec's module now, so that a missing or invalid
// module fails the exec request itself; Start runs it.
func (c *ctr) Exec(ctx context.Context, id string, sp *specs.Process, io stdio.Config) (task.Process, error) {
	if io.Terminal {
		return nil, fmt.Errorf("terminal: a wasm module has no terminal (exec without -t): %w", errdefs.ErrNotImplemented)
	}
	if c.mod == nil {
		return nil, fmt.Errorf("container %s: not running (daemon restarted): %w", c.id, errdefs.ErrFailedPrecondition)
	}
	args := sp.Args
	if len(args) == 0 {
		return nil, fmt.Errorf("exec %s: args: empty (a command line is not supported): %w", id, errdefs.ErrInvalidArgument)
	}
	guest, mod, err := c.load(ctx, args, sp.Cwd, sp.Env)
	if err != nil {
		return nil, fmt.Errorf("exec %s: %w", id, err)
	}
	io.ID, io.Namespace = id, c.ns
	e := &execProc{c: c, id: id, mod: mod, cfg: io,
		run: wasi.RunConfig{Args: args, Env: sp.Env, Cwd: sp.Cwd, Preopens: c.run.Preopens}}
	c.mu.Lock()
	c.execs[id] = e
	c.mu.Unlock()
	log.G(ctx).WithFields(log.Fields{"container_id": c.id, "exec_id": id, "module": guest}).Debug("wasm exec created")
	return e, nil
}

func (e *execProc) Pid() uint32 { return 0 }

func (e *execProc) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inst != nil || e.deleted {
		return fmt.Errorf("exec %s already started: %w", e.id, errdefs.ErrFailedPrecondition)
	}
	if e.IsSet() {
		return fmt.Errorf("exec %s was killed before it started: %w", e.id, errdefs.ErrFailedPrecondition)
	}
	ioh, err := stdio.Open(ctx, e.cfg)
	if err != nil {
		return err
	}
	cfg := e.run
	e.c.mu.Lock()
	cfg.MemoryLimit = e.c.memLimit
	e.c.mu.Unlock()
	setStdio(&cfg, ioh)
	inst, err := e.mod.Start(log.WithLogger(e.c.b.life, log.G(ctx)), &cfg)
	if err != nil {
		ioh.Close()
		return fmt.Errorf("starting exec %s: %w", e.id, err)
	}
	e.io, e.inst = ioh, inst
	go func() {
		<-inst.Done()
		res := inst.Result()
		st := inst.Stats()
		ioh.Close()
		e.mu.Lock()
		e.final = usage{cpu: st.CPU}
		e.mu.Unlock()
		e.Set(res.ExitCode, res.ExitedAt)
	}()
	return nil
}

func (e *execProc) Kill(ctx context.Context, sig syscall.Signal, _ bool) error {
	if ignored(sig) {
		return nil
	}
	e.mu.Lock()
	inst := e.inst
	e.mu.Unlock()
	if inst == nil {
		e.Set(wasi.ExitCodeKilled, time.Now())
		return nil
	}
	inst.Kill()
	return nil
}

func (e *execProc) ResizePty(ctx context.Context, w, h uint32) error {
	return fmt.Errorf("exec %s has no terminal: %w", e.id, errdefs.ErrFailedPrecondition)
}

func (e *execProc) CloseStdin(ctx context.Context) error {
	e.mu.Lock()
	ioh := e.io
	e.mu.Unlock()
	if ioh != nil {
		ioh.CloseStdin()
	}
	return nil
}

func (e *execProc) usage() usage {
	e.mu.Lock()
	inst, final := e.inst, e.final
	e.mu.Unlock()
	select {
	case <-e.Done():
		return final
	default:
	}
	if inst == nil {
		return usage{}
	}
	s := inst.Stats()
	return usage{mem: s.MemoryBytes, cpu: s.CPU}
}

// Delete kills the exec if it still runs and releases it. Idempotent.
func (e *execProc) Delete(ctx context.Context) error {
	select {
	case <-e.Done():
	default:
		_ = e.Kill(ctx, syscall.SIGKILL, false)
		select {
		case <-e.Done():
		case <-time.After(killWait):
			return fmt.Errorf("exec %s did not end %s after kill: %w", e.id, killWait, errdefs.ErrUnavailable)
		}
	}
	e.mu.Lock()
	already := e.deleted
	e.deleted = true
	ioh := e.io
	e.mu.Unlock()
	if already {
		return nil
	}
	if ioh != nil {
		ioh.Close()
	}
	e.c.b.keep.put(e.c.eng.Name(), e.mod)
	e.c.mu.Lock()
	delete(e.c.execs, e.id)
	e.c.mu.Unlock()
	return nil
}
