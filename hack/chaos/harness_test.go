package main

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/magnetar-runtime/magnetar/shared/proc"
)

const leaderExitsEnv = "CHAOS_TEST_LEADER_EXITS"

func init() {
	if os.Getenv(leaderExitsEnv) == "1" {
		// the main goroutine stays on the leader thread, which then exits
		// alone (exit, not exit_group): the other threads go on
		runtime.LockOSThread()
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(leaderExitsEnv) == "1" {
		go func() {
			time.Sleep(time.Minute)
			os.Exit(0)
		}()
		syscall.RawSyscall(syscall.SYS_EXIT, 0, 0, 0)
	}
	os.Exit(m.Run())
}

// A process whose leader thread has exited while its other threads run is
// alive (they hold its files); it is gone once they are.
func TestAliveUntilTheLastThread(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), leaderExitsEnv+"=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := proc.ReadStat(pid)
		if err == nil && st.State == "Z" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader never turned zombie: %v %v", st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !alive(pid) {
		t.Fatal("alive = false for a process whose other threads still run")
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	_ = cmd.Wait()
	if alive(pid) {
		t.Fatal("alive = true after the process was killed and reaped")
	}
}

// The daemon of an alias is the one hack/lib.sh names; a handler of its
// own daemon is served by itself.
func TestDaemonOf(t *testing.T) {
	for handler, want := range map[string]string{
		"magnetar-runc":        "magnetar-runc",
		"magnetar-vmm":         "magnetar-vmm",
		"magnetar-clh":         "magnetar-vmm",
		"magnetar-stratovirt":  "magnetar-vmm",
		"magnetar-wasm-wazero": "magnetar-wasm",
	} {
		got, err := daemonOf("../..", handler)
		if err != nil || got != want {
			t.Errorf("daemonOf(%s) = %q, %v; want %q", handler, got, err, want)
		}
	}
}
