package vmhost

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/hostproc"
)

func TestKernelPanic(t *testing.T) {
	console := "[    0.9] Run /init as init process\n[    2.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000200\n[    2.1] CPU: 0 PID: 1\n"
	if got := KernelPanic(console); got != "Attempted to kill init! exitcode=0x00000200" {
		t.Errorf("panic message %q", got)
	}
	if got := KernelPanic("all fine\n"); got != "" {
		t.Errorf("no panic: %q", got)
	}
}

// TestRecoverChecksStartTime: a live process with the saved pid but
// another start time is not the VMM: the VM is Done and the process
// untouched. A virtiofsd that outlived its VMM is killed.
func TestRecoverChecksStartTime(t *testing.T) {
	dir, err := os.MkdirTemp("", "vh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sleeper := func() *hostproc.Process {
		p, err := hostproc.Start(context.Background(), hostproc.Spec{Name: "sleep", Path: "sleep", Args: []string{"60"}, Log: filepath.Join(dir, "log")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.KillWait(time.Second) })
		return p
	}
	other, fsd := sleeper(), sleeper()
	fsdID := fsd.ID()
	m := &Machine{Name: "vmm", ID: "x", Dir: dir, Share: dir, VirtiofsSocket: "virtiofs.sock", Console: "console.log"}
	if err := m.Recover(context.Background(), hostproc.ID{Pid: other.Pid(), StartTime: other.ID().StartTime + 1}, &fsdID, "virtiofsd.log"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Done():
	case <-time.After(time.Second):
		t.Fatal("a VMM with another start time is not done")
	}
	if m.Alive() == nil {
		t.Error("a VMM with another start time is alive")
	}
	if !other.Running() {
		t.Error("recover killed a process that only had the pid")
	}
	select {
	case <-fsd.Done():
	case <-time.After(5 * time.Second):
		t.Error("the orphaned virtiofsd still runs")
	}
	if len(m.Pids()) != 1 {
		t.Errorf("pids %v: want the (gone) VMM's only", m.Pids())
	}
}
