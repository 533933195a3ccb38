package qemu

import (
	"bytes"
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

// These tests drive the whole driver (Start, Stop, Cleanup, State,
// Recover) against a fake QEMU: the test binary itself (TestMain), which
// serves QMP on the -qmp socket. They need neither root nor QEMU.

// fakeConfig is a config for the fake QEMU in mode.
func fakeConfig(t *testing.T, mode string) *vm.Config {
	t.Helper()
	t.Setenv(fakeQEMUEnv, mode)
	cfg := vmtest.FakeConfig(t)
	cfg.Accel = AccelTCG
	return cfg
}

// assertClean checks that no process of cfg runs and its run directory
// holds no socket or pid file.
func assertClean(t *testing.T, cfg *vm.Config) {
	t.Helper()
	vmtest.AssertGone(t, cfg, cfg.ID, QMPSocket, AgentSocket, VirtiofsSocket, PidFile)
}

// TestFake runs the fake part of the conformance suite.
func TestFake(t *testing.T) {
	vmtest.RunFake(t, vmtest.FakeSuite{
		Name: Name, New: func() vm.Hypervisor { return New(Options{}) },
		Config:     func(t *testing.T, mode vmtest.FakeMode) *vm.Config { return fakeConfig(t, string(mode)) },
		Naming:     func(cfg *vm.Config) string { return cfg.ID },
		RunFiles:   []string{QMPSocket, AgentSocket, VirtiofsSocket, PidFile},
		ExitStatus: true,
		Started: func(t *testing.T, cfg *vm.Config, v vm.VM) {
			// the id in argv; the agent on the virtio-serial socket
			if p := vmtest.ProcsNaming("guest=" + cfg.ID + ","); len(p) != 1 || p[0] != v.Pids()[0] {
				t.Errorf("processes named by the id: %v, qemu is %d", p, v.Pids()[0])
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
			if err := json.Unmarshal(st, &decoded); err != nil || decoded.QEMU.Pid != v.Pids()[0] || decoded.QEMU.StartTime == 0 ||
				decoded.Accel != AccelTCG || decoded.AgentSocket == "" || decoded.Hypervisor != Name {
				t.Fatalf("state %s: %v", st, err)
			}
		},
	})
}

func TestRecoverBadState(t *testing.T) {
	h := New(Options{})
	good := State{State: vmhost.State{Hypervisor: Name, ID: "x", Dir: "/run/x",
		Agent: vmhost.AgentState{Kind: vm.ChannelSerial}, AgentSocket: "/run/x/agent.sock"},
		QMPSocket: "/run/x/qmp.sock", QEMU: hostproc.ID{Pid: 1}}
	for name, edit := range map[string]func(*State){
		"clh":           func(s *State) { s.Hypervisor = "cloud-hypervisor" },
		"no pid":        func(s *State) { s.QEMU.Pid = 0 },
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
		{"random kernel", fakeModeServe, func(t *testing.T, c *vm.Config) {
			if err := os.WriteFile(c.Kernel, bytes.Repeat([]byte{0x5a}, 4096), 0o644); err != nil {
				t.Fatal(err)
			}
		}, errdefs.IsInvalidArgument, "neither a bzImage"},
		{"missing initrd", fakeModeServe, func(_ *testing.T, c *vm.Config) { c.Initrd += ".none" }, errdefs.IsNotFound, "initrd"},
		{"empty initrd", fakeModeServe, func(t *testing.T, c *vm.Config) { os.WriteFile(c.Initrd, nil, 0o644) }, errdefs.IsInvalidArgument, "initrd"},
		{"missing binary", fakeModeServe, func(_ *testing.T, c *vm.Config) { c.Binary = "/nonexistent/qemu" }, errdefs.IsNotFound, "qemu binary"},
		{"missing share", fakeModeServe, func(_ *testing.T, c *vm.Config) { c.Share = "/nonexistent/share" }, errdefs.IsNotFound, "source"},
		{"bad accel", fakeModeServe, func(_ *testing.T, c *vm.Config) { c.Accel = "xen" }, errdefs.IsInvalidArgument, "xen"},
		{"no vhost-vsock", fakeModeServe, func(_ *testing.T, c *vm.Config) { c.Agent.Kind = vm.ChannelVsock }, errdefs.IsFailedPrecondition, "vhost-vsock"},
		{"qemu exits", fakeModeDie, func(*testing.T, *vm.Config) {}, errdefs.IsFailedPrecondition, "could not load kernel"},
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

// TestStartTimeout: a QEMU that never greets costs the context's time and
// is killed.
func TestStartTimeout(t *testing.T) {
	cfg := fakeConfig(t, fakeModeServe)
	// sleep stands in for a QEMU whose QMP never answers
	pidFile := filepath.Join(filepath.Dir(cfg.Kernel), "silent.pid")
	cfg.Binary = filepath.Join(filepath.Dir(cfg.Kernel), "silent-qemu")
	if err := os.WriteFile(cfg.Binary, []byte("#!/bin/sh\necho $$ >"+pidFile+"\necho starting >&2\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := New(Options{}).Start(vmtest.Ctx(t, 500*time.Millisecond), cfg)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "qemu: starting") {
		t.Errorf("silent qemu: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("silent qemu %d left: %v", pid, err)
	}
	assertClean(t, cfg)
}
