package wasmtime

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	wt "github.com/bytecodealliance/wasmtime-go/v39"
	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi/enginekit"
)

type instance struct {
	e   *engine
	m   *enginekit.Entry[*wt.Module]
	cfg *wasi.RunConfig

	kill     chan struct{}
	killOnce sync.Once
	done     chan struct{}
	result   wasi.Result

	// flagMu guards flag against a Kill racing the store's end.
	flagMu   sync.Mutex
	flag     killFlag
	flagLive bool

	stdin *enginekit.Stdin
	cpu   enginekit.CPUMeter
	mem   atomic.Uint64 // linear memory bytes, sampled at host calls

	// Owned by the instance's goroutine (host calls run on it).
	exited     bool
	exitCode   uint32
	stdinNonbl bool
	tramp      *wt.Instance
}

func newInstance(e *engine, m *enginekit.Entry[*wt.Module], cfg *wasi.RunConfig) *instance {
	return &instance{
		e:     e,
		m:     m,
		cfg:   cfg,
		kill:  make(chan struct{}),
		done:  make(chan struct{}),
		stdin: enginekit.NewStdin(cfg.Stdin),
	}
}

func (i *instance) Done() <-chan struct{} { return i.done }

func (i *instance) Result() wasi.Result {
	<-i.done
	return i.result
}

func (i *instance) Stats() wasi.Stats {
	lim := uint64(0)
	if i.cfg.MemoryLimit > 0 {
		lim = uint64(i.cfg.MemoryLimit)
	}
	return wasi.Stats{MemoryBytes: i.mem.Load(), MemoryLimit: lim, CPU: i.cpu.Read()}
}

// Kill sets the store's flag and bumps the engine's epoch: guest code traps
// at its next epoch check (mg_epoch), a host call waiting on the kill
// channel returns a trap at once.
func (i *instance) Kill() {
	i.killOnce.Do(func() {
		close(i.kill)
		i.flagMu.Lock()
		if i.flagLive {
			// Under flagMu: the store (and so the engine, which Close
			// keeps until every store is gone) is still alive.
			i.flag.set()
			i.e.eng.IncrementEpoch()
		}
		i.flagMu.Unlock()
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

// Run is the instance's goroutine, on one locked OS thread from
// instantiation to the end (a host call runs on the thread of the guest
// that made it anyway, inside cgo). The thread is unlocked at the end and
// reused: ending it with the goroutine would give its native stack back,
// but measured twice the time to end 200 killed instances (30 ms, not 15).
func (i *instance) Run(ready chan<- error) {
	defer close(i.done) // also when Start fails: Close may be waiting
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	i.cpu.Start()

	store := wt.NewStoreWithData(i.e.eng, i)
	i.flagMu.Lock()
	i.flag = newKillFlag()
	i.flagLive = true
	i.flagMu.Unlock()
	setEpochCallback(store, i.flag)
	store.SetEpochDeadline(1)
	if i.cfg.MemoryLimit > 0 {
		store.Limiter(i.cfg.MemoryLimit, -1, -1, -1, -1)
	}
	end := func() {
		i.flagMu.Lock()
		store.Close()
		i.flag.free()
		i.flagLive = false
		i.flagMu.Unlock()
		i.cpu.Stop()
		i.stdin.Abort() // the pump goroutine must not outlive the run
		i.m.Finished(i)
	}

	wc, err := i.wasiConfig()
	if err != nil {
		end()
		ready <- err
		return
	}
	store.SetWasi(wc)
	inst, err := i.e.linker.Instantiate(store, i.m.Module())
	if err != nil {
		end()
		ready <- fmt.Errorf("wasmtime: instantiate: %v: %w", err, errdefs.ErrInvalidArgument)
		return
	}
	start := inst.GetFunc(store, "_start")
	if start == nil {
		end()
		ready <- fmt.Errorf("wasmtime: module has no _start export: %w: %w", wasi.ErrInvalidModule, errdefs.ErrInvalidArgument)
		return
	}
	var memory *wt.Memory
	if ex := inst.GetExport(store, "memory"); ex != nil {
		memory = ex.Memory()
	}
	if memory != nil {
		i.mem.Store(uint64(memory.DataSize(store)))
	}
	ready <- nil

	var callErr error
	if !i.killed() {
		callErr = call(func() error { _, err := start.Call(store); return err })
	}
	if memory != nil {
		i.mem.Store(uint64(memory.DataSize(store)))
	}
	i.result = i.resultOf(callErr)
	end()
}

func (i *instance) resultOf(err error) wasi.Result {
	switch {
	case i.exited:
		r := wasi.Result{ExitCode: i.exitCode, ExitedAt: time.Now()}
		r.OutOfMemory = r.ExitCode != 0 && enginekit.NearLimit(uint64(max(i.cfg.MemoryLimit, 0)), i.mem.Load())
		return r
	case i.killed():
		return enginekit.Killed()
	case err == nil:
		return wasi.Result{ExitedAt: time.Now()}
	}
	var we *wt.Error
	if errors.As(err, &we) {
		if c, ok := we.ExitStatus(); ok {
			return wasi.Result{ExitCode: enginekit.ExitCode(uint32(c)), ExitedAt: time.Now()}
		}
	}
	msg := err.Error()
	var tr *wt.Trap
	if errors.As(err, &tr) {
		msg = tr.Message()
	}
	r := enginekit.Trapped(i.cfg.Stderr, msg)
	r.OutOfMemory = enginekit.NearLimit(uint64(max(i.cfg.MemoryLimit, 0)), i.mem.Load())
	return r
}

func (i *instance) wasiConfig() (*wt.WasiConfig, error) {
	wc := wt.NewWasiConfig()
	args := i.cfg.Args
	if len(args) == 0 {
		args = []string{"main.wasm"}
	}
	wc.SetArgv(args)
	wc.SetEnv(enginekit.SplitEnv(enginekit.Env(i.cfg)))
	for _, p := range i.cfg.Preopens {
		dirPerms, filePerms := wt.DIR_READ|wt.DIR_WRITE, wt.FILE_READ|wt.FILE_WRITE
		if p.ReadOnly {
			dirPerms, filePerms = wt.DIR_READ, wt.FILE_READ
		}
		guest := p.Guest
		if guest == "" {
			guest = "/"
		}
		if err := wc.PreopenDir(p.Host, guest, dirPerms, filePerms); err != nil {
			return nil, fmt.Errorf("wasmtime: preopen %s at %s: %v: %w", p.Host, guest, err, errdefs.ErrInvalidArgument)
		}
	}
	// No stdio on the WasiConfig: fd 0 reads and fd 1/2 writes go through
	// the shadows to cfg's reader and writers.
	return wc, nil
}

// callOrig runs the original WASI function name and returns its errno.
//
// wasmtime's WASI functions find guest memory through their caller's
// "memory" export, and a Func.Call from Go has no wasm caller. So the
// originals are called through a trampoline instance (one per store, made
// on first use): a tiny module that imports the guest's memory and the
// original functions, re-exports the memory and exports one forwarding
// function per original.
func (i *instance) callOrig(c *wt.Caller, name string, args ...interface{}) ([]wt.Val, *wt.Trap) {
	if i.tramp == nil {
		if err := i.newTrampoline(c); err != nil {
			return nil, wt.NewTrap("magnetar: wasi trampoline: " + err.Error())
		}
	}
	f := i.tramp.GetFunc(c, name)
	if f == nil {
		return errno(enginekit.ErrnoNotsup), nil
	}
	v, err := f.Call(c, args...)
	if err != nil {
		return nil, wt.NewTrap(strings.TrimSpace(err.Error()))
	}
	n, _ := v.(int32)
	return errno(n), nil
}

func (i *instance) newTrampoline(c *wt.Caller) error {
	ex := c.GetExport("memory")
	if ex == nil || ex.Memory() == nil {
		return errors.New("the module exports no memory")
	}
	imports := []wt.AsExtern{ex.Memory()}
	for _, name := range trampolined {
		o := i.e.orig.Get(c, wasiModule, name)
		if o == nil || o.Func() == nil {
			return fmt.Errorf("no wasi %s", name)
		}
		imports = append(imports, o.Func())
	}
	inst, err := wt.NewInstance(c, i.e.tramp, imports)
	if err != nil {
		return err
	}
	i.tramp = inst
	return nil
}

func errno(n int32) []wt.Val { return []wt.Val{wt.ValI32(n)} }

var errKilledTrap = "magnetar: instance killed"

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
