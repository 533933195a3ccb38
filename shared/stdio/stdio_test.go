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
