package hostproc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func TestStartTime(t *testing.T) {
	if _, err := StartTime(1 << 30); !errdefs.IsNotFound(err) {
		t.Errorf("missing pid: %v", err)
	}
}

func TestLastLines(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\r\nb\r\n", 5, "a\nb"},
		{"", 3, ""},
		{"a\nb", 0, ""},
	} {
		if got := lastLines([]byte(c.in), c.n); got != c.want {
			t.Errorf("lastLines(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
	dir := t.TempDir()
	big := strings.Repeat("x", 100<<10) + "\nlast line\n"
	os.WriteFile(filepath.Join(dir, "log"), []byte(big), 0o644)
	if got := Tail(filepath.Join(dir, "log"), 1); got != "last line" {
		t.Errorf("tail of a big file %q", got)
	}
	if got := Tail(filepath.Join(dir, "none"), 1); got != "" {
		t.Errorf("tail of a missing file %q", got)
	}
}

func TestStartWatchRecover(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	p, err := Start(context.Background(), Spec{Name: "sh", Path: "sh", Args: []string{"-c", "echo hello; echo oops >&2; exec sleep 60"}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer p.KillWait(time.Second)
	if !p.Running() || p.ExitStatus() != "" || !p.ExitedAt().IsZero() || p.Name() != "sh" {
		t.Fatalf("fresh process: running %v, status %q", p.Running(), p.ExitStatus())
	}
	if sid, _ := unix.Getsid(p.Pid()); sid != p.Pid() {
		t.Errorf("session %d, want its own", sid)
	}
	st, err := StartTime(p.Pid())
	if err != nil || st != p.ID().StartTime {
		t.Errorf("start time %d %v, id %+v", st, err, p.ID())
	}
	deadline := time.Now().Add(5 * time.Second)
	for Tail(log, 2) != "hello\noops" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := Tail(log, 2); got != "hello\noops" {
		t.Errorf("log %q", got)
	}

	// found again by pid and start time; not with another start time
	r := Recover("sh", p.ID())
	if !r.Running() || r.Pid() != p.Pid() {
		t.Fatal("not recovered")
	}
	if wrong := Recover("sh", ID{Pid: p.Pid(), StartTime: p.ID().StartTime + 1}); wrong.Running() || wrong.ExitStatus() != "exit status unknown" {
		t.Errorf("recovered with a wrong start time: running %v", wrong.Running())
	}
	if none := Recover("sh", ID{}); none.Running() {
		t.Error("recovered pid 0")
	}

	if err := p.KillWait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	// two watches of one child: whichever reaps it first knows the status
	if st := p.ExitStatus(); (st != "exit status 137" && st != "exit status unknown") || p.ExitedAt().IsZero() {
		t.Errorf("after SIGKILL: %q at %v", p.ExitStatus(), p.ExitedAt())
	}
	// the recovered watch sees the exit too, its status unknown or known
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(unix.SIGTERM); err != nil {
		t.Errorf("signal after exit: %v", err)
	}
	if err := p.KillWait(time.Second); err != nil {
		t.Errorf("second kill: %v", err)
	}
	if g := Recover("sh", p.ID()); g.Running() {
		t.Error("a gone process recovered")
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Start(context.Background(), Spec{Name: "x", Path: "/nonexistent/x", Log: filepath.Join(dir, "log")}); !errdefs.IsNotFound(err) {
		t.Errorf("missing binary: %v", err)
	}
	if _, err := Start(context.Background(), Spec{Name: "x", Path: "no-such-binary-in-path", Log: filepath.Join(dir, "log")}); !errdefs.IsNotFound(err) {
		t.Errorf("missing in PATH: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Start(ctx, Spec{Name: "x", Path: "true", Log: filepath.Join(dir, "log")}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
	if _, err := Start(context.Background(), Spec{Name: "x", Path: "true", Log: filepath.Join(dir, "no", "log")}); err == nil {
		t.Error("unwritable log accepted")
	}
}

func TestExitStatus(t *testing.T) {
	p, err := Start(context.Background(), Spec{Name: "sh", Path: "sh", Args: []string{"-c", "exit 3"}, Log: filepath.Join(t.TempDir(), "log")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p.ExitStatus(); st != "exit status 3" {
		t.Errorf("status %q", st)
	}
}

// TestKillChildrenFirst: under a child subreaper (as the daemon is), a
// process killed with KillWait leaves no child of its own behind, running
// or zombie, re-parented to us.
func TestKillChildrenFirst(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skip(err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	// the shell ignores SIGTERM and waits for its child: only SIGKILL ends it
	p, err := Start(context.Background(), Spec{Name: "sh", Path: "sh", Args: []string{"-c", "trap '' TERM; sleep 61 & wait"}, Log: filepath.Join(t.TempDir(), "log")})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(p.children()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	kids := p.children()
	if len(kids) != 1 {
		t.Fatalf("children %v", kids)
	}
	if err := p.KillWait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	for _, k := range kids {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(k) + "/stat"); err == nil {
			t.Errorf("child %d left: %s", k, b)
			unix.Kill(k, unix.SIGKILL)
		}
	}
}

// TestAdopt: a process the daemon did not start through Start is watched by
// its pid (its exit seen, and reaped when it is a child); a pid that does not
// exist is NotFound.
func TestAdopt(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p, err := Adopt("sleeper", cmd.Process.Pid)
	if err != nil {
		_ = cmd.Process.Kill()
		t.Fatal(err)
	}
	_ = cmd.Process.Release()
	if !p.Running() || p.ID().StartTime == 0 {
		t.Fatalf("adopted: running %v, id %+v", p.Running(), p.ID())
	}
	if err := p.KillWait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := p.ExitStatus(); got != "exit status 137" {
		t.Errorf("exit: %q", got)
	}
	if _, err := Adopt("gone", 1<<22+7); !errdefs.IsNotFound(err) {
		t.Errorf("a pid that does not exist: %v, want NotFound", err)
	}
}
