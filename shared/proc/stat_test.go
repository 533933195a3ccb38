package proc

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestParseStat(t *testing.T) {
	// a command name with spaces and parentheses, as /proc shows it
	stat := "4242 (qemu (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 3 0 987654 1000 200 18446744073709551615\n"
	st, err := parseStat(stat)
	if err != nil || st != (Stat{State: "S", PPid: 1, StartTime: 987654}) {
		t.Fatalf("%+v %v", st, err)
	}
	for _, bad := range []string{"4242 qemu S 1", "4242 (qemu) S 1 2 3", "4242 (q) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 3 0 x 1", "4242 (q) S p 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 3 0 1 1"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := StartTime(1 << 30); !errdefs.IsNotFound(err) {
		t.Errorf("missing pid: %v", err)
	}
	st, err = ReadStat(os.Getpid())
	if err != nil || st.PPid != os.Getppid() || st.StartTime == 0 {
		t.Errorf("own stat %+v %v", st, err)
	}
}

func TestReopenAndChildren(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	kids := Children(func(args []string) bool { return strings.HasSuffix(args[0], "sleep") && args[1] == "30" })
	if len(kids) != 1 || kids[0].PID != pid {
		t.Fatalf("Children = %v, want pid %d", kids, pid)
	}
	start, err := StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if w := Reopen(pid, start+1); !isDone(w) {
		t.Fatal("a pid with another start time was watched")
	}
	w := Reopen(pid, start)
	if isDone(w) {
		t.Fatal("the live process is reported over")
	}
	_ = cmd.Process.Kill()
	select {
	case <-w.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("no exit seen")
	}
	if w := Reopen(0, 0); !isDone(w) {
		t.Fatal("pid 0 watched")
	}
}

func isDone(w *Watch) bool {
	select {
	case <-w.Done():
		return true
	default:
		return false
	}
}
