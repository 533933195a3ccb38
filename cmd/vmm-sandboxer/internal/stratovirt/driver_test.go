package stratovirt

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmhost"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmtest"
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
)

// These tests drive the whole driver (Start with -daemonize and the pid
// file, Stop, Cleanup, State, Recover) against a fake StratoVirt: the test
// binary itself (TestMain), which daemonizes and serves qmp.md's QMP. They
// need neither root nor StratoVirt.

// fakeConfig is a config for the fake StratoVirt in mode.
func fakeConfig(t *testing.T, mode string) *vm.Config {
	t.Helper()
	t.Setenv(fakeEnv, mode)
	t.Setenv(fakeDaemonEnv, "")
	cfg := vmtest.FakeConfig(t)
	// the fake's daemon names neither the id nor the run directory in
	// argv: none of its processes may outlive a test
	t.Cleanup(func() {
		for _, pid := range vmtest.ProcsNaming(cfg.Dir + "/") {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return cfg
}

// assertClean checks that no process of cfg runs and its run directory
// holds no socket or pid file. StratoVirt's processes name the run
// directory (no -name: the guidebook has none).
func assertClean(t *testing.T, cfg *vm.Config) {
	t.Helper()
	vmtest.AssertGone(t, cfg, cfg.Dir+"/", QMPSocket, AgentSocket, VirtiofsSocket, PidFile)
}

// TestFake runs the fake part of the conformance suite. StratoVirt's
// daemon is not the driver's child: its exit status is unknown.
func TestFake(t *testing.T) {
	vmtest.RunFake(t, vmtest.FakeSuite{
		Name: Name, New: func() vm.Hypervisor { return New(Options{}) },
		Config:   func(t *testing.T, mode vmtest.FakeMode) *vm.Config { return fakeConfig(t, string(mode)) },
		Naming:   func(cfg *vm.Config) string { return cfg.Dir + "/" },
		RunFiles: []string{QMPSocket, AgentSocket, VirtiofsSocket, PidFile},
		Started: func(t *testing.T, cfg *vm.Config, v vm.VM) {
			// the VMM is the daemon of the pid file; the agent on the
			// console port's socket
			pid := v.Pids()[0]
			b, err := os.ReadFile(filepath.Join(cfg.Dir, PidFile))
			if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
				t.Errorf("pid file %q %v, vmm pid %d", b, err, pid)
			}
			if tg := v.Agent(); tg.Serial != filepath.Join(cfg.Dir, AgentSocket) {
				t.Errorf("agent target %+v", tg)
			}
			if st, err := v.(*VM).Status(vmtest.Ctx(t, 5*time.Second)); err != nil || st.Status != "running" {
				t.Errorf("status %+v %v", st, err)
			}
		},
		State: func(t *testing.T, cfg *vm.Config, v vm.VM, st []byte) {
			var decoded State
			if err := json.Unmarshal(st, &decoded); err != nil || decoded.VMM.Pid != v.Pids()[0] || decoded.VMM.StartTime == 0 ||
				decoded.AgentSocket == "" || decoded.Hypervisor != Name || decoded.QMPSocket != filepath.Join(cfg.Dir, QMPSocket) {
				t.Fatalf("state %s: %v", st, err)
			}
		},
	})
}

func TestRecoverBadState(t *testing.T) {
	h := New(Options{})
	good := State{State: vmhost.State{Hypervisor: Name, ID: "x", Dir: "/run/x",
		Agent: vmhost.AgentState{Kind: vm.ChannelSerial}, AgentSocket: "/run/x/agent.sock"},
		QMPSocket: "/run/x/qmp.sock", VMM: hostproc.ID{Pid: 1}}
	for name, edit := range map[string]func(*State){
		"qemu":          func(s *State) { s.Hypervisor = "qemu" },
		"no pid":        func(s *State) { s.VMM.Pid = 0 },
		"relative dir":  func(s *State) { s.Dir = "x" },
		"vsock no cid":  func(s *State) { s.Agent = vmhost.AgentState{Kind: vm.ChannelVsock} },
		"hvsock":        func(s *State) { s.Agent.Kind = vm.ChannelHybridVsock },
		"fsd no socket": func(s *State) { s.Virtiofsd = &hostproc.ID{Pid: 2} },
		"no qmp socket": func(s *State) { s.QMPSocket = "" },
	} {
		s := good
		edit(&s)
		b, _ := json.Marshal(s)
		if _, err := h.Recover(context.Background(), b); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := h.Recover(context.Background(), json.RawMessage(`{"hypervisor":`)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("truncated: %v", err)
	}
	// a QEMU state is not StratoVirt's
	if _, err := h.Recover(context.Background(), json.RawMessage(`{"hypervisor":"qemu","id":"x","dir":"/run/x","qemu":{"pid":1},"qmp_socket":"/q","agent":{"kind":"serial"},"agent_socket":"/a"}`)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("qemu state: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	h := New(Options{VsockDevice: "/nonexistent/vhost-vsock"})
	for _, c := range []struct {
		name  string
		mode  string
		edit  func(t *testing.T, c *vm.Config)
		class func(error) bool
		text  string
	}{
		{"missing kernel", fakeModeServe, func(_ *testing.T, c *vm.Config) { c.Kernel += ".none" }, errdefs.IsNotFound, "kernel"},
		{"elf kernel", fakeModeServe, func(t *testing.T, c *vm.Config) {
			if err := os.WriteFile(c.Kernel, append([]byte("\x7fELF"), make([]byte, 4096)...), 0o644); err != nil {
				t.Fatal(err)
			}
		}, errdefs.IsInvalidArgument, "bzImage"},
		{"missing initrd", fakeModeServe, func(_ *testing.T, c *vm.Config) { c.Initrd += ".none" }, errdefs.IsNotFound, "initrd"},
		{"missing binary", fakeModeServe, func(_ *testing.T, c *vm.Config) { c.Binary = "/nonexistent/stratovirt" }, errdefs.IsNotFound, "stratovirt binary"},
		{"missing share", fakeModeServe, func(_ *testing.T, c *vm.Config) { c.Share = "/nonexistent/share" }, errdefs.IsNotFound, "source"},
		{"tcg", fakeModeServe, func(_ *testing.T, c *vm.Config) { c.Accel = "tcg" }, errdefs.IsInvalidArgument, "KVM only"},
		{"no vhost-vsock", fakeModeServe, func(_ *testing.T, c *vm.Config) { c.Agent.Kind = vm.ChannelVsock }, errdefs.IsFailedPrecondition, "vhost-vsock"},
		{"command line refused", fakeModeRefuse, func(*testing.T, *vm.Config) {}, errdefs.IsFailedPrecondition, "wasn't expected"},
		{"daemon dies", fakeModeDie, func(*testing.T, *vm.Config) {}, errdefs.IsFailedPrecondition, "ELF-format kernel is not supported"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := fakeConfig(t, c.mode)
			c.edit(t, cfg)
			v, err := h.Start(vmtest.Ctx(t, 10*time.Second), cfg)
			if err == nil {
				v.Stop(context.Background(), true)
				t.Fatal("started")
			}
			if !c.class(err) || !strings.Contains(err.Error(), c.text) {
				t.Errorf("got %v; want %q", err, c.text)
			}
			assertClean(t, cfg)
		})
	}
}

// TestStartStalePidFile: a pid file a previous run left (StratoVirt
// refuses to start when it exists) is removed first.
func TestStartStalePidFile(t *testing.T) {
	cfg := fakeConfig(t, fakeModeServe)
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, PidFile), []byte("1"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := New(Options{}).Start(vmtest.Ctx(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if v.Pids()[0] == 1 {
		t.Error("took the stale pid file's pid")
	}
	if err := v.Stop(vmtest.Ctx(t, 10*time.Second), true); err != nil {
		t.Fatal(err)
	}
	if err := v.Cleanup(); err != nil {
		t.Fatal(err)
	}
	assertClean(t, cfg)
}

// TestStartTimeout: a StratoVirt whose daemon never answers on QMP costs
// the context's time and is killed.
func TestStartTimeout(t *testing.T) {
	cfg := fakeConfig(t, fakeModeServe)
	// a shell stands in for a StratoVirt that daemonizes and never serves
	dir := filepath.Dir(cfg.Kernel)
	cfg.Binary = filepath.Join(dir, "silent-stratovirt")
	// (its daemon keeps the command line until it has written its pid)
	script := "#!/bin/sh\necho starting >&2\npidfile=''\nfor a in \"$@\"; do [ \"$prev\" = -pidfile ] && pidfile=$a; prev=$a; done\n" +
		"setsid sh -c 'echo $$ >\"$0\"; echo $$ >\"$0.copy\"; exec sleep 60' \"$pidfile\" \"$@\" </dev/null >/dev/null 2>&1 &\n"
	if err := os.WriteFile(cfg.Binary, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := New(Options{}).Start(vmtest.Ctx(t, 700*time.Millisecond), cfg)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stratovirt: starting") {
		t.Errorf("silent stratovirt: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	b, err := os.ReadFile(filepath.Join(cfg.Dir, PidFile+".copy"))
	if err != nil {
		t.Fatal(err)
	}
	// gone, or a zombie of whoever adopted it (an empty command line)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); len(cmdline) > 0 {
		t.Errorf("silent stratovirt %d left: %q", pid, cmdline)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	assertClean(t, cfg)
}
