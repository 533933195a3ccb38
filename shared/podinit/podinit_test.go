package podinit

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary runs as the pod init when this variable is set: it first
// starts a child that exits at once (Run must reap it), then serves.
const helperEnv = "MAGNETAR_PODINIT_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		c := exec.Command("/bin/sh", "-c", "exit 3")
		if err := c.Start(); err != nil {
			os.Exit(10)
		}
		os.Stdout.WriteString(strconv.Itoa(c.Process.Pid) + "\n")
		if err := Run(); err != nil {
			os.Exit(11)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func state(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "gone"
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return f[0]
}

func TestReapsAndStopsOnTERM(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32)
	n, _ := out.Read(buf)
	child, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		t.Fatalf("helper said %q", buf[:n])
	}
	deadline := time.Now().Add(5 * time.Second)
	for state(child) != "gone" {
		if time.Now().After(deadline) {
			t.Fatalf("child %d not reaped: state %s", child, state(child))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pod init after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pod init ignored SIGTERM")
	}
}
