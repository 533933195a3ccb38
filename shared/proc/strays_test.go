package proc

import (
	"os/exec"
	"testing"
	"time"
)

// zombie starts a child that exits at once with code and that nobody
// waits for, and returns its pid once it is a zombie.
func zombie(t *testing.T, code string) int {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "exit "+code)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release() // as an orphan re-parented to a subreaper: no one waits
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if st, err := ReadStat(pid); err == nil && st.State == "Z" {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not become a zombie", pid)
		}
	}
}

func TestReapStraysTakesOnlyStrayZombies(t *testing.T) {
	stray, claimed := zombie(t, "3"), zombie(t, "4")
	claim(claimed) // as a Watch being opened on it
	got := map[int]int{}
	note := func(pid, code int) { got[pid] = code }

	seen := reapStrays(map[int]uint64{}, note)
	if len(got) != 0 {
		t.Fatalf("the first scan reaped %v: a zombie must be one for a whole interval first", got)
	}
	if _, ok := seen[stray]; !ok {
		t.Fatalf("the first scan did not note the stray zombie %d: %v", stray, seen)
	}
	if _, ok := seen[claimed]; ok {
		t.Fatalf("the first scan noted the watched zombie %d", claimed)
	}
	seen = reapStrays(seen, note)
	if got[stray] != 3 {
		t.Fatalf("the second scan reaped %v, want the stray %d with status 3", got, stray)
	}
	if _, err := ReadStat(stray); err == nil {
		t.Fatalf("the stray %d is still there", stray)
	}
	if st, err := ReadStat(claimed); err != nil || st.State != "Z" {
		t.Fatalf("the watched zombie %d was taken: %+v %v", claimed, st, err)
	}

	// once its watch is done with it, it is a stray like any other
	release(claimed)
	seen = reapStrays(seen, note)
	seen = reapStrays(seen, note)
	if got[claimed] != 4 || len(seen) != 0 {
		t.Fatalf("after release: reaped %v, still noted %v", got, seen)
	}
}

// A Watch gets its process's status even with the stray reaper running.
func TestWatchKeepsItsStatusFromReapStrays(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "sleep 0.2; exit 5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w, err := Open(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Release()
	seen := map[int]uint64{}
	for i := 0; i < 20; i++ {
		seen = reapStrays(seen, func(pid, _ int) { t.Errorf("reaped watched pid %d", pid) })
		time.Sleep(20 * time.Millisecond)
	}
	<-w.Done()
	if code, known, _ := w.Status(); !known || code != 5 {
		t.Fatalf("watch status %d known=%v, want 5", code, known)
	}
}
