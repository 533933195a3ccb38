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
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
	"github.com/magnetar-runtime/magnetar/shared/proc"
)

// These tests drive the whole driver (Start, Stop, Cleanup, State,
// Recover) against a fake QEMU: the test binary itself (TestMain), which
// serves QMP on the -qmp socket. They need neither root nor QEMU.

// shortTempDir is a temporary directory short enough for unix sockets.
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "mq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// fakeConfig is a config for the fake QEMU in mode, with a kernel and an
// initrd that pass Start's checks.
func fakeConfig(t *testing.T, mode string) *vm.Config {
	t.Helper()
	t.Setenv(fakeQEMUEnv, mode)
	dir := shortTempDir(t)
	kernel := make([]byte, 0x400)
	copy(kernel[0x202:], "HdrS")
	if err := os.WriteFile(filepath.Join(dir, "vmlinuz"), kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "initrd"), []byte("070701"), 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	id := "fake" + strconv.FormatInt(time.Now().UnixNano(), 36)
	return &vm.Config{ID: id, Dir: filepath.Join(dir, "vm"), Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"),
		VCPUs: 1, MemoryMiB: 128, Agent: vm.AgentChannel{Kind: vm.ChannelSerial}, Accel: AccelTCG, Binary: self}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// procsWith lists the processes whose command line contains s.
func procsWith(s string) []int {
	var pids []int
	for _, p := range proc.Find(proc.Naming(s)) {
		pids = append(pids, p.PID)
	}
	return pids
}

// assertClean checks that no process of cfg runs and its run directory
// holds no socket or pid file.
func assertClean(t *testing.T, cfg *vm.Config) {
	t.Helper()
	if p := procsWith(cfg.ID); len(p) > 0 {
		t.Errorf("processes of %s left: %v", cfg.ID, p)
	}
	for _, f := range []string{QMPSocket, AgentSocket, VirtiofsSocket, PidFile} {
		if _, err := os.Lstat(filepath.Join(cfg.Dir, f)); err == nil {
			t.Errorf("%s left in the run directory", f)
		}
	}
}

func waitDone(t *testing.T, v vm.VM, d time.Duration) {
	t.Helper()
	select {
	case <-v.Done():
	case <-time.After(d):
		t.Fatalf("vm not done after %s", d)
	}
}

func TestFakeStartStop(t *testing.T) {
	cfg := fakeConfig(t, fakeModeServe)
	h := New(Options{})
	if h.Name() != "qemu" {
		t.Errorf("name %q", h.Name())
	}
	v, err := h.Start(ctxT(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	qv := v.(*VM)
	pid := v.Pids()[0]
	if v.Alive() != nil || !v.ExitedAt().IsZero() || len(v.Pids()) != 1 {
		t.Errorf("fresh vm: alive %v, exited %v, pids %v", v.Alive(), v.ExitedAt(), v.Pids())
	}
	if tg := v.Agent(); tg.Serial != filepath.Join(cfg.Dir, AgentSocket) || tg.Validate() != nil {
		t.Errorf("agent target %+v", tg)
	}
	// detached: a session of its own; the id in argv
	if sid, _ := unix.Getsid(pid); sid != pid {
		t.Errorf("qemu session %d, want its own (%d)", sid, pid)
	}
	if p := procsWith("guest=" + cfg.ID + ","); len(p) != 1 || p[0] != pid {
		t.Errorf("processes named by the id: %v, qemu is %d", p, pid)
	}
	if st, err := qv.Status(ctxT(t, 5*time.Second)); err != nil || st.Status != "running" {
		t.Errorf("status %+v %v", st, err)
	}
	if got := v.ConsoleTail(5); got != "fake guest booting" {
		t.Errorf("console tail %q", got)
	}
	if err := v.Cleanup(); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("cleanup of a running vm: %v", err)
	}
	start := time.Now()
	if err := v.Stop(ctxT(t, 10*time.Second), false); err != nil {
		t.Fatal(err)
	}
	waitDone(t, v, time.Second)
	if time.Since(start) > 3*time.Second {
		t.Errorf("graceful stop took %s", time.Since(start))
	}
	if err := v.Alive(); !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "exit status 0") {
		t.Errorf("alive after stop: %v", err)
	}
	if v.ExitedAt().IsZero() {
		t.Error("no exit time")
	}
	if err := v.Stop(ctxT(t, time.Second), true); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if err := v.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := v.Cleanup(); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
	assertClean(t, cfg)
	if _, err := os.Stat(filepath.Join(cfg.Dir, ConsoleLog)); err != nil {
		t.Errorf("console log removed: %v", err)
	}
}

// TestFakeStopKills: a QEMU that ignores quit is killed when the context
// ends; with force at once.
func TestFakeStopKills(t *testing.T) {
	cfg := fakeConfig(t, fakeModeIgnoreQuit)
	h := New(Options{})
	v, err := h.Start(ctxT(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := v.Stop(ctxT(t, 300*time.Millisecond), false); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("stop took %s: want the context's 300 ms and a kill", d)
	}
	if err := v.Alive(); err == nil || !strings.Contains(err.Error(), "exit status 137") {
		t.Errorf("alive: %v", err)
	}
	if err := v.Cleanup(); err != nil {
		t.Fatal(err)
	}

	cfg.ID += "f"
	v, err = h.Start(ctxT(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
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
	assertClean(t, cfg)
}

func TestFakeKilledFromOutside(t *testing.T) {
	cfg := fakeConfig(t, fakeModeServe)
	v, err := New(Options{}).Start(ctxT(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(v.Pids()[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, v, 5*time.Second)
	if err := v.Alive(); err == nil {
		t.Error("alive after SIGKILL")
	}
	if err := v.Stop(ctxT(t, time.Second), false); err != nil {
		t.Errorf("stop of a dead vm: %v", err)
	}
	if err := v.Cleanup(); err != nil {
		t.Fatal(err)
	}
	assertClean(t, cfg)
}

// TestFakeRecover: a new Hypervisor (a restarted daemon) takes the State
// and finds the running QEMU again; its Stop works and the first VM value
// sees the exit too.
func TestFakeRecover(t *testing.T) {
	cfg := fakeConfig(t, fakeModeServe)
	v1, err := New(Options{}).Start(ctxT(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := v1.State()
	if err != nil {
		t.Fatal(err)
	}
	var decoded State
	if err := json.Unmarshal(st, &decoded); err != nil || decoded.QEMU.Pid != v1.Pids()[0] || decoded.QEMU.StartTime == 0 ||
		decoded.Accel != AccelTCG || decoded.AgentSocket == "" || decoded.Hypervisor != Name {
		t.Fatalf("state %s: %v", st, err)
	}
	v2, err := New(Options{}).Recover(ctxT(t, 5*time.Second), st)
	if err != nil {
		t.Fatal(err)
	}
	if v2.Alive() != nil || v2.Pids()[0] != v1.Pids()[0] || v2.Agent() != v1.Agent() {
		t.Fatalf("recovered: alive %v pids %v agent %+v", v2.Alive(), v2.Pids(), v2.Agent())
	}
	st2, _ := v2.State()
	if !bytes.Equal(st, st2) {
		t.Errorf("state round trip:\n%s\n%s", st, st2)
	}
	if err := v2.Stop(ctxT(t, 10*time.Second), false); err != nil {
		t.Fatal(err)
	}
	waitDone(t, v2, time.Second)
	waitDone(t, v1, 5*time.Second)
	if err := v2.Cleanup(); err != nil {
		t.Fatal(err)
	}
	assertClean(t, cfg)

	// the same State once QEMU is gone: already Done
	v3, err := New(Options{}).Recover(ctxT(t, 5*time.Second), st)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, v3, time.Second)
	if v3.Alive() == nil {
		t.Error("a gone qemu is alive")
	}
}

func TestRecoverBadState(t *testing.T) {
	h := New(Options{})
	good := State{Hypervisor: Name, ID: "x", Dir: "/run/x", QMPSocket: "/run/x/qmp.sock", QEMU: hostproc.ID{Pid: 1},
		Agent: AgentState{Kind: vm.ChannelSerial}, AgentSocket: "/run/x/agent.sock"}
	for name, edit := range map[string]func(*State){
		"clh":           func(s *State) { s.Hypervisor = "cloud-hypervisor" },
		"no pid":        func(s *State) { s.QEMU.Pid = 0 },
		"relative dir":  func(s *State) { s.Dir = "x" },
		"vsock no cid":  func(s *State) { s.Agent = AgentState{Kind: vm.ChannelVsock} },
		"hvsock":        func(s *State) { s.Agent.Kind = vm.ChannelHybridVsock },
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
	h := New(Options{vsockDevice: "/nonexistent/vhost-vsock"})
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
			v, err := h.Start(ctxT(t, 10*time.Second), cfg)
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
	_, err := New(Options{}).Start(ctxT(t, 500*time.Millisecond), cfg)
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
