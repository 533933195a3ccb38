package vmmsb

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/daemon"
)

// fakePoolVM leaves what a pool VM leaves on the host (run and state
// directories, a claim when id is set) and a process naming its run
// directory, as QEMU's command line does.
func fakePoolVM(t *testing.T, p *vmPool, name, id string) <-chan struct{} {
	t.Helper()
	run := filepath.Join(p.d.cfg.RunDir, name)
	for _, d := range []string{run, filepath.Join(p.d.env.Dir, poolStateIn, name, "share")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if id != "" {
		if err := os.WriteFile(filepath.Join(run, claimFile), []byte(id), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f := filepath.Join(run, "console.log")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("tail", "-f", f)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	return done
}

// gone reports whether the process of done has ended (within a second).
func gone(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	case <-time.After(time.Second):
		return false
	}
}

// TestPoolSweepAndReclaim: a restarted daemon removes the pool VMs nobody
// claimed and leaves a claimed one to its pod, whose Stop (reclaim)
// removes it.
func TestPoolSweepAndReclaim(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (cgroups, namespaces)")
	}
	cfg := DefaultConfig()
	cfg.RunDir = t.TempDir()
	d := &driver{env: &daemon.Env{Life: context.Background(), Dir: t.TempDir()}, cfg: cfg}
	p := &vmPool{d: d, hold: filepath.Join(cfg.RunDir, poolNSDir, "net")}
	free := fakePoolVM(t, p, "pool-00000000001", "")
	mine := fakePoolVM(t, p, "pool-00000000002", "pod-a")

	p.sweep(context.Background())
	if !gone(free) {
		t.Error("the sweep left an unclaimed pool VM's process")
	}
	for _, dir := range []string{filepath.Join(cfg.RunDir, "pool-00000000001"), filepath.Join(d.env.Dir, poolStateIn, "pool-00000000001")} {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("the sweep left %s", dir)
		}
	}
	if gone(mine) {
		t.Fatal("the sweep killed a claimed pool VM")
	}
	if got := p.claimOf("pool-00000000002"); got != "pod-a" {
		t.Fatalf("claim = %q", got)
	}

	p.reclaim(context.Background(), "pod-b") // not its
	if gone(mine) {
		t.Fatal("another pod's reclaim killed the VM")
	}
	p.reclaim(context.Background(), "pod-a")
	if !gone(mine) {
		t.Error("reclaim left the claimed VM's process")
	}
	if names := p.poolNames(); len(names) != 0 {
		t.Errorf("pool VMs left: %v", names)
	}
}
