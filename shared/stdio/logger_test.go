package stdio

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// logger is a binary:// logger for tests. Its query gives it dir (where it
// records its pid, arguments and environment, and the output it read) and
// mode: "close" signals readiness by closing fd 5, "byte" by writing to it,
// "never" never does. It has no PATH (containerd gives a logger none).
const logger = `#!/bin/sh
dir=$2 mode=$4
echo $$ > "$dir/pid"
echo "$CONTAINER_ID $CONTAINER_NAMESPACE $*" > "$dir/env"
case "$mode" in
never) exec /bin/sleep 30 ;;
byte) printf x >&5 ;;
esac
/bin/cat <&3 > "$dir/out" 5>&- &
/bin/cat <&4 > "$dir/err" 5>&- &
exec 5>&-
wait
echo done > "$dir/exited"
`

func writeLogger(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "logger")
	if err := os.WriteFile(bin, []byte(logger), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func readPid(t *testing.T, file string) int {
	t.Helper()
	var pid int
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, err := os.ReadFile(file)
		if err == nil {
			if pid, err = strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s: %v", file, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitGone waits until pid no longer exists (exited and reaped).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still there", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A binary:// logger gets the process's stdout and stderr on fds 3 and 4,
// its id and namespace in its environment and the URI's query as its
// arguments; Open returns once it is ready (fd 5 written or closed), and
// it exits by itself once the process has exited and the IO is closed.
func TestBinaryLogger(t *testing.T) {
	bin := writeLogger(t)
	for _, mode := range []string{"close", "byte"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			uri := "binary://" + bin + "?mode=" + mode + "&dir=" + dir
			before := openFDs(t)
			s, err := Open(context.Background(), Config{Stdout: uri, Stderr: uri, ID: "c1", Namespace: "k8s.io"})
			if err != nil {
				t.Fatal(err)
			}
			pid := readPid(t, filepath.Join(dir, "pid"))
			cmd := exec.Command("/bin/sh", "-c", "echo to-out; echo to-err >&2")
			s.Set(cmd)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			s.CloseAfterStart()
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			s.Close()
			waitGone(t, pid)
			for file, want := range map[string]string{
				"env": "c1 k8s.io dir " + dir + " mode " + mode + "\n", // sorted by key
				"out": "to-out\n", "err": "to-err\n", "exited": "done\n",
			} {
				if got, err := os.ReadFile(filepath.Join(dir, file)); err != nil || string(got) != want {
					t.Errorf("%s: %q, %v; want %q", file, got, err, want)
				}
			}
			if after := openFDs(t); after != before {
				t.Errorf("fds %d before, %d after", before, after)
			}
		})
	}
}

// Only the streams that name the logger go to it: the other one is
// /dev/null (none named) or its own target, and the logger sees EOF on its
// fd for the stream at once.
func TestBinaryLoggerStdoutOnly(t *testing.T) {
	bin := writeLogger(t)
	dir := t.TempDir()
	errFile := filepath.Join(dir, "stderr.log")
	s, err := Open(context.Background(), Config{Stdout: "binary://" + bin + "?dir=" + dir, Stderr: "file://" + errFile, ID: "c1", Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	pid := readPid(t, filepath.Join(dir, "pid"))
	cmd := exec.Command("/bin/sh", "-c", "echo to-out; echo to-err >&2")
	s.Set(cmd)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	waitGone(t, pid)
	for file, want := range map[string]string{"out": "to-out\n", "err": "", "stderr.log": "to-err\n"} {
		if got, err := os.ReadFile(filepath.Join(dir, file)); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", file, got, err, want)
		}
	}
}

// A logger that never gets ready fails Open within the request's deadline,
// and is not left behind; so is one whose Open fails later.
func TestBinaryLoggerFailure(t *testing.T) {
	bin := writeLogger(t)
	dir := t.TempDir()
	before := openFDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	s, err := Open(ctx, Config{Stdout: "binary://" + bin + "?mode=never&dir=" + dir, ID: "c1", Namespace: "default"})
	if s != nil || !errdefs.IsDeadlineExceeded(err) {
		t.Fatalf("Open = %v, %v; want DeadlineExceeded", s, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Open took %s", d)
	}
	waitGone(t, readPid(t, filepath.Join(dir, "pid")))

	if _, err := Open(context.Background(), Config{Stdout: "binary://" + bin + "?dir=" + dir}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("Open without an id and namespace: %v", err)
	}
	if _, err := Open(context.Background(), Config{Stdout: "binary://" + filepath.Join(dir, "missing"), ID: "c1", Namespace: "default"}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "stdout") {
		t.Fatalf("Open with a missing logger: %v", err)
	}
	if after := openFDs(t); after != before {
		t.Errorf("fds %d before, %d after", before, after)
	}
}
