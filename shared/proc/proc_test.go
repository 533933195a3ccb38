package proc

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   int
	}{{"exit 0", 0}, {"exit 7", 7}, {"kill -9 $$", 137}} {
		cmd := exec.Command("/bin/sh", "-c", "sleep 0.1; "+tc.script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		w, err := Open(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-w.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("no exit seen")
		}
		code, known, _ := w.Status()
		if !known || code != tc.want {
			t.Errorf("%s: status %d known=%v, want %d", tc.script, code, known, tc.want)
		}
	}
}

// Fifty watched processes cost neither a thread nor a goroutine each, and
// Notify runs once per exit, registered before or after it.
func TestManyWatchersNoThreads(t *testing.T) {
	var cmds []*exec.Cmd
	var ws []*Watch
	before := runtime.NumGoroutine()
	var notified atomic.Int32
	for i := 0; i < 50; i++ {
		cmd := exec.Command("/bin/sleep", "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		w, err := Open(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		w.Notify(func() { notified.Add(1) })
		cmds, ws = append(cmds, cmd), append(ws, w)
	}
	if n := runtime.NumGoroutine() - before; n > 5 {
		t.Errorf("%d more goroutines for 50 watches, want none per watch", n)
	}
	for _, c := range cmds {
		c.Process.Signal(syscall.SIGTERM)
	}
	for _, w := range ws {
		select {
		case <-w.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("no exit seen")
		}
		if code, known, _ := w.Status(); !known || code != 128+15 {
			t.Errorf("status %d %v", code, known)
		}
	}
	for end := time.Now().Add(5 * time.Second); notified.Load() != 50 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := notified.Load(); n != 50 {
		t.Errorf("%d Notify calls, want 50", n)
	}
	done := make(chan struct{})
	ws[0].Notify(func() { close(done) }) // after the exit: runs anyway
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("Notify after the exit never ran")
	}
	if _, err := Open(0); err == nil {
		t.Error("Open(0) must fail")
	}
}

func TestFind(t *testing.T) {
	mark := "magnetar-find-test-" + strconv.Itoa(os.Getpid())
	cmd := exec.Command("sleep", "30")
	cmd.Args[0] = mark // what /proc shows as its argv[0]
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	got := Find(Naming(mark))
	if len(got) != 1 || got[0].PID != cmd.Process.Pid || got[0].Args[0] != mark {
		t.Fatalf("Find = %+v, want pid %d", got, cmd.Process.Pid)
	}
	if got[0].Line() != mark+" 30" {
		t.Fatalf("Line = %q", got[0].Line())
	}
	_ = cmd.Process.Kill()
	_, _ = cmd.Process.Wait()
	if got := Find(Naming(mark)); len(got) != 0 {
		t.Fatalf("after exit Find = %+v", got)
	}
	if got := Find(func([]string) bool { return true }); len(got) == 0 {
		t.Fatal("Find(all) is empty")
	}
	for _, p := range Find(func([]string) bool { return true }) {
		if p.PID == os.Getpid() {
			t.Fatal("Find lists this process")
		}
	}
}
