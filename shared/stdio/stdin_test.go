package stdio

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Wait, which a backend calls once the process has exited and before it
// reports the exit, does not wait for containerd to close its end of
// stdin: CRI holds it open while the container lives.
func TestWaitDoesNotWaitForStdin(t *testing.T) {
	dir := t.TempDir()
	in := mkfifo(t, dir, "in")
	s, err := Open(context.Background(), Config{Stdin: in})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	inW, err := os.OpenFile(in, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer inW.Close()
	cmd := exec.Command("/bin/true")
	s.Set(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.CloseAfterStart()
	_ = cmd.Wait()
	done := make(chan struct{})
	go func() { s.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait blocks until containerd closes its end of stdin")
	}
}

// What containerd wrote to stdin before it closed its end and sent CloseIO
// (CRI does both at once) reaches the process.
func TestCloseStdinDeliversWhatWasWritten(t *testing.T) {
	for i := range 20 {
		dir := t.TempDir()
		in := mkfifo(t, dir, "in")
		out := filepath.Join(dir, "out")
		s, err := Open(context.Background(), Config{Stdin: in, Stdout: "file://" + out})
		if err != nil {
			t.Fatal(err)
		}
		inW, err := os.OpenFile(in, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/bin/cat")
		s.Set(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		s.CloseAfterStart()
		if _, err := inW.WriteString("a\nb\n"); err != nil {
			t.Fatal(err)
		}
		inW.Close()
		s.CloseStdin()
		errc := make(chan error, 1)
		go func() { errc <- cmd.Wait() }()
		select {
		case <-errc:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("cat did not see EOF")
		}
		s.Close()
		if b, _ := os.ReadFile(out); string(b) != "a\nb\n" {
			t.Fatalf("run %d: cat read %q, want %q", i, b, "a\nb\n")
		}
	}
}
