package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/agentclient"
	"github.com/magnetar-runtime/magnetar/shared/clhapi"
	"github.com/magnetar-runtime/magnetar/shared/proc"
)

// The TestVM* tests run the stand-in as a process (the test binary itself,
// TestMain) and boot the real guest image under it. They need root, QEMU
// and the guest image named by MAGNETAR_GUEST_IMAGE (make vm-test sets it);
// without them they skip, saying why.

const standinEnv = "MAGNETAR_TEST_RUN_STANDIN"

func TestMain(m *testing.M) {
	if os.Getenv(standinEnv) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// vmImage is the guest image, or a skip.
func vmImage(t *testing.T) (kernel, initrd string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("VM tests need root")
	}
	dir := os.Getenv("MAGNETAR_GUEST_IMAGE")
	if dir == "" {
		t.Skip("MAGNETAR_GUEST_IMAGE is not set (make vm-test builds the guest image and sets it)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skipf("no QEMU: %v", err)
	}
	return filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initramfs.cpio")
}

// standin is one stand-in process with a booted guest (no share, no NIC).
type standin struct {
	cmd    *exec.Cmd
	dir    string
	vsock  string
	exited chan error
}

func startStandin(t *testing.T) *standin {
	t.Helper()
	kernel, initrd := vmImage(t)
	dir := shortDir(t)
	api := filepath.Join(dir, "api.sock")
	self, _ := os.Executable()
	s := &standin{dir: dir, vsock: filepath.Join(dir, "vsock.sock"), exited: make(chan error, 1)}
	s.cmd = exec.Command(self, "--api-socket", "path="+api)
	s.cmd.Env = append(os.Environ(), standinEnv+"=1")
	logf, _ := os.Create(filepath.Join(dir, "standin.log"))
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		for _, p := range proc.Find(proc.Naming(dir + "/")) {
			t.Errorf("left: %d %s", p.PID, p.Line())
			syscall.Kill(p.PID, syscall.SIGKILL)
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "standin.log"))
			t.Logf("stand-in log:\n%s", b)
		}
	})
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", api)
	}}}
	put := func(path string, body any) {
		t.Helper()
		var rd *strings.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = strings.NewReader(string(b))
		} else {
			rd = strings.NewReader("")
		}
		req, _ := http.NewRequest("PUT", "http://localhost/api/v1"+path, rd)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		var resp *http.Response
		var err error
		for i := 0; i < 100; i++ {
			if resp, err = hc.Do(req); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
			req.Body = http.NoBody
			if body != nil {
				b, _ := json.Marshal(body)
				req.Body = nopCloser{strings.NewReader(string(b))}
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 {
			t.Fatalf("%s: %s", path, resp.Status)
		}
	}
	cmdline := "console=ttyS0 panic=-1 quiet " + agentapi.CmdlineTransport + "=vsock:1024 " + agentapi.CmdlineShare + "=none"
	put("/vm.create", clhapi.VmConfig{
		Payload: clhapi.PayloadConfig{Kernel: &kernel, Initramfs: &initrd, Cmdline: &cmdline},
		Cpus:    &clhapi.CpusConfig{BootVcpus: 1, MaxVcpus: 1}, Memory: &clhapi.MemoryConfig{Size: 512 << 20},
		Vsock:   &clhapi.VsockConfig{Cid: 3, Socket: s.vsock},
		Serial:  &clhapi.SerialConfig{Mode: clhapi.ConsoleModeFile, File: ptr(filepath.Join(dir, "console.log"))},
		Console: &clhapi.ConsoleConfig{Mode: clhapi.ConsoleModeOff},
	})
	put("/vm.boot", nil)
	return s
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

// qemuPid is the stand-in's QEMU: the child of one of its threads.
func (s *standin) qemuPid(t *testing.T) int {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", s.cmd.Process.Pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				return pid
			}
		}
	}
	t.Fatal("the stand-in has no QEMU child")
	return 0
}

func (s *standin) waitExit(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-s.exited:
		return err
	case <-time.After(d):
		t.Fatalf("the stand-in still runs %s later", d)
		return nil
	}
}

// TestVMStandinAgentAndPowerOff: shared/agentclient reaches the guest's
// agent through the hybrid vsock socket (CONNECT, OK, then the agent's
// virtio-serial port), twice in a row; a guest that powers off ends the
// stand-in with status 0, as it ends Cloud Hypervisor.
func TestVMStandinAgentAndPowerOff(t *testing.T) {
	s := startStandin(t)
	target := agentclient.Target{HybridVsock: s.vsock, Port: 1024}
	alive := func() error {
		select {
		case err := <-s.exited:
			s.exited <- err
			return errors.New("the stand-in exited")
		default:
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	c, err := agentclient.Dial(ctx, target, agentclient.Options{Alive: alive})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("agent %s answered %.2f s after vm.boot", c.Health().GetAgentVersion(), time.Since(start).Seconds())
	c.Close()
	// a second connection, after the first one's hang-up
	start = time.Now()
	c, err = agentclient.Dial(ctx, target, agentclient.Options{Alive: alive})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("again after %.2f s", time.Since(start).Seconds())
	if _, err := c.Sandbox().Shutdown(ctx, &agentapi.ShutdownRequest{}); err != nil {
		t.Logf("shutdown: %v (the guest may power off before it answers)", err)
	}
	if err := s.waitExit(t, 30*time.Second); err != nil {
		t.Errorf("after the guest powered off: %v, want exit status 0", err)
	}
	if _, err := os.Lstat(s.vsock); err == nil {
		t.Error("the vsock socket outlived the VM")
	}
}

// TestVMStandinDiesWithQEMU: QEMU killed from outside ends the stand-in
// (non-zero), as a guest crash ends Cloud Hypervisor; the stand-in killed
// ends its QEMU.
func TestVMStandinDiesWithQEMU(t *testing.T) {
	s := startStandin(t)
	if err := syscall.Kill(s.qemuPid(t), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := s.waitExit(t, 10*time.Second); err == nil {
		t.Error("the stand-in exited 0 after its QEMU was killed")
	}
	s2 := startStandin(t)
	q := s2.qemuPid(t)
	s2.cmd.Process.Kill()
	s2.waitExit(t, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(q, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if syscall.Kill(q, 0) == nil {
		t.Errorf("QEMU %d outlived its stand-in", q)
	}
}
