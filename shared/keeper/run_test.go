package keeper

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// testConfig is a keeper in a fresh directory, checking every 20 ms, whose
// backends do not exist yet.
func testConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	return Config{
		TaskSocket: filepath.Join(dir, "task.sock"), TaskBackend: filepath.Join(dir, "task-backend.sock"),
		APISocket: filepath.Join(dir, "api.sock"), APIBackend: filepath.Join(dir, "api-backend.sock"),
		PidFile:     filepath.Join(dir, "keeper.pid"),
		FDSocket:    filepath.Join(dir, "fds.sock"),
		Options:     Options{MaxWait: 30 * time.Second},
		IdleTimeout: time.Hour,
		checkEvery:  20 * time.Millisecond,
	}
}

// startKeeper runs Run in the background and returns once its pid file is
// written (both sockets listen then). The channel yields Run's result.
func startKeeper(t *testing.T, c Config) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, c) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if pid, ok := readPid(c.PidFile); ok && pid == os.Getpid() {
			return done
		}
		select {
		case err := <-done:
			t.Fatalf("keeper ended at start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("keeper did not write its pid file")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func expectExit(t *testing.T, done <-chan error, within time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("keeper ended with %v", err)
		}
	case <-time.After(within):
		t.Fatalf("keeper still runs after %s", within)
	}
}

func expectRunning(t *testing.T, done <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("keeper ended (%v), want it to live on", err)
	case <-time.After(d):
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// (a) A daemon started a newer keeper, which wrote its pid in the file: the
// old one exits, and leaves the paths (the newer keeper's) alone.
func TestRunExitsWhenPidFileNamesAnother(t *testing.T) {
	c := testConfig(t)
	done := startKeeper(t, c)
	if err := os.WriteFile(c.PidFile, []byte(strconv.Itoa(os.Getpid()+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	expectExit(t, done, 2*time.Second)
	for _, p := range []string{c.TaskSocket, c.APISocket, c.PidFile, c.FDSocket} {
		if !exists(p) {
			t.Errorf("a replaced keeper removed %s", p)
		}
	}
}

// (b) Another socket now sits at one of the keeper's paths: the keeper
// exits and the other socket still serves.
func TestRunExitsWhenSocketReplaced(t *testing.T) {
	for _, which := range []string{"task", "api", "fds"} {
		t.Run(which, func(t *testing.T) {
			c := testConfig(t)
			done := startKeeper(t, c)
			path := map[string]string{"task": c.TaskSocket, "api": c.APISocket, "fds": c.FDSocket}[which]
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			nl, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer nl.Close()
			expectExit(t, done, 2*time.Second)
			conn, err := net.Dial("unix", path)
			if err != nil {
				t.Fatalf("the newer socket does not answer after the old keeper exited: %v", err)
			}
			conn.Close()
		})
	}
}

// A socket path that is gone (a run directory wiped) counts as replaced.
func TestRunExitsWhenSocketGone(t *testing.T) {
	c := testConfig(t)
	done := startKeeper(t, c)
	if err := os.Remove(c.APISocket); err != nil {
		t.Fatal(err)
	}
	expectExit(t, done, 2*time.Second)
}

// (c) No daemon behind it and no containerd connection: the keeper exits
// after the idle bound, not before, and cleans up its sockets and pid file.
func TestRunExitsWhenIdle(t *testing.T) {
	c := testConfig(t)
	c.IdleTimeout = 300 * time.Millisecond
	start := time.Now()
	done := startKeeper(t, c)
	expectExit(t, done, 3*time.Second)
	if d := time.Since(start); d < c.IdleTimeout {
		t.Errorf("exited after %s, before the idle bound %s", d, c.IdleTimeout)
	}
	for _, p := range []string{c.TaskSocket, c.APISocket, c.PidFile, c.FDSocket} {
		if exists(p) {
			t.Errorf("an idle keeper left %s", p)
		}
	}
}

// A daemon that serves behind the keeper keeps it alive, even without any
// containerd connection; when it is gone for the bound, the keeper goes.
func TestRunLivesWhileDaemonServes(t *testing.T) {
	c := testConfig(t)
	c.IdleTimeout = 200 * time.Millisecond
	bl, err := net.Listen("unix", c.APIBackend)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			conn, err := bl.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	done := startKeeper(t, c)
	expectRunning(t, done, time.Second)
	bl.Close()
	expectExit(t, done, 3*time.Second)
}

// (d) A containerd connection waiting for an absent daemon keeps the keeper
// alive past the idle bound: the bridge holds it up to MaxWait.
func TestRunLivesWithFrontConnection(t *testing.T) {
	for _, which := range []string{"task", "api"} {
		t.Run(which, func(t *testing.T) {
			c := testConfig(t)
			c.IdleTimeout = 200 * time.Millisecond
			done := startKeeper(t, c)
			path := c.TaskSocket
			if which == "api" {
				path = c.APISocket
			}
			conn, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			expectRunning(t, done, 5*c.IdleTimeout)
		})
	}
}

// A replaced keeper stops accepting but goes on relaying the connections it
// holds (to the same daemon), and exits when the last one ends: exiting
// earlier would end containerd's tasks on those connections.
func TestRunReplacedDrainsItsConnections(t *testing.T) {
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
	call := func() error {
		var resp wrapperspb.StringValue
		return client.Call(context.Background(), "test.Echo", "Who", &emptypb.Empty{}, &resp)
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.PidFile, []byte(strconv.Itoa(os.Getpid()+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		nc, err := net.Dial("unix", c.TaskSocket)
		if err != nil {
			break // no longer accepting
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("a replaced keeper still accepts connections")
		}
		time.Sleep(10 * time.Millisecond)
	}
	expectRunning(t, done, 200*time.Millisecond)
	if err := call(); err != nil {
		t.Fatalf("a connection the replaced keeper holds no longer works: %v", err)
	}
	client.Close()
	expectExit(t, done, 2*time.Second)
}
