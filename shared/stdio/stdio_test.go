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
		{Stdout: "file:relative/path"},
		{Stdout: "file://host/var/log/x"},
		{Stdout: "file:///a/../b"},
		{Stderr: "ftp:///usr/bin/logger"},
		{Stdout: "binary://usr/bin/logger"},
		{Stdout: "binary:///usr/../bin/logger"},
		{Stdout: "binary:logger"},
		{Stdin: "binary:///usr/bin/logger"},
		{Stdout: "binary:///usr/bin/logger", Terminal: true},
		{Stdout: "binary:///usr/bin/logger", Stderr: "binary:///usr/bin/other"},
		{Stdout: filepath.Join(dir, "missing")},
		{Stdout: dir},
		{Stdout: "file://" + dir},
		{Stdout: "file://" + filepath.Join(reg, "sub", "log")}, // a parent is a file
		{Stdout: "/proc/self/ns/net"},                          // opens for reading only (RPC fuzz finding: was Unknown)
		{Stderr: "/proc/self/exe"},                             // a running program: ETXTBSY
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

// isDevNull reports whether f is /dev/null.
func isDevNull(t *testing.T, f any) bool {
	t.Helper()
	file, ok := f.(*os.File)
	if !ok || file == nil {
		return false
	}
	var got, want syscall.Stat_t
	if err := syscall.Fstat(int(file.Fd()), &got); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(os.DevNull, &want); err != nil {
		t.Fatal(err)
	}
	return got.Rdev == want.Rdev && got.Mode&syscall.S_IFMT == syscall.S_IFCHR
}

// A stream the config names no target for is /dev/null in the child, as
// containerd's shim gives it: never left unset, or go-runc reads runc's
// output through a pipe the container inherits, and waits for an EOF that
// comes only when the container exits (`ctr run --null-io` hung in
// Task.Create, an exec without stdio in Task.Start).
func TestNoTargetIsDevNull(t *testing.T) {
	dir := t.TempDir()
	out := mkfifo(t, dir, "out")
	before := openFDs(t)
	for _, c := range []Config{{}, {Stdout: out}, {Terminal: true}} {
		s, err := Open(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/bin/true")
		s.Set(cmd)
		if !isDevNull(t, cmd.Stdin) || !isDevNull(t, cmd.Stderr) {
			t.Errorf("%+v: stdin %v, stderr %v: want /dev/null", c, cmd.Stdin, cmd.Stderr)
		}
		if got := isDevNull(t, cmd.Stdout); got != (c.Stdout == "" || c.Terminal) {
			t.Errorf("%+v: stdout %v", c, cmd.Stdout)
		}
		// Files are the targets only: nothing where the config names none.
		if in, o, e := s.Files(); in != nil || e != nil || (o != nil) != (c.Stdout != "" && !c.Terminal) {
			t.Errorf("%+v: Files = %v, %v, %v", c, in, o, e)
		}
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		s.CloseAfterStart()
		s.Close()
	}
	if after := openFDs(t); after != before {
		t.Errorf("fds %d before, %d after", before, after)
	}
}

// A file:// target that does not exist yet is created with its parents
// (containerd's `ctr run --log-uri file:///…`), and appended to; stdout and
// stderr may name the same file.
func TestFileURICreated(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "a", "b", "ctr.log")
	uri := "file://" + logFile
	for i, line := range []string{"first", "second"} {
		s, err := Open(context.Background(), Config{Stdout: uri, Stderr: uri})
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		cmd := exec.Command("/bin/sh", "-c", "echo out:"+line+"; echo err:"+line+" >&2")
		s.Set(cmd)
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	got, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := "out:first\nerr:first\nout:second\nerr:second\n"; string(got) != want {
		t.Fatalf("log %q, want %q", got, want)
	}
}

// A NUL byte can name no file: Validate refuses it before the pod or the
// backend is looked at, plain or percent-encoded in a URI.
func TestValidateRefusesNUL(t *testing.T) {
	for _, c := range []Config{
		{Stdout: "/a\x00b"},
		{Stdin: "/run/x\x00"},
		{Stderr: "file:///var/log/a%00b"},
		{Stdout: "binary:///usr/bin/log%00ger"},
	} {
		if err := c.Validate(); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "NUL") {
			t.Errorf("Validate(%#v) = %v, want InvalidArgument naming the NUL", c, err)
		}
	}
}

// containerd opens its reader of an output FIFO in the background
// (containerd/fifo: a blocking open that waits for a writer). A process that
// ends before that open was made must not leave the reader waiting for a
// writer forever, nor lose what it wrote: Open waits for the reader.
func TestLateReaderGetsOutputAndEOF(t *testing.T) {
	out := mkfifo(t, t.TempDir(), "out")
	opened := make(chan *IO, 1)
	go func() {
		s, err := Open(context.Background(), Config{Stdout: out})
		if err != nil {
			t.Error(err)
		}
		opened <- s
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case <-opened:
		t.Fatal("Open returned before any reader had the FIFO open")
	default:
	}
	// containerd's reader, late: the open blocks until a writer has it
	got := make(chan string, 1)
	go func() {
		f, err := os.OpenFile(out, os.O_RDONLY, 0)
		if err != nil {
			got <- err.Error()
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		got <- string(b)
	}()
	s := <-opened
	if s == nil {
		t.FailNow()
	}
	_, stdout, _ := s.Files()
	if _, err := stdout.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	s.Close() // the process ended at once
	select {
	case b := <-got:
		if b != "last words" {
			t.Errorf("the reader got %q, want %q", b, "last words")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the reader never saw the end of the output (it waits for a writer forever)")
	}
}

// With no reader at all Open gives up waiting after ReaderWait and opens
// the FIFO all the same; Reopen (a recovery's) does not wait.
func TestNoReaderWaitIsBounded(t *testing.T) {
	out := mkfifo(t, t.TempDir(), "out")
	for _, tc := range []struct {
		name     string
		open     func(context.Context, Config) (*IO, error)
		min, max time.Duration
	}{{"Open", Open, ReaderWait, ReaderWait + 2*time.Second}, {"Reopen", Reopen, 0, time.Second}} {
		t0 := time.Now()
		s, err := tc.open(context.Background(), Config{Stdout: out})
		took := time.Since(t0)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		s.Close()
		if took < tc.min || took > tc.max {
			t.Errorf("%s took %s with no reader, want %s to %s", tc.name, took, tc.min, tc.max)
		}
	}
}
