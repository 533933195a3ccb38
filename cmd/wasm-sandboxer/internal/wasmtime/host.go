package wasmtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	wt "github.com/bytecodealliance/wasmtime-go/v39"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi/enginekit"
)

const wasiModule = "wasi_snapshot_preview1"

var le = binary.LittleEndian

// monoBase is the zero of the monotonic clock the shadows give guests
// (clock_time_get and poll_oneoff's absolute deadlines agree on it).
var monoBase = time.Now()

func monotonic() int64 { return int64(time.Since(monoBase)) + 1 }

// trampolined are the original WASI functions the shadows call for the
// fds they leave alone, with their parameter counts (all i32 -> i32).
var trampolined = []string{"fd_write", "fd_read", "fd_fdstat_set_flags", "fd_fdstat_get"}

var trampolineParams = map[string]int{"fd_write": 4, "fd_read": 4, "fd_fdstat_set_flags": 2, "fd_fdstat_get": 2}

// trampolineWAT is the module through which callOrig calls the originals.
func trampolineWAT() string {
	var b strings.Builder
	b.WriteString("(module\n  (import \"env\" \"memory\" (memory 0))\n")
	for _, name := range trampolined {
		fmt.Fprintf(&b, "  (import %q %q (func $%s (param%s) (result i32)))\n", wasiModule, name, name, strings.Repeat(" i32", trampolineParams[name]))
	}
	b.WriteString("  (export \"memory\" (memory 0))\n")
	for _, name := range trampolined {
		fmt.Fprintf(&b, "  (func (export %q) (param%s) (result i32)", name, strings.Repeat(" i32", trampolineParams[name]))
		for k := 0; k < trampolineParams[name]; k++ {
			fmt.Fprintf(&b, " (local.get %d)", k)
		}
		fmt.Fprintf(&b, " (call $%s))\n", name)
	}
	b.WriteString(")\n")
	return b.String()
}

// defineShadows defines, over the linker's WASI, the calls that can block
// or that need our own semantics:
//
//   - proc_exit records the code (wasmtime's own refuses 126..255) and
//     ends the run with a trap the instance recognises;
//   - fd_write on fd 1 and 2 writes to the RunConfig's writers;
//   - fd_read on fd 0 reads the interruptible stdin (O_NONBLOCK honoured:
//     fd_fdstat_set_flags/fd_fdstat_get on fd 0 are shadowed for it);
//   - poll_oneoff waits in Go, on the instance's kill channel as well;
//   - clock_time_get, so that poll_oneoff's absolute deadlines and the
//     guest's clocks agree, with the instance's own CPU clock.
//
// Every other fd goes to the original function.
func defineShadows(l *wt.Linker) error {
	i32, i64 := wt.NewValType(wt.KindI32), wt.NewValType(wt.KindI64)
	ty := func(params ...*wt.ValType) *wt.FuncType {
		return wt.NewFuncType(params, []*wt.ValType{i32})
	}
	defs := []struct {
		name string
		ty   *wt.FuncType
		fn   func(*instance, *wt.Caller, []wt.Val) ([]wt.Val, *wt.Trap)
	}{
		{"proc_exit", wt.NewFuncType([]*wt.ValType{i32}, nil), (*instance).procExit},
		{"fd_write", ty(i32, i32, i32, i32), (*instance).fdWrite},
		{"fd_read", ty(i32, i32, i32, i32), (*instance).fdRead},
		{"fd_fdstat_set_flags", ty(i32, i32), (*instance).fdstatSetFlags},
		{"fd_fdstat_get", ty(i32, i32), (*instance).fdstatGet},
		{"poll_oneoff", ty(i32, i32, i32, i32), (*instance).pollOneoff},
		{"clock_time_get", ty(i32, i64, i32), (*instance).clockTimeGet},
	}
	for _, d := range defs {
		fn := d.fn
		err := l.FuncNew(wasiModule, d.name, d.ty, func(c *wt.Caller, args []wt.Val) ([]wt.Val, *wt.Trap) {
			i, ok := c.Data().(*instance)
			if !ok {
				return nil, wt.NewTrap("magnetar: host call outside an instance")
			}
			if i.killed() {
				return nil, wt.NewTrap(errKilledTrap)
			}
			return fn(i, c, args)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// guestMemory is the caller's exported memory, sampled for Stats.
func (i *instance) guestMemory(c *wt.Caller) []byte {
	ex := c.GetExport("memory")
	if ex == nil || ex.Memory() == nil {
		return nil
	}
	b := ex.Memory().UnsafeData(c)
	i.mem.Store(uint64(len(b)))
	return b
}

func span(mem []byte, ptr, n uint32) ([]byte, bool) {
	end := uint64(ptr) + uint64(n)
	if end > uint64(len(mem)) {
		return nil, false
	}
	return mem[ptr:end], true
}

func (i *instance) procExit(c *wt.Caller, args []wt.Val) ([]wt.Val, *wt.Trap) {
	i.guestMemory(c)
	i.exited = true
	i.exitCode = enginekit.ExitCode(uint32(args[0].I32()))
	return nil, wt.NewTrap("magnetar: proc_exit")
}

// iovecs walks a WASI iovec array.
func iovecs(mem []byte, iovs, n uint32, f func([]byte)) bool {
	for k := uint32(0); k < n; k++ {
		iov, ok := span(mem, iovs+8*k, 8)
		if !ok {
			return false
		}
		b, ok := span(mem, le.Uint32(iov), le.Uint32(iov[4:]))
		if !ok {
			return false
		}
		f(b)
	}
	return true
}

func (i *instance) fdWrite(c *wt.Caller, args []wt.Val) ([]wt.Val, *wt.Trap) {
	fd := args[0].I32()
	if fd != 1 && fd != 2 {
		return i.callOrig(c, "fd_write", args[0].I32(), args[1].I32(), args[2].I32(), args[3].I32())
	}
	mem := i.guestMemory(c)
	var data []byte
	if !iovecs(mem, uint32(args[1].I32()), uint32(args[2].I32()), func(b []byte) { data = append(data, b...) }) {
		return errno(enginekit.ErrnoFault), nil
	}
	w := i.cfg.Stdout
	if fd == 2 {
		w = i.cfg.Stderr
	}
	n, err := enginekit.Write(w, data, i.kill)
	if errors.Is(err, enginekit.ErrKilled) {
		return nil, wt.NewTrap(errKilledTrap)
	}
	out, ok := span(mem, uint32(args[3].I32()), 4)
	if !ok {
		return errno(enginekit.ErrnoFault), nil
	}
	le.PutUint32(out, uint32(n))
	if err != nil {
		return errno(enginekit.ErrnoPipe), nil
	}
	return errno(enginekit.ErrnoSuccess), nil
}

func (i *instance) fdRead(c *wt.Caller, args []wt.Val) ([]wt.Val, *wt.Trap) {
	if args[0].I32() != 0 {
		return i.callOrig(c, "fd_read", args[0].I32(), args[1].I32(), args[2].I32(), args[3].I32())
	}
	if i.stdinNonbl && !i.stdin.Ready() {
		return errno(enginekit.ErrnoAgain), nil
	}
	mem := i.guestMemory(c)
	var bufs [][]byte
	if !iovecs(mem, uint32(args[1].I32()), uint32(args[2].I32()), func(b []byte) { bufs = append(bufs, b) }) {
		return errno(enginekit.ErrnoFault), nil
	}
	total := 0
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		if total > 0 && !i.stdin.Ready() {
			break
		}
		n, err := i.stdin.Read(b, i.kill)
		if errors.Is(err, enginekit.ErrKilled) {
			return nil, wt.NewTrap(errKilledTrap)
		}
		if err != nil && total == 0 {
			return errno(enginekit.ErrnoIO), nil
		}
		total += n
		if n < len(b) {
			break
		}
	}
	out, ok := span(mem, uint32(args[3].I32()), 4)
	if !ok {
		return errno(enginekit.ErrnoFault), nil
	}
	le.PutUint32(out, uint32(total))
	return errno(enginekit.ErrnoSuccess), nil
}

const fdflagNonblock = 0x4

func (i *instance) fdstatSetFlags(c *wt.Caller, args []wt.Val) ([]wt.Val, *wt.Trap) {
	if args[0].I32() == 0 {
		i.stdinNonbl = args[1].I32()&fdflagNonblock != 0
		return errno(enginekit.ErrnoSuccess), nil
	}
	return i.callOrig(c, "fd_fdstat_set_flags", args[0].I32(), args[1].I32())
}

func (i *instance) fdstatGet(c *wt.Caller, args []wt.Val) ([]wt.Val, *wt.Trap) {
	r, trap := i.callOrig(c, "fd_fdstat_get", args[0].I32(), args[1].I32())
	if trap != nil || args[0].I32() != 0 || r[0].I32() != 0 {
		return r, trap
	}
	// fdstat: filetype u8 @0, flags u16 @2.
	if st, ok := span(i.guestMemory(c), uint32(args[1].I32()), 24); ok {
		flags := le.Uint16(st[2:]) &^ fdflagNonblock
		if i.stdinNonbl {
			flags |= fdflagNonblock
		}
		le.PutUint16(st[2:], flags)
	}
	return r, nil
}

func (i *instance) clockTimeGet(c *wt.Caller, args []wt.Val) ([]wt.Val, *wt.Trap) {
	var now int64
	switch args[0].I32() {
	case 0: // realtime
		now = time.Now().UnixNano()
	case 1: // monotonic
		now = monotonic()
	case 2, 3: // process and thread CPU time: the instance's
		now = int64(i.cpu.Read())
	default:
		return errno(enginekit.ErrnoInval), nil
	}
	out, ok := span(i.guestMemory(c), uint32(args[2].I32()), 8)
	if !ok {
		return errno(enginekit.ErrnoFault), nil
	}
	le.PutUint64(out, uint64(now))
	return errno(enginekit.ErrnoSuccess), nil
}

const (
	subSize   = 48
	eventSize = 32

	eventClock   = 0
	eventFdRead  = 1
	eventFdWrite = 2

	subclockAbstime = 1
)

type sub struct {
	userdata uint64
	tag      uint8
	fd       uint32
	deadline int64 // monotonic, for clocks
}

// pollOneoff waits for the first of its subscriptions: clocks by a Go
// timer, fd 0 by the stdin pump, fd 1/2 and every other fd (files: always
// ready in WASI) at once; and returns a trap when the instance is killed.
func (i *instance) pollOneoff(c *wt.Caller, args []wt.Val) ([]wt.Val, *wt.Trap) {
	in, out, n, nevents := uint32(args[0].I32()), uint32(args[1].I32()), uint32(args[2].I32()), uint32(args[3].I32())
	if n == 0 {
		return errno(enginekit.ErrnoInval), nil
	}
	mem := i.guestMemory(c)
	raw, ok := span(mem, in, n*subSize)
	if !ok {
		return errno(enginekit.ErrnoFault), nil
	}
	if _, ok := span(mem, out, n*eventSize); !ok {
		return errno(enginekit.ErrnoFault), nil
	}
	if _, ok := span(mem, nevents, 4); !ok {
		return errno(enginekit.ErrnoFault), nil
	}
	subs := make([]sub, n)
	now := monotonic()
	for k := range subs {
		s := raw[k*subSize:]
		subs[k] = sub{userdata: le.Uint64(s), tag: s[8], fd: le.Uint32(s[16:])}
		if s[8] == eventClock {
			id, timeout, flags := le.Uint32(s[16:]), int64(le.Uint64(s[24:])), le.Uint16(s[40:])
			d := now + timeout
			if flags&subclockAbstime != 0 {
				switch id {
				case 0:
					d = now + (timeout - time.Now().UnixNano())
				default:
					d = timeout
				}
			}
			subs[k].deadline = d
		}
	}
	for {
		var evs [][eventSize]byte
		now = monotonic()
		wantStdin := false
		next := int64(-1)
		for _, s := range subs {
			var ev [eventSize]byte
			le.PutUint64(ev[0:], s.userdata)
			ev[10] = s.tag
			ready := false
			switch s.tag {
			case eventClock:
				if s.deadline <= now {
					ready = true
				} else if next < 0 || s.deadline < next {
					next = s.deadline
				}
			case eventFdRead, eventFdWrite:
				ready = true
				if s.tag == eventFdRead && s.fd == 0 {
					ready = i.stdin.Ready()
					wantStdin = wantStdin || !ready
					le.PutUint64(ev[16:], uint64(i.stdin.Buffered()))
					if ready && i.stdin.Buffered() == 0 {
						le.PutUint16(ev[24:], 1) // hangup: EOF
					}
				} else if s.tag == eventFdWrite {
					le.PutUint64(ev[16:], 64<<10)
				}
			default:
				ready = true
				le.PutUint16(ev[8:], enginekit.ErrnoInval)
			}
			if ready {
				evs = append(evs, ev)
			}
		}
		if len(evs) > 0 {
			mem = i.guestMemory(c)
			for k, ev := range evs {
				copy(mem[out+uint32(k)*eventSize:], ev[:])
			}
			le.PutUint32(mem[nevents:], uint32(len(evs)))
			return errno(enginekit.ErrnoSuccess), nil
		}
		var timer *time.Timer
		var tc <-chan time.Time
		if next >= 0 {
			timer = time.NewTimer(time.Duration(next - now))
			tc = timer.C
		}
		wake := i.stdin.Wait(i.kill, tc, wantStdin)
		if timer != nil {
			timer.Stop()
		}
		if wake == enginekit.WakeKilled {
			return nil, wt.NewTrap(errKilledTrap)
		}
	}
}
