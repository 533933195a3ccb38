package reaper

import (
	"context"
	"os/exec"
	"sync"
	"testing"
	"time"

	runc "github.com/containerd/go-runc"
)

// The test binary's children are only the ones these tests start, so the
// global wait4(-1) is safe here — with one reaper for the whole binary, as in
// the guest: two reapers would steal each other's exits.
var (
	sharedOnce sync.Once
	shared     *Reaper
)

func testReaper() *Reaper {
	sharedOnce.Do(func() {
		shared = New()
		go shared.Run(context.Background())
	})
	return shared
}

func TestStartWaitExitCodes(t *testing.T) {
	r := testReaper()
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"/bin/sh", "-c", "exit 0"}, 0},
		{[]string{"/bin/sh", "-c", "exit 7"}, 7},
		{[]string{"/bin/sh", "-c", "kill -9 $$"}, 128 + 9},
	} {
		cmd := exec.Command(c.args[0], c.args[1:]...)
		ch, err := r.Start(cmd)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.Wait(cmd, ch)
		if err != nil || got != c.want {
			t.Fatalf("%v: status %d, %v; want %d", c.args, got, err, c.want)
		}
	}
}

func TestOutputIsFlushed(t *testing.T) {
	r := testReaper()
	cmd := exec.Command("/bin/sh", "-c", "echo hello")
	var out stringsBuilder
	cmd.Stdout = &out
	ch, err := r.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := r.Wait(cmd, ch); st != 0 || out.String() != "hello\n" {
		t.Fatalf("status %d, output %q", st, out.String())
	}
}

type stringsBuilder struct{ b []byte }

func (s *stringsBuilder) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }
func (s *stringsBuilder) String() string              { return string(s.b) }

// An exit reaped before anyone waits for the pid (a container init whose
// pid comes from a pid file) is kept for a late WaitPid; a stale one (before
// since) is not handed out.
func TestLateWaiterAndStaleExit(t *testing.T) {
	r := testReaper()
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.Kick()
		r.mu.Lock()
		_, ok := r.unclaimed[pid]
		r.mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child not reaped")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-r.WaitPid(pid, time.Now().Add(time.Hour)):
		t.Fatal("a stale exit was handed out")
	default:
	}
	r.mu.Lock()
	delete(r.waiters, pid) // the stale waiter must not catch a recycled pid later
	r.mu.Unlock()
	select {
	case e := <-r.WaitPid(pid, time.Time{}):
		if e.Status != 0 {
			t.Fatalf("status %d", e.Status)
		}
	case <-time.After(time.Second):
		t.Fatal("late waiter got nothing")
	}
	// a kept exit of a pid nobody started here
	r.dispatch(Exit{Pid: 1 << 30, Status: 3, At: time.Now()})
	select {
	case e := <-r.WaitPid(1<<30, time.Time{}):
		if e.Status != 3 {
			t.Fatalf("status %d", e.Status)
		}
	case <-time.After(time.Second):
		t.Fatal("late waiter got nothing")
	}
}

func TestUnclaimedIsBounded(t *testing.T) {
	r := New()
	for i := 1; i <= keep+10; i++ {
		r.dispatch(Exit{Pid: i, At: time.Now()})
	}
	if len(r.unclaimed) != keep || len(r.order) != keep {
		t.Fatalf("kept %d/%d", len(r.unclaimed), len(r.order))
	}
	if _, ok := r.unclaimed[1]; ok {
		t.Fatal("oldest exit not dropped")
	}
}

func TestIsARuncMonitor(t *testing.T) {
	var _ runc.ProcessMonitor = New()
}
