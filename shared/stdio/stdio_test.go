package stdio

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/errdefs"
)

func mkfifo(t *testing.T, dir, name string) string {
	p := filepath.Join(dir, name)
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// A child writes straight into the FIFOs; the reader sees EOF when it exits,
// and nothing of ours stays open.
func TestDirectFIFOs(t *testing.T) {
	dir := t.TempDir()
	out, errp, in := mkfifo(t, dir, "out"), mkfifo(t, dir, "err"), mkfifo(t, dir, "in")
	before := openFDs(t)
	ctx := context.Background()
	s, err := Open(ctx, Config{Stdin: in, Stdout: out, Stderr: errp})
	if err != nil {
		t.Fatal(err)
	}
	// containerd's side: readers for out/err, a writer for in
	outR, _ := os.OpenFile(out, os.O_RDONLY, 0)
	errR, _ := os.OpenFile(errp, os.O_RDONLY, 0)
	inW, _ := os.OpenFile(in, os.O_WRONLY, 0)
	cmd := exec.Command("/bin/sh", "-c", "read line; echo out:$line; echo err:$line >&2")
	s.Set(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.CloseAfterStart()
	inW.Write([]byte("hello\n"))
	inW.Close()
	done := make(chan string, 2)
	go func() { b, _ := io.ReadAll(outR); done <- "out=" + string(b) }()
	go func() { b, _ := io.ReadAll(errR); done <- "err=" + string(b) }()
	cmd.Wait()
	s.Close()
	got := map[string]bool{}
	for i := 0; i < 2; i++ {
		select {
		case r := <-done:
			got[strings.TrimSpace(r)] = true
		case <-time.After(5 * time.Second):
			t.Fatal("no EOF on the output FIFOs")
		}
	}
	if !got["out=out:hello"] || !got["err=err:hello"] {
		t.Errorf("got %v", got)
	}
	outR.Close()
	errR.Close()
	time.Sleep(10 * time.Millisecond)
	if after := openFDs(t); after != before {
		t.Errorf("fds %d before, %d after", before, after)
	}
}

// CloseStdin ends the child's stdin even though the writer stays open.
func TestCloseStdin(t *testing.T) {
	dir := t.TempDir()
	in := mkfifo(t, dir, "in")
	s, err := Open(context.Background(), Config{Stdin: in})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	inW, _ := os.OpenFile(in, os.O_WRONLY, 0)
	defer inW.Close()
	cmd := exec.Command("/bin/cat")
	s.Set(cmd)
	cmd.Start()
	s.CloseAfterStart()
	s.CloseStdin()
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case <-errc:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatal("cat did not see EOF after CloseStdin")
	}
}

func TestBadConfig(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "file")
	os.WriteFile(reg, nil, 0o600)
	for _, c := range []Config{
		{Stdout: "relative/path"},
		{Stdout: "/a/../b"},
		{Stderr: "binary:///usr/bin/logger"},
		{Stdout: filepath.Join(dir, "missing")},
		{Stdout: dir},
	} {
		s, err := Open(context.Background(), c)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("Open(%+v) = %v, want InvalidArgument", c, err)
		}
		if s != nil {
			t.Errorf("Open(%+v) returned an IO with an error", c)
		}
	}
	s, err := Open(context.Background(), Config{Stdout: "file://" + reg})
	if err != nil {
		t.Fatalf("file:// stdout: %v", err)
	}
	s.Close()
}

// After a terminal process exits, Finish drains its output but keeps its
// stdin FIFO open and drained: containerd's late stdin writes must not fail
// (CRI would then close the output it is still reading). Close ends it all.
func TestTerminalFinishKeepsStdin(t *testing.T) {
	dir := t.TempDir()
	out, in := mkfifo(t, dir, "out"), mkfifo(t, dir, "in")
	before := openFDs(t)
	ctx := context.Background()
	s, err := Open(ctx, Config{Stdin: in, Stdout: out, Terminal: true})
	if err != nil {
		t.Fatal(err)
	}
	outR, _ := os.OpenFile(out, os.O_RDONLY, 0)
	defer outR.Close()
	inW, _ := os.OpenFile(in, os.O_WRONLY, 0)
	defer inW.Close()
	master, slave, err := console.NewPty()
	if err != nil {
		t.Skipf("no pty here: %v", err)
	}
	s.AttachConsole(master)
	sl, err := os.OpenFile(slave, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	sl.Write([]byte("on-the-tty\n"))
	sl.Close() // the process exited
	got := make(chan string, 1)
	go func() { b, _ := io.ReadAll(outR); got <- string(b) }()
	s.Wait()
	s.Finish()
	select {
	case b := <-got:
		if !strings.Contains(b, "on-the-tty") {
			t.Fatalf("output %q lost", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("output FIFO not closed after Finish")
	}
	for i := 0; i < 100; i++ { // more than nothing, less than a pipe buffer
		if _, err := inW.Write([]byte("late keystroke\n")); err != nil {
			t.Fatalf("stdin write %d after Finish: %v", i, err)
		}
	}
	s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := inW.Write([]byte("x"))
		if err != nil {
			break // EPIPE: our end is closed
		}
		if time.Now().After(deadline) {
			t.Fatal("stdin FIFO still open after Close")
		}
		time.Sleep(10 * time.Millisecond)
	}
	outR.Close()
	inW.Close()
	if after := openFDs(t); after != before {
		t.Fatalf("fds: %d before, %d after", before, after)
	}
}

// The stdin FIFO outlives the request that opened it: containerd may open its
// write end only after that request (Task.Start of an exec) has returned and
// its context is cancelled.
func TestStdinOutlivesTheRequest(t *testing.T) {
	dir := t.TempDir()
	in := mkfifo(t, dir, "in")
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Open(ctx, Config{Stdin: in})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cancel() // the request is over; no writer has opened the FIFO yet
	time.Sleep(50 * time.Millisecond)
	// non-blocking: ENXIO when nobody holds the read end any more
	w, err := os.OpenFile(in, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("stdin FIFO has no reader after the request ended: %v", err)
	}
	if _, err := w.WriteString("one\n"); err != nil {
		t.Fatalf("writing stdin after the request ended: %v", err)
	}
	w.Close()
	r, _, _ := s.Files()
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "one\n" {
		t.Fatalf("stdin read %q, %v; want \"one\\n\"", got, err)
	}
}
