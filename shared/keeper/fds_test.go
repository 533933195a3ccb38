package keeper

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/magnetar-runtime/magnetar/shared/fdstore"
)

// heldPipe is a pipe whose write end only the keeper holds (as it holds
// containerd's output FIFOs): the test keeps the read end.
func heldPipe(t *testing.T, c *fdstore.Client, key string) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	defer w.Close()
	if err := c.Hold(key, w); err != nil {
		t.Fatalf("hold %s: %v", key, err)
	}
	return r
}

// writerGone tells whether r's pipe has no writer left, waiting up to
// within for it.
func writerGone(r *os.File, within time.Duration) bool {
	_ = r.SetReadDeadline(time.Now().Add(within))
	_, err := r.Read(make([]byte, 1))
	return errors.Is(err, io.EOF)
}

// The keeper serves the fd store on its third socket, 0600; what it holds
// is closed when it ends.
func TestRunServesFDs(t *testing.T) {
	c := testConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, c) }()
	deadline := time.Now().Add(5 * time.Second)
	for pid, ok := readPid(c.PidFile); !ok || pid != os.Getpid(); pid, ok = readPid(c.PidFile) {
		if time.Now().After(deadline) {
			t.Fatal("keeper did not write its pid file")
		}
		time.Sleep(5 * time.Millisecond)
	}
	fi, err := os.Stat(c.FDSocket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("fd store socket mode %v, want a 0600 socket", fi.Mode())
	}
	fc := fdstore.NewClient(c.FDSocket)
	r := heldPipe(t, fc, "ctr/-/stdout")
	if keys, err := fc.List(); err != nil || !slices.Equal(keys, []string{"ctr/-/stdout"}) {
		t.Errorf("list %v %v", keys, err)
	}
	if writerGone(r, 50*time.Millisecond) {
		t.Fatal("the held write end was closed")
	}
	cancel()
	expectExit(t, done, 2*time.Second)
	if !writerGone(r, time.Second) {
		t.Error("a keeper that ended still holds the write end")
	}
}

// A replaced keeper closes what it holds at once, while it still relays
// the containerd connections it has: the daemon holds in the newer keeper.
func TestRunReplacedClosesFDs(t *testing.T) {
	c := testConfig(t)
	var calls int32
	s, _ := serveBackend(t, c.TaskBackend, "daemon", 0, &calls)
	defer s.Close()
	done := startKeeper(t, c)
	conn, err := net.Dial("unix", c.TaskSocket)
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	var resp wrapperspb.StringValue
	if err := client.Call(context.Background(), "test.Echo", "Who", &emptypb.Empty{}, &resp); err != nil {
		t.Fatal(err)
	}
	r := heldPipe(t, fdstore.NewClient(c.FDSocket), "ctr/-/stdout")
	if err := os.WriteFile(c.PidFile, []byte(strconv.Itoa(os.Getpid()+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if !writerGone(r, 2*time.Second) {
		t.Error("a replaced keeper still holds the write end")
	}
	expectRunning(t, done, 100*time.Millisecond)
}

// Descriptors held do not keep an idle keeper (no daemon, no containerd
// connection) alive; they close as it exits.
func TestRunIdleWithHeldFDs(t *testing.T) {
	c := testConfig(t)
	c.IdleTimeout = 300 * time.Millisecond
	done := startKeeper(t, c)
	r := heldPipe(t, fdstore.NewClient(c.FDSocket), "ctr/-/stdout")
	expectExit(t, done, 3*time.Second)
	if !writerGone(r, time.Second) {
		t.Error("an idle keeper that exited still holds the write end")
	}
}

// A keeper of an older daemon's command line has no fd store: it serves
// the rest as before.
func TestRunWithoutFDSocket(t *testing.T) {
	c := testConfig(t)
	path := c.FDSocket
	c.FDSocket = ""
	startKeeper(t, c)
	if exists(path) {
		t.Errorf("%s exists without an fd store", path)
	}
	if _, err := fdstore.NewClient(path).List(); err == nil {
		t.Error("an fd store answers")
	}
}
