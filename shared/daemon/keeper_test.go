package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/shared/fdstore"
)

// TestMain lets ensureKeeper work in tests: it starts os.Executable(), here
// this test binary, as the keeper, which then runs the keeper's main
// instead of the tests.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == KeeperArg {
		if err := runKeeper(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testKeeperSockets places a keeper's sockets in directories that do not
// exist yet, the task socket's apart from the API socket's, under root/run.
func testKeeperSockets(t *testing.T) (ks keeperSockets, run string) {
	t.Helper()
	run = filepath.Join(t.TempDir(), "run")
	return newKeeperSockets("fake", filepath.Join(run, "tasks", "fake-task.sock"), filepath.Join(run, "api", "fake.sock")), run
}

// gone tells whether pid has exited (a zombie counts as exited).
func gone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

func waitGone(pid int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for !gone(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// stopKeeperAtCleanup ends the keeper pid when the test ends, as prerm does.
func stopKeeperAtCleanup(t *testing.T, pid int) {
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		if !waitGone(pid, 5*time.Second) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// startKeeper runs ensureKeeper and returns the keeper's pid.
func startKeeper(t *testing.T, ks keeperSockets) int {
	t.Helper()
	if err := ensureKeeper(context.Background(), ks); err != nil {
		t.Fatalf("ensureKeeper: %v", err)
	}
	pid, ok := runningKeeper(ks)
	if !ok {
		t.Fatal("no running keeper after ensureKeeper")
	}
	stopKeeperAtCleanup(t, pid)
	return pid
}

// Issue #11: a --listen (or task socket) directory that does not exist yet
// is created, 0700, before the keeper's pid file is written there.
func TestEnsureKeeperMakesSocketDirs(t *testing.T) {
	ks, run := testKeeperSockets(t)
	startKeeper(t, ks)
	for _, d := range []string{run, filepath.Dir(ks.Task), filepath.Dir(ks.API)} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %o, want 0700", d, fi.Mode().Perm())
		}
	}
}

// Issue #11: a keeper whose sockets a newer keeper took over exits (it holds
// no connection here), instead of living on for good.
func TestKeeperExitsWhenReplaced(t *testing.T) {
	t.Run("pid file names another process", func(t *testing.T) {
		ks, _ := testKeeperSockets(t)
		pid := startKeeper(t, ks)
		if err := os.WriteFile(ks.PidFile, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
			t.Fatal(err)
		}
		if !waitGone(pid, 5*time.Second) {
			t.Fatalf("keeper %d still runs 5 s after its pid file named another process", pid)
		}
	})
	t.Run("run directory reset and a new keeper started", func(t *testing.T) {
		ks, run := testKeeperSockets(t)
		old := startKeeper(t, ks)
		if err := os.RemoveAll(run); err != nil {
			t.Fatal(err)
		}
		pid := startKeeper(t, ks)
		if pid == old {
			t.Fatalf("the keeper of the wiped directory %d was reused", old)
		}
		if !waitGone(old, 5*time.Second) {
			t.Fatalf("replaced keeper %d still runs 5 s after keeper %d took its sockets", old, pid)
		}
		if p, ok := runningKeeper(ks); !ok || p != pid {
			t.Errorf("after the old keeper exited: running keeper %d %v, want %d", p, ok, pid)
		}
	})
}

// Keepers started by older daemons (the command line without the fd
// store's socket, or without the pid file either) are still recognised and
// reused: replacing one would close every task connection it holds. They
// hold no descriptors: the fd store client finds none.
func TestOldKeeperArgvReused(t *testing.T) {
	for _, lacks := range olderArgs {
		t.Run(fmt.Sprintf("lacking %d", lacks), func(t *testing.T) {
			ks, _ := testKeeperSockets(t)
			if err := os.MkdirAll(filepath.Dir(ks.Task), 0o700); err != nil {
				t.Fatal(err)
			}
			self, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			argv := ks.argv()
			cmd := exec.Command(self, argv[:len(argv)-lacks]...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { _ = cmd.Wait() }()
			pid := cmd.Process.Pid
			stopKeeperAtCleanup(t, pid)
			if lacks == 2 {
				// the older daemon wrote the pid file itself
				if err := os.WriteFile(ks.PidFile, []byte(strconv.Itoa(pid)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				if p, ok := runningKeeper(ks); ok && p == pid {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the keeper with the older command line is not recognised")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := ensureKeeper(context.Background(), ks); err != nil {
				t.Fatal(err)
			}
			if p, ok := runningKeeper(ks); !ok || p != pid || gone(pid) {
				t.Errorf("ensureKeeper replaced the older keeper %d: running %d %v", pid, p, ok)
			}
			if _, err := fdstore.NewClient(ks.FDs).List(); !errdefs.IsUnavailable(err) {
				t.Errorf("fd store of an older keeper: %v, want Unavailable", err)
			}
		})
	}
}

// A keeper started by ensureKeeper serves the fd store: a descriptor held
// through it stays open after the holder closed its own.
func TestKeeperHoldsFDs(t *testing.T) {
	ks, _ := testKeeperSockets(t)
	startKeeper(t, ks)
	fi, err := os.Stat(ks.FDs)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("fd store socket mode %o, want 0600", fi.Mode().Perm())
	}
	c := fdstore.NewClient(ks.FDs)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := c.Hold("ctr/-/stdout", w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	_ = r.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read of the held pipe: %v, want no writer gone", err)
	}
	if err := c.RetainHeld(); err != nil {
		t.Fatal(err)
	}
	if err := c.Release("ctr/-/stdout"); err != nil {
		t.Fatal(err)
	}
	_ = r.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read of the released pipe: %v, want EOF", err)
	}
}
