package wazero

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	wz "github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	expsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi/enginekit"
)

type instance struct {
	ent *enginekit.Entry[*module]
	m   *module
	cfg *wasi.RunConfig

	ctx      context.Context
	cancel   context.CancelFunc
	kill     chan struct{}
	killOnce sync.Once
	done     chan struct{}
	result   wasi.Result

	stdin *enginekit.Stdin
	cpu   enginekit.CPUMeter
	mem   atomic.Uint64
	oom   atomic.Bool
}

func newInstance(ent *enginekit.Entry[*module], cfg *wasi.RunConfig) *instance {
	i := &instance{
		ent:   ent,
		m:     ent.Module(),
		cfg:   cfg,
		kill:  make(chan struct{}),
		done:  make(chan struct{}),
		stdin: enginekit.NewStdin(cfg.Stdin),
	}
	// The instance's own lifetime: Start's ctx only bounds the start.
	i.ctx, i.cancel = context.WithCancel(context.Background())
	i.ctx = experimental.WithMemoryAllocator(i.ctx, experimental.MemoryAllocatorFunc(i.allocate))
	return i
}

func (i *instance) Done() <-chan struct{} { return i.done }

func (i *instance) Result() wasi.Result {
	<-i.done
	return i.result
}

func (i *instance) Stats() wasi.Stats {
	return wasi.Stats{MemoryBytes: i.mem.Load(), MemoryLimit: uint64(max(i.cfg.MemoryLimit, 0)), CPU: i.cpu.Read()}
}

// Kill cancels the instance's context (WithCloseOnContextDone: guest code
// exits at its next check) and wakes every wait of ours (sleep, stdin,
// stdio writes) through the kill channel.
func (i *instance) Kill() {
	i.killOnce.Do(func() {
		close(i.kill)
		i.cancel()
		i.stdin.Abort()
	})
}

func (i *instance) killed() bool {
	select {
	case <-i.kill:
		return true
	default:
		return false
	}
}

// blocking runs f with the OS thread given back: CPU is counted only while
// the instance runs on its locked thread, and an idle instance holds no
// thread (wazero's host calls are plain Go).
func (i *instance) blocking(f func()) {
	i.cpu.Stop()
	runtime.UnlockOSThread()
	defer func() {
		runtime.LockOSThread()
		i.cpu.Start()
	}()
	f()
}

func (i *instance) Run(ready chan<- error) {
	defer close(i.done) // also when Start fails: Close may be waiting
	runtime.LockOSThread()
	i.cpu.Start()
	end := func() {
		i.cpu.Stop()
		runtime.UnlockOSThread()
		i.stdin.Abort() // the pump goroutine must not outlive the run
		i.ent.Finished(i)
	}
	mod, err := i.m.rt.InstantiateModule(i.ctx, i.m.cm, i.moduleConfig())
	if err != nil {
		end()
		i.cancel()
		ready <- fmt.Errorf("wazero: instantiate: %v: %w", err, errdefs.ErrInvalidArgument)
		return
	}
	start := mod.ExportedFunction("_start")
	if start == nil {
		mod.Close(context.Background())
		end()
		i.cancel()
		ready <- fmt.Errorf("wazero: module has no _start export: %w: %w", wasi.ErrInvalidModule, errdefs.ErrInvalidArgument)
		return
	}
	if mem := mod.Memory(); mem != nil {
		i.mem.Store(uint64(mem.Size()))
	}
	ready <- nil

	var callErr error
	if !i.killed() {
		callErr = call(func() error { _, err := start.Call(i.ctx); return err })
	}
	mod.Close(context.Background())
	i.result = i.resultOf(callErr)
	end()
	i.cancel()
}

// resultOf maps the end of _start. A run that ends after a Kill is killed,
// however it ended: a guest whose stdin read or sleep the Kill cut short
// may return or exit on its own before wazero's next context check.
func (i *instance) resultOf(err error) wasi.Result {
	if i.killed() {
		return enginekit.Killed()
	}
	var ee *sys.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if code == sys.ExitCodeContextCanceled || code == sys.ExitCodeDeadlineExceeded {
			return enginekit.Killed()
		}
		r := wasi.Result{ExitCode: enginekit.ExitCode(code), ExitedAt: time.Now()}
		r.OutOfMemory = code != 0 && i.oom.Load()
		return r
	}
	if err == nil {
		return wasi.Result{ExitedAt: time.Now()}
	}
	r := enginekit.Trapped(i.cfg.Stderr, err.Error())
	r.OutOfMemory = i.oom.Load()
	return r
}

func (i *instance) moduleConfig() wz.ModuleConfig {
	args := i.cfg.Args
	if len(args) == 0 {
		args = []string{"main.wasm"}
	}
	mc := wz.NewModuleConfig().
		WithName("").
		WithStartFunctions(). // _start is called by run, after Start returned
		WithArgs(args...).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(i.nanosleep).
		WithStdin(stdinReader{i}).
		WithStdout(writer{i, i.cfg.Stdout}).
		WithStderr(writer{i, i.cfg.Stderr})
	keys, values := enginekit.SplitEnv(enginekit.Env(i.cfg))
	for k := range keys {
		mc = mc.WithEnv(keys[k], values[k])
	}
	fsc := wz.NewFSConfig()
	for _, p := range i.cfg.Preopens {
		guest := p.Guest
		if guest == "" {
			guest = "/"
		}
		if p.ReadOnly {
			fsc = fsc.WithReadOnlyDirMount(p.Host, guest)
		} else {
			fsc = fsc.WithDirMount(p.Host, guest)
		}
	}
	return mc.WithFSConfig(fsc)
}

// nanosleep is a real sleep that a Kill ends (wazero's own
// WithSysNanosleep is an uninterruptible time.Sleep).
func (i *instance) nanosleep(ns int64) {
	if ns <= 0 {
		return
	}
	i.blocking(func() {
		t := time.NewTimer(time.Duration(ns))
		defer t.Stop()
		select {
		case <-t.C:
		case <-i.kill:
		}
	})
}

// stdinReader is fd 0: the interruptible stdin, and pollable, so that
// poll_oneoff on fd 0 waits here (with the kill channel) too.
type stdinReader struct{ i *instance }

func (r stdinReader) Read(p []byte) (n int, err error) {
	r.i.blocking(func() { n, err = r.i.stdin.Read(p, r.i.kill) })
	if err == nil && n == 0 && len(p) > 0 {
		err = io.EOF
	}
	return n, err
}

func (r stdinReader) Poll(flag expsys.Pflag, timeoutMillis int32) (ready bool, errno expsys.Errno) {
	if flag != expsys.POLLIN {
		return false, expsys.ENOTSUP
	}
	if r.i.stdin.Ready() {
		return true, 0
	}
	if timeoutMillis == 0 {
		return false, 0
	}
	var timer <-chan time.Time
	if timeoutMillis > 0 {
		t := time.NewTimer(time.Duration(timeoutMillis) * time.Millisecond)
		defer t.Stop()
		timer = t.C
	}
	var wake enginekit.Wake
	r.i.blocking(func() { wake = r.i.stdin.Wait(r.i.kill, timer, true) })
	switch wake {
	case enginekit.WakeStdin:
		return true, 0
	case enginekit.WakeKilled:
		return false, expsys.EINTR
	}
	return false, 0
}

// writer is fd 1 or 2: writes a Kill does not wait for.
type writer struct {
	i *instance
	w io.Writer
}

func (w writer) Write(p []byte) (n int, err error) {
	if w.w == nil {
		return len(p), nil
	}
	w.i.blocking(func() { n, err = enginekit.Write(w.w, p, w.i.kill) })
	return n, err
}

// allocate backs the instance's linear memory (wazero's experimental
// MemoryAllocator, given through the instance's context): it enforces
// RunConfig.MemoryLimit (a refused grow makes memory.grow return -1), sees
// the refusal (Result.OutOfMemory), and keeps the size in an atomic for
// Stats.
func (i *instance) allocate(capacity, maxBytes uint64) experimental.LinearMemory {
	return &linearMemory{i: i, max: maxBytes, limit: uint64(max(i.cfg.MemoryLimit, 0))}
}

type linearMemory struct {
	i     *instance
	buf   []byte
	max   uint64
	limit uint64
}

func (m *linearMemory) Reallocate(size uint64) []byte {
	// The first call (the module's declared minimum, checked against the
	// limit by Start) must succeed: wazero does not expect it to fail.
	if m.buf != nil && m.limit > 0 && size > m.limit {
		m.i.oom.Store(true)
		return nil
	}
	if size > m.max {
		return nil
	}
	if size > uint64(cap(m.buf)) {
		c := max(size, 2*uint64(cap(m.buf)))
		c = min(c, m.max)
		if m.limit > 0 {
			c = min(c, max(m.limit, size))
		}
		nb := make([]byte, size, c)
		copy(nb, m.buf)
		m.buf = nb
	} else {
		m.buf = m.buf[:size]
	}
	m.i.mem.Store(size)
	return m.buf
}

func (m *linearMemory) Free() { m.buf = nil }

// call runs f and turns a panic in it (a bug in a host function) into an
// error, so that one instance's failure never takes the daemon down.
func call(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("magnetar: host function panicked: %v", p)
		}
	}()
	return f()
}
