package vmtest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
)

// FakeMode is how a driver's fake VMM behaves (FakeSuite.Config).
type FakeMode string

const (
	// FakeServe serves its control channel and exits when told to quit.
	FakeServe FakeMode = "serve"
	// FakeIgnoreQuit answers quit but keeps running (and ignores SIGTERM).
	FakeIgnoreQuit FakeMode = "ignore-quit"
)

// FakeConsole is what a fake VMM writes to the guest console.
const FakeConsole = "fake guest booting"

// FakeSuite is the part of the conformance suite that runs without root or
// a guest: the driver's whole life cycle (Start, Stop, Cleanup, State,
// Recover) against its fake VMM (the test binary run again as the VMM,
// with FakeConfig's guest). Every driver runs it (RunFake).
type FakeSuite struct {
	// Name is the Hypervisor's name.
	Name string
	// New returns a new Hypervisor value, as a restarted daemon makes one.
	New func() vm.Hypervisor
	// Config is a VM for the driver's fake VMM in mode (FakeConfig plus
	// what the driver needs), its processes killed with the test.
	Config func(t *testing.T, mode FakeMode) *vm.Config
	// Naming is what every process of cfg's VM has in its argv (the id,
	// or the run directory where the VMM has no name option).
	Naming func(cfg *vm.Config) string
	// RunFiles are the names in the run directory Cleanup removes.
	RunFiles []string
	// ExitStatus: the VMM is the driver's child, and Alive reports its
	// exit status ("exit status 0" after a graceful stop, 137 after a kill).
	ExitStatus bool
	// Started, when set, checks what is the driver's own of a started VM.
	Started func(t *testing.T, cfg *vm.Config, v vm.VM)
	// State, when set, checks the driver's State of v.
	State func(t *testing.T, cfg *vm.Config, v vm.VM, state []byte)
}

// RunFake runs every case of the fake suite as a subtest.
func RunFake(t *testing.T, s FakeSuite) {
	for _, c := range []struct {
		name string
		run  func(*testing.T, FakeSuite)
	}{
		{"StartStop", fakeStartStop},
		{"StopKills", fakeStopKills},
		{"KilledFromOutside", fakeKilledFromOutside},
		{"Recover", fakeRecover},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, s) })
	}
}

func (s FakeSuite) assertClean(t *testing.T, cfg *vm.Config) {
	t.Helper()
	AssertGone(t, cfg, s.Naming(cfg), s.RunFiles...)
}

func (s FakeSuite) start(t *testing.T, cfg *vm.Config) vm.VM {
	t.Helper()
	v, err := s.New().Start(Ctx(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wantExit checks Alive of an ended VM: Unavailable, with the exit status
// where the driver knows it.
func (s FakeSuite) wantExit(t *testing.T, v vm.VM, status string) {
	t.Helper()
	err := v.Alive()
	if !errdefs.IsUnavailable(err) || (s.ExitStatus && !strings.Contains(err.Error(), status)) {
		t.Errorf("alive of an ended vm: %v, want Unavailable (%s)", err, status)
	}
}

// fakeStartStop: a started VM is alive with one process (no share) in a
// session of its own, its agent target valid, its console readable; it
// cannot be cleaned up while it runs; a graceful stop ends it quickly,
// stopping and cleaning up again are no-ops, the console log stays.
func fakeStartStop(t *testing.T, s FakeSuite) {
	cfg := s.Config(t, FakeServe)
	if n := s.New().Name(); n != s.Name {
		t.Errorf("name %q, want %q", n, s.Name)
	}
	v := s.start(t, cfg)
	pid := v.Pids()[0]
	if v.Alive() != nil || !v.ExitedAt().IsZero() || len(v.Pids()) != 1 {
		t.Errorf("fresh vm: alive %v, exited %v, pids %v", v.Alive(), v.ExitedAt(), v.Pids())
	}
	if err := v.Agent().Validate(); err != nil {
		t.Errorf("agent target %+v: %v", v.Agent(), err)
	}
	if sid, _ := unix.Getsid(pid); sid != pid {
		t.Errorf("vmm session %d, want its own (%d)", sid, pid)
	}
	if p := ProcsNaming(s.Naming(cfg)); len(p) == 0 {
		t.Errorf("no process names %q", s.Naming(cfg))
	}
	if got := v.ConsoleTail(5); got != FakeConsole {
		t.Errorf("console tail %q", got)
	}
	if s.Started != nil {
		s.Started(t, cfg, v)
	}
	if err := v.Cleanup(); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("cleanup of a running vm: %v", err)
	}
	start := time.Now()
	if err := v.Stop(Ctx(t, 10*time.Second), false); err != nil {
		t.Fatal(err)
	}
	WaitDone(t, v, time.Second)
	if time.Since(start) > 3*time.Second {
		t.Errorf("graceful stop took %s", time.Since(start))
	}
	s.wantExit(t, v, "exit status 0")
	if v.ExitedAt().IsZero() {
		t.Error("no exit time")
	}
	if err := v.Stop(Ctx(t, time.Second), true); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if err := v.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := v.Cleanup(); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
	s.assertClean(t, cfg)
	if tail := v.ConsoleTail(1); tail == "" {
		t.Error("console log removed by Cleanup")
	}
}

// fakeStopKills: a VMM that ignores quit is killed when the context ends;
// with force at once.
func fakeStopKills(t *testing.T, s FakeSuite) {
	cfg := s.Config(t, FakeIgnoreQuit)
	v := s.start(t, cfg)
	start := time.Now()
	if err := v.Stop(Ctx(t, 300*time.Millisecond), false); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("stop took %s: want the context's 300 ms and a kill", d)
	}
	s.wantExit(t, v, "exit status 137")
	if err := v.Cleanup(); err != nil {
		t.Fatal(err)
	}
	cfg.ID += "f"
	v = s.start(t, cfg)
	start = time.Now()
	if err := v.Stop(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("forced stop took %s", d)
	}
	if err := v.Cleanup(); err != nil {
		t.Fatal(err)
	}
	s.assertClean(t, cfg)
}

// fakeKilledFromOutside: a VMM killed by someone else ends the VM; Stop
// and Cleanup of it work.
func fakeKilledFromOutside(t *testing.T, s FakeSuite) {
	cfg := s.Config(t, FakeServe)
	v := s.start(t, cfg)
	if err := syscall.Kill(v.Pids()[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	WaitDone(t, v, 5*time.Second)
	s.wantExit(t, v, "exit status 137")
	if _, err := agentclient.Dial(Ctx(t, 5*time.Second), v.Agent(), agentclient.Options{Alive: v.Alive}); !errors.Is(err, agentclient.ErrVMMExited) {
		t.Errorf("agent dial of a dead VM: %v, want ErrVMMExited", err)
	}
	if err := v.Stop(Ctx(t, time.Second), false); err != nil {
		t.Errorf("stop of a dead vm: %v", err)
	}
	if err := v.Cleanup(); err != nil {
		t.Fatal(err)
	}
	s.assertClean(t, cfg)
}

// fakeRecover: a new Hypervisor (a restarted daemon) takes the State and
// finds the running VMM again, with the same State; its Stop works and the
// first VM value sees the exit too. The same State once the VMM is gone
// comes back already Done.
func fakeRecover(t *testing.T, s FakeSuite) {
	cfg := s.Config(t, FakeServe)
	v1 := s.start(t, cfg)
	st, err := v1.State()
	if err != nil {
		t.Fatal(err)
	}
	if s.State != nil {
		s.State(t, cfg, v1, st)
	}
	v2, err := s.New().Recover(Ctx(t, 5*time.Second), st)
	if err != nil {
		t.Fatal(err)
	}
	if v2.Alive() != nil || v2.Pids()[0] != v1.Pids()[0] || v2.Agent() != v1.Agent() {
		t.Fatalf("recovered: alive %v pids %v agent %+v", v2.Alive(), v2.Pids(), v2.Agent())
	}
	if st2, _ := v2.State(); !bytes.Equal(st, st2) {
		t.Errorf("state round trip:\n%s\n%s", st, st2)
	}
	if err := v2.Stop(Ctx(t, 10*time.Second), false); err != nil {
		t.Fatal(err)
	}
	WaitDone(t, v2, time.Second)
	WaitDone(t, v1, 5*time.Second)
	if err := v2.Cleanup(); err != nil {
		t.Fatal(err)
	}
	s.assertClean(t, cfg)
	v3, err := s.New().Recover(Ctx(t, 5*time.Second), st)
	if err != nil {
		t.Fatal(err)
	}
	WaitDone(t, v3, time.Second)
	if v3.Alive() == nil {
		t.Errorf("a gone %s is alive", s.Name)
	}
}
