package taskfwd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/hack/vm/guestvm"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/exit"
	"github.com/magnetar-runtime/magnetar/shared/proc"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/sandboxtest"
	"github.com/magnetar-runtime/magnetar/shared/task"
	"github.com/magnetar-runtime/magnetar/shared/tasktest"
)

// The task backends' conformance suite (shared/tasktest) on the forwarding
// backend: its pods are dev agents (devDriver), one per pod, started by the
// pod's Start under the pod's directory, as a VM would be.

// devDriver is a sandbox.Driver whose pods are dev agents.
type devDriver struct {
	bin, runc string
	env       *daemon.Env
}

// devPod is a pod of devDriver: a Guest once started.
type devPod struct {
	exit.Latch // the pod's end: its agent exited, or it was stopped
	d          *devDriver
	id, dir    string

	mu sync.Mutex
	g  *devGuest // nil until started
}

var (
	_ sandbox.Driver   = (*devDriver)(nil)
	_ sandbox.Instance = (*devPod)(nil)
	_ Guest            = (*devPod)(nil)
	_ IORooter         = (*devPod)(nil)
)

func (d *devDriver) Create(ctx context.Context, s *sandbox.Spec) (sandbox.Instance, error) {
	return &devPod{d: d, id: s.ID, dir: s.Dir}, nil
}

// devState is a devPod's persisted state: its agent's pid.
type devState struct {
	Pid int `json:"pid"`
}

func (d *devDriver) Recover(ctx context.Context, st *sandbox.State) (sandbox.Instance, error) {
	p := &devPod{d: d, id: st.ID, dir: st.Dir}
	var ds devState
	if len(st.Driver) > 0 {
		if err := json.Unmarshal(st.Driver, &ds); err != nil {
			return nil, err
		}
	}
	if ds.Pid > 0 {
		p.adopt(findAgent(d.runc, p.dir, ds.Pid))
	} else if st.Phase != sandbox.PhaseCreated {
		p.Set(sandbox.ExitCodeLost, time.Now())
	}
	return p, nil
}

// adopt makes a the pod's agent: the pod ends with it.
func (p *devPod) adopt(a *devAgent) {
	p.mu.Lock()
	p.g = &devGuest{id: p.id, agent: a}
	p.mu.Unlock()
	go func() {
		<-a.exited.Done()
		p.Set(sandbox.ExitCodeLost, time.Now())
	}()
}

func (p *devPod) guest() *devGuest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.g
}

func (p *devPod) ID() string { return p.id }

// Share is where the agent's share is, started or not.
func (p *devPod) Share() (string, string) {
	s := (&devAgent{dir: p.dir}).share()
	return s, s
}

func (p *devPod) IORoot() string { return (&devAgent{dir: p.dir}).ioRoot() }

func (p *devPod) Conn(ctx context.Context) (Conn, error) {
	g := p.guest()
	if g == nil || p.IsSet() {
		return nil, fmt.Errorf("pod %s is not running: %w", p.id, errdefs.ErrUnavailable)
	}
	return g.Conn(ctx)
}

func (p *devPod) Start(ctx context.Context) (sandbox.Endpoint, error) {
	a, err := startAgent(p.d.bin, p.d.runc, p.dir)
	if err != nil {
		return sandbox.Endpoint{}, err
	}
	p.adopt(a)
	if _, err := p.Conn(ctx); err != nil {
		_ = a.kill()
		return sandbox.Endpoint{}, err
	}
	return sandbox.Endpoint{Address: p.d.env.TaskAddress, Version: 3, Pid: uint32(a.pid)}, nil
}

func (p *devPod) Stop(ctx context.Context, timeout time.Duration) error {
	if g := p.guest(); g != nil {
		g.breakConn()
		if err := g.agent.kill(); err != nil {
			return err
		}
	}
	p.Set(0, time.Now())
	return nil
}

func (p *devPod) Cleanup(ctx context.Context) error { return p.Stop(ctx, 0) }

func (p *devPod) DriverState() (json.RawMessage, error) {
	var ds devState
	if g := p.guest(); g != nil {
		ds.Pid = g.agent.pid
	}
	return json.Marshal(&ds)
}

// agentsBelow lists the dev agents running with their directory below dir.
func agentsBelow(bin, dir string) []int {
	var out []int
	for _, p := range proc.Find(func(args []string) bool {
		return len(args) >= 4 && args[0] == bin && strings.HasPrefix(args[3], dir+"/")
	}) {
		out = append(out, p.PID)
	}
	return out
}

// TestTaskSuite runs the suite. The dev agent's Stats reads cgroup v2 only
// (a guest has it), so on a cgroup v1 host the suite's RunningQueries case
// would fail for the host's sake: the suite runs there only when
// MAGNETAR_TASKFWD_SUITE is set.
func TestTaskSuite(t *testing.T) {
	bin, runc := requirements(t)
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil && os.Getenv("MAGNETAR_TASKFWD_SUITE") == "" {
		t.Skip("cgroup v1 host: the dev agent reports no Stats here (set MAGNETAR_TASKFWD_SUITE=1 to run the suite anyway)")
	}
	sb := &sandboxtest.Sandboxer{
		Name: "taskfwd",
		New: func(t *testing.T, env *daemon.Env) (sandbox.Driver, task.Backend) {
			return &devDriver{bin: bin, runc: runc, env: env}, New(Config{Life: env.Life})
		},
		KillPod: func(t *testing.T, d *sandboxtest.Daemon, id string) {
			pids := agentsBelow(bin, d.Dir)
			var mine []int
			for _, pid := range pids {
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				if strings.Contains(string(b), "/"+id+"/") {
					mine = append(mine, pid)
				}
			}
			if len(mine) != 1 {
				t.Fatalf("agents of pod %s: %v", id, mine)
			}
			_ = syscall.Kill(-mine[0], syscall.SIGKILL)
		},
		Leftovers: func(t *testing.T, dir string) []string {
			var out []string
			for _, pid := range agentsBelow(bin, dir) {
				out = append(out, fmt.Sprintf("dev agent %d", pid))
			}
			return out
		},
	}
	tasktest.Run(t, &tasktest.Suite{
		Sandboxer: sb,
		Workload: tasktest.Workload{
			// containerd's bundle with the image in it, root.path naming it
			Bundle: func(t *testing.T, bundle string) []*types.Mount {
				if err := guestvm.BusyboxBundle(filepath.Dir(bundle), filepath.Base(bundle), []string{"/bin/sh"}, nil); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			Args: tasktest.BusyboxArgs,
		},
	})
}
