package controller

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeRegistry is containerd's sandbox store as WithForgotten sees it.
type fakeRegistry struct {
	mu    sync.Mutex
	known map[string]bool
	err   error
	asked map[string]int
}

func (r *fakeRegistry) Knows(_ context.Context, id string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked[id]++
	return r.known[id], r.err
}

func (r *fakeRegistry) set(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

func runSandboxes(t *testing.T, c *Controller, ids ...string) {
	t.Helper()
	ctx := context.Background()
	for _, id := range ids {
		if _, err := c.Create(ctx, &sandboxapi.ControllerCreateRequest{SandboxID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Start(ctx, &sandboxapi.ControllerStartRequest{SandboxID: id}); err != nil {
			t.Fatal(err)
		}
	}
}

func backdate(t *testing.T, c *Controller, id string, by time.Duration) {
	t.Helper()
	e, err := c.get(id)
	if err != nil {
		t.Fatal(err)
	}
	e.state.CreatedAt = e.state.CreatedAt.Add(-by)
	e.mu.Unlock()
}

func there(c *Controller, id string) bool {
	_, err := c.Status(context.Background(), &sandboxapi.ControllerStatusRequest{SandboxID: id})
	return status.Code(err) != codes.NotFound
}

// A sandbox containerd does not hold at two checks in a row is shut down;
// one it holds, or one younger than the interval, is not; a check that
// cannot ask containerd shuts nothing down and starts the count over.
func TestForgottenChecks(t *testing.T) {
	c, d, cancel := newCtrl(t, t.TempDir())
	defer cancel()
	runSandboxes(t, c, "held", "forgot", "young")
	reg := &fakeRegistry{known: map[string]bool{"held": true}, asked: map[string]int{}}
	c.registry, c.forgottenEvery = reg, time.Hour // set after Recover: no loop runs
	backdate(t, c, "held", 2*time.Hour)
	backdate(t, c, "forgot", 2*time.Hour)

	f := &forgetting{}
	c.checkForgotten(f)
	if !there(c, "forgot") || !f.missing["forgot"] || len(f.missing) != 1 {
		t.Fatalf("first miss: shut down %v, missing %v; want kept, marked", !there(c, "forgot"), f.missing)
	}
	reg.set(errors.New("containerd away"))
	c.checkForgotten(f)
	if !there(c, "forgot") || len(f.missing) != 0 || !f.failing {
		t.Fatalf("containerd away: shut down %v, missing %v, failing %v; want kept and the count started over", !there(c, "forgot"), f.missing, f.failing)
	}
	reg.set(nil)
	c.checkForgotten(f)
	if !there(c, "forgot") {
		t.Fatal("shut down at its first miss after containerd came back")
	}
	c.checkForgotten(f)
	if there(c, "forgot") {
		t.Fatal("a sandbox containerd did not hold at two checks in a row is still there")
	}
	d.mu.Lock()
	cleaned := d.created["forgot"].cleaned
	d.mu.Unlock()
	if cleaned != 1 {
		t.Errorf("cleaned up %d times, want 1", cleaned)
	}
	for _, id := range []string{"held", "young"} {
		if !there(c, id) {
			t.Errorf("%s shut down", id)
		}
	}
	if reg.asked["young"] != 0 {
		t.Errorf("asked about a sandbox younger than the interval %d times", reg.asked["young"])
	}
}

// The loop Recover starts does it on its own, and stops with the daemon.
func TestForgottenLoop(t *testing.T) {
	dir := t.TempDir()
	c, _, cancel := newCtrl(t, dir)
	runSandboxes(t, c, "held", "forgot")
	cancel()
	reg := &fakeRegistry{known: map[string]bool{"held": true}, asked: map[string]int{}}
	const every = 50 * time.Millisecond
	c2, _, cancel2 := newCtrl(t, dir, WithForgotten(reg, every))
	defer cancel2()
	deadline := time.Now().Add(5 * time.Second)
	for there(c2, "forgot") {
		if time.Now().After(deadline) {
			t.Fatalf("a forgotten sandbox is still there 5 s into checks every %s", every)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !there(c2, "held") {
		t.Error("a sandbox containerd holds was shut down")
	}
	cancel2()
	time.Sleep(3 * every)
	reg.mu.Lock()
	n := reg.asked["held"]
	reg.mu.Unlock()
	time.Sleep(3 * every)
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if reg.asked["held"] != n {
		t.Error("checks go on after the daemon's life ended")
	}
}
