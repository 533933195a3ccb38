package service

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"strconv"
	"sync"
	"syscall"
	"time"

	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/magnetar-runtime/magnetar/shared/stdio"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// fakeBackend runs "processes" in goroutines that behave like a small
// program: write "hello\n" to stdout, copy stdin to stdout until EOF, write
// "bye\n" to stderr, exit with the code in args ("exit=N"). It opens its
// stdio with shared/stdio exactly as the runc backend does.
type fakeBackend struct{}

func (fakeBackend) Create(ctx context.Context, r *task.CreateRequest) (task.Container, error) {
	io, err := stdio.Open(ctx, r.Stdio)
	if err != nil {
		return nil, err
	}
	return &fakeContainer{fakeProc: newFakeProc(io, r.Spec.Process.Args)}, nil
}

type fakeProc struct {
	io    *stdio.IO
	code  uint32
	done  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	at    time.Time
	start sync.Once
	kill  chan struct{}
}

func newFakeProc(io *stdio.IO, args []string) *fakeProc {
	p := &fakeProc{io: io, done: make(chan struct{}), kill: make(chan struct{})}
	for _, a := range args {
		if v, ok := cutPrefix(a, "exit="); ok {
			n, _ := strconv.Atoi(v)
			p.code = uint32(n)
		}
	}
	return p
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}

func (p *fakeProc) Pid() uint32 { return 4242 }

func (p *fakeProc) Start(ctx context.Context) error {
	p.start.Do(func() {
		in, out, errw := p.io.Files()
		go func() {
			if out != nil {
				_, _ = out.Write([]byte("hello\n"))
				if in != nil {
					done := make(chan struct{})
					go func() { _, _ = io.Copy(out, in); close(done) }()
					select {
					case <-done:
					case <-p.kill:
						p.code = 137
					}
				}
			}
			if errw != nil {
				_, _ = errw.Write([]byte("bye\n"))
			}
			p.io.CloseChildEnds() // the "process" exits: its ends close
			p.mu.Lock()
			p.at = time.Now()
			p.mu.Unlock()
			p.once.Do(func() { close(p.done) })
		}()
	})
	return nil
}

func (p *fakeProc) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	select {
	case <-p.kill:
	default:
		close(p.kill)
	}
	return nil
}
func (p *fakeProc) Exited() <-chan struct{} { return p.done }
func (p *fakeProc) ExitStatus() (uint32, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.code, p.at
}
func (p *fakeProc) ResizePty(context.Context, uint32, uint32) error { return errdefs.ErrNotImplemented }
func (p *fakeProc) CloseStdin(context.Context) error                { p.io.CloseStdin(); return nil }
func (p *fakeProc) Delete(context.Context) error                    { return p.io.Close() }

type fakeContainer struct{ *fakeProc }

func (c *fakeContainer) Exec(ctx context.Context, id string, sp *specs.Process, cfg stdio.Config) (task.Process, error) {
	return &fakeExec{cfg: cfg, fakeProc: newFakeProc(nil, sp.Args)}, nil
}
func (c *fakeContainer) Pids(context.Context) ([]*tasktypes.ProcessInfo, error) { return nil, nil }
func (c *fakeContainer) Stats(context.Context) (*anypb.Any, error)              { return &anypb.Any{}, nil }
func (c *fakeContainer) Update(context.Context, *specs.LinuxResources, map[string]string) error {
	return nil
}
func (c *fakeContainer) State() json.RawMessage { return json.RawMessage(`{}`) }

// fakeExec opens its stdio at Start, like runc exec.
type fakeExec struct {
	cfg stdio.Config
	*fakeProc
}

func (e *fakeExec) Start(ctx context.Context) error {
	io, err := stdio.Open(ctx, e.cfg)
	if err != nil {
		return err
	}
	e.fakeProc.io = io
	return e.fakeProc.Start(ctx)
}
func (e *fakeExec) Delete(ctx context.Context) error {
	if e.fakeProc.io == nil {
		return nil
	}
	return e.fakeProc.Delete(ctx)
}

// fakeSystem records what Setup, SyncClock and Shutdown applied.
type fakeSystem struct {
	mu      sync.Mutex
	applied []string
	steps   []time.Duration
	off     chan string
	// entropyErr, when set, is AddEntropy's error (nothing is recorded)
	entropyErr error
}

func (f *fakeSystem) rec(s string) error {
	f.mu.Lock()
	f.applied = append(f.applied, s)
	f.mu.Unlock()
	return nil
}
func (f *fakeSystem) SysctlExists(key string) error {
	if key == "net.ipv4.nonexistent" {
		return errdefs.ErrNotFound
	}
	return nil
}

// panicHostname makes the fake's SetHostname panic, as a bug in the
// system layer would.
const panicHostname = "panic-in-sethostname"

func (f *fakeSystem) SetHostname(n string) error {
	if n == panicHostname {
		panic("fake system: SetHostname(" + n + ")")
	}
	return f.rec("hostname " + n)
}
func (f *fakeSystem) WriteResolvConf(b []byte) error { return f.rec("resolv " + string(b)) }
func (f *fakeSystem) SetSysctl(k, v string) error    { return f.rec("sysctl " + k + "=" + v) }
func (f *fakeSystem) AddEntropy(b []byte) error {
	if f.entropyErr != nil {
		return f.entropyErr
	}
	return f.rec("entropy " + hex.EncodeToString(b))
}
func (f *fakeSystem) ConfigureLink(l Link) error {
	s := "link " + l.Name + " " + l.MAC.String()
	if l.SetMAC != nil {
		s += " set " + l.SetMAC.String()
	}
	return f.rec(s)
}
func (f *fakeSystem) AddRoute(r RouteSpec) error {
	return f.rec("route " + r.Dst.String() + " via " + r.Gateway.String())
}
func (f *fakeSystem) StepClock(d time.Duration) error {
	f.mu.Lock()
	f.steps = append(f.steps, d)
	f.mu.Unlock()
	return nil
}
func (f *fakeSystem) PowerOff(reason string) { f.off <- reason }
func (f *fakeSystem) appliedCopy() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.applied...)
}
