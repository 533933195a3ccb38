package clh

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
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
	"github.com/magnetar-runtime/magnetar/shared/clhapi"
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
	"github.com/magnetar-runtime/magnetar/shared/proc"
)

// These tests drive the whole driver (Start, Stop, Cleanup, State,
// Recover) against a fake Cloud Hypervisor: the test binary itself
// (TestMain), serving the API and checking every exchange against the
// document. They need neither root nor KVM. Without a share (virtiofsd
// needs root): TestVMConformance covers it with the stand-in.

// fakeConfig is a config for the fake in mode, with a kernel and an initrd
// that pass Start's checks and a stand-in for /dev/kvm.
func fakeConfig(t *testing.T, mode string) (*vm.Config, *Hypervisor) {
	t.Helper()
	t.Setenv(fakeCLHEnv, mode)
	dir := vmtest.ShortDir(t)
	kernel := make([]byte, 0x400)
	copy(kernel[0x202:], "HdrS")
	if err := os.WriteFile(filepath.Join(dir, "vmlinuz"), kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "initrd"), []byte("070701"), 0o644); err != nil {
		t.Fatal(err)
	}
	kvm := filepath.Join(dir, "kvm")
	if err := os.WriteFile(kvm, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	id := "fake" + strconv.FormatInt(time.Now().UnixNano(), 36)
	cfg := &vm.Config{ID: id, Dir: filepath.Join(dir, "vm"), Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"),
		VCPUs: 1, MemoryMiB: 128, Agent: vm.AgentChannel{Kind: vm.ChannelHybridVsock}, Binary: self}
	t.Cleanup(func() {
		for _, p := range proc.Find(proc.Naming(cfg.Dir + "/")) {
			t.Errorf("killing leftover process %d: %s", p.PID, p.Line())
			syscall.Kill(p.PID, syscall.SIGKILL)
		}
	})
	return cfg, New(Options{kvmDevice: kvm})
}

// assertClean checks that no process names cfg's run directory and that
// it holds no socket.
func assertClean(t *testing.T, cfg *vm.Config) {
	t.Helper()
	if p := proc.Find(proc.Naming(cfg.Dir + "/")); len(p) > 0 {
		t.Errorf("processes of %s left: %v", cfg.ID, p)
	}
	for _, f := range []string{APISocket, VsockSocket, VirtiofsSocket} {
		if _, err := os.Lstat(filepath.Join(cfg.Dir, f)); err == nil {
			t.Errorf("%s left in the run directory", f)
		}
	}
}

// TestFake runs the fake part of the conformance suite, with a tap (sent
// with vm.add-net) on every VM.
func TestFake(t *testing.T) {
	kvm := filepath.Join(vmtest.ShortDir(t), "kvm")
	if err := os.WriteFile(kvm, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	modes := map[vmtest.FakeMode]string{vmtest.FakeServe: fakeModeServe, vmtest.FakeIgnoreQuit: fakeModeIgnoreShutdown}
	taps := map[string]*os.File{}
	vmtest.RunFake(t, vmtest.FakeSuite{
		Name: Name, New: func() vm.Hypervisor { return New(Options{kvmDevice: kvm}) },
		Config: func(t *testing.T, mode vmtest.FakeMode) *vm.Config {
			cfg, _ := fakeConfig(t, modes[mode])
			tap := tempFile(t)
			taps[cfg.ID] = tap
			cfg.NICs = []vm.NIC{{Tap: tap, TapName: "tap0", MAC: "02:00:00:00:00:01", MTU: 1500}}
			return cfg
		},
		Naming:     func(cfg *vm.Config) string { return cfg.Dir + "/" },
		RunFiles:   []string{APISocket, VsockSocket, VirtiofsSocket},
		ExitStatus: true,
		Started: func(t *testing.T, cfg *vm.Config, v vm.VM) {
			want := agentclient.Target{HybridVsock: filepath.Join(cfg.Dir, VsockSocket), Port: 1024}
			if tg := v.Agent(); tg != want {
				t.Errorf("agent target %+v, want %+v", tg, want)
			}
			info, err := v.(*VM).Info(vmtest.Ctx(t, 5*time.Second))
			if err != nil || info.State != clhapi.Running || *info.Config.Payload.Kernel != cfg.Kernel || info.Config.Memory.Size != 128<<20 {
				t.Errorf("info %+v %v", info, err)
			}
			// the tap went with vm.add-net (the fake logs what it received)
			var st syscall.Stat_t
			syscall.Fstat(int(taps[cfg.ID].Fd()), &st)
			if l, _ := os.ReadFile(filepath.Join(cfg.Dir, CLHLog)); !strings.Contains(string(l), "vm.add-net net0: "+devIno(st)) {
				t.Errorf("the fake did not receive the tap with vm.add-net; its log:\n%s", l)
			}
		},
		State: func(t *testing.T, cfg *vm.Config, v vm.VM, st []byte) {
			var decoded State
			if err := json.Unmarshal(st, &decoded); err != nil || decoded.CLH.Pid != v.Pids()[0] || decoded.CLH.StartTime == 0 ||
				decoded.Accel != AccelKVM || decoded.APISocket != filepath.Join(cfg.Dir, APISocket) || decoded.Hypervisor != Name || decoded.Agent.Port != 1024 {
				t.Fatalf("state %s: %v", st, err)
			}
			// the recovered VM asks the API
			v2, err := New(Options{kvmDevice: kvm}).Recover(vmtest.Ctx(t, 5*time.Second), st)
			if err != nil {
				t.Fatal(err)
			}
			if info, err := v2.(*VM).Info(vmtest.Ctx(t, 5*time.Second)); err != nil || info.State != clhapi.Running {
				t.Errorf("info through the recovered vm: %+v, %v", info, err)
			}
		},
	})
}

func TestRecoverBadState(t *testing.T) {
	h := New(Options{})
	good := State{State: vmhost.State{Hypervisor: Name, ID: "x", Dir: "/run/x", AgentSocket: "/run/x/vsock.sock",
		Agent: vmhost.AgentState{Kind: vm.ChannelHybridVsock, Port: 1024}}, APISocket: "/run/x/api.sock", CLH: hostproc.ID{Pid: 1}}
	for name, edit := range map[string]func(*State){
		"qemu":          func(s *State) { s.Hypervisor = "qemu" },
		"no pid":        func(s *State) { s.CLH.Pid = 0 },
		"relative dir":  func(s *State) { s.Dir = "x" },
		"no api socket": func(s *State) { s.APISocket = "" },
		"no port":       func(s *State) { s.Agent.Port = 0 },
		"serial":        func(s *State) { s.Agent.Kind = vm.ChannelSerial },
		"fsd no socket": func(s *State) { s.Virtiofsd = &hostproc.ID{Pid: 2} },
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
	for _, c := range []struct {
		name  string
		mode  string
		edit  func(t *testing.T, c *vm.Config, h *Hypervisor)
		class func(error) bool
		text  string
	}{
		{"missing kernel", fakeModeServe, func(_ *testing.T, c *vm.Config, _ *Hypervisor) { c.Kernel += ".none" }, errdefs.IsNotFound, "kernel"},
		{"random kernel", fakeModeServe, func(t *testing.T, c *vm.Config, _ *Hypervisor) {
			if err := os.WriteFile(c.Kernel, bytes.Repeat([]byte{0x5a}, 4096), 0o644); err != nil {
				t.Fatal(err)
			}
		}, errdefs.IsInvalidArgument, "neither a bzImage"},
		{"missing initrd", fakeModeServe, func(_ *testing.T, c *vm.Config, _ *Hypervisor) { c.Initrd += ".none" }, errdefs.IsNotFound, "initrd"},
		{"missing binary", fakeModeServe, func(_ *testing.T, c *vm.Config, _ *Hypervisor) { c.Binary = "/nonexistent/cloud-hypervisor" }, errdefs.IsNotFound, "/nonexistent/cloud-hypervisor"},
		{"missing share", fakeModeServe, func(_ *testing.T, c *vm.Config, _ *Hypervisor) { c.Share = "/nonexistent/share" }, errdefs.IsNotFound, "source"},
		{"tcg", fakeModeServe, func(_ *testing.T, c *vm.Config, _ *Hypervisor) { c.Accel = "tcg" }, errdefs.IsInvalidArgument, "KVM only"},
		{"no kvm", fakeModeServe, func(_ *testing.T, _ *vm.Config, h *Hypervisor) { h.opts.kvmDevice = "/nonexistent/kvm" }, errdefs.IsFailedPrecondition, "needs KVM"},
		{"serial channel", fakeModeServe, func(_ *testing.T, c *vm.Config, _ *Hypervisor) { c.Agent.Kind = vm.ChannelSerial }, errdefs.IsNotImplemented, "hybrid vsock"},
		{"vmm exits", fakeModeDie, func(*testing.T, *vm.Config, *Hypervisor) {}, errdefs.IsFailedPrecondition, "Error creating hypervisor"},
		{"boot refused", fakeModeRefuseBoot, func(*testing.T, *vm.Config, *Hypervisor) {}, errdefs.IsFailedPrecondition, "refused vm.boot: 500"},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			cfg, h := fakeConfig(t, c.mode)
			c.edit(t, cfg, h)
			v, err := h.Start(vmtest.Ctx(t, 10*time.Second), cfg)
			if err == nil {
				v.Stop(context.Background(), true)
				v.Cleanup()
				t.Fatal("started")
			}
			if !c.class(err) || !strings.Contains(err.Error(), c.text) {
				t.Errorf("got %v; want %q", err, c.text)
			}
			assertClean(t, cfg)
		})
	}
}

// TestStartTimeout: a VMM whose API never answers costs the context's time
// and is killed.
func TestStartTimeout(t *testing.T) {
	cfg, h := fakeConfig(t, fakeModeServe)
	pidFile := filepath.Join(filepath.Dir(cfg.Kernel), "silent.pid")
	cfg.Binary = filepath.Join(filepath.Dir(cfg.Kernel), "silent-clh")
	if err := os.WriteFile(cfg.Binary, []byte("#!/bin/sh\necho $$ >"+pidFile+"\necho starting >&2\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := h.Start(vmtest.Ctx(t, 500*time.Millisecond), cfg)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "cloud-hypervisor: starting") {
		t.Errorf("silent cloud-hypervisor: %v", err)
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
		t.Errorf("silent cloud-hypervisor %d left: %v", pid, err)
	}
	assertClean(t, cfg)
}
