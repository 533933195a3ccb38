package cgroups

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func shortRecheck(t *testing.T) {
	old := oomRecheck
	oomRecheck = 50 * time.Millisecond
	t.Cleanup(func() { oomRecheck = old })
}

// expectOOM waits for n values then checks no more arrive for a moment.
func expectOOM(t *testing.T, ch <-chan struct{}, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case _, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %d of %d events", i, n)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d of %d events", i, n)
		}
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatalf("more than %d events", n)
		}
	case <-time.After(150 * time.Millisecond):
	}
}

func expectClosed(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("channel not closed")
		}
	}
}

func TestOOMEventsV2(t *testing.T) {
	shortRecheck(t)
	h := fakeV2(t, "/c", map[string]string{"memory.events": "oom 2\noom_kill 2\n"})
	cg, err := h.load("/c")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := cg.OOMEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	events := filepath.Join(h.v2Root, "c", "memory.events")
	// Kills before the watch started are not reported.
	expectOOM(t, ch, 0)
	writeFiles(t, h.v2Root, map[string]string{"c/memory.events": "oom 3\noom_kill 3\n"})
	expectOOM(t, ch, 1)
	writeFiles(t, h.v2Root, map[string]string{"c/memory.events": "oom 5\noom_kill 5\n"})
	expectOOM(t, ch, 2)
	// Other counters changing is not a kill.
	writeFiles(t, h.v2Root, map[string]string{"c/memory.events": "oom 6\nmax 9\noom_kill 5\n"})
	expectOOM(t, ch, 0)
	cancel()
	expectClosed(t, ch)

	// The channel also closes when the cgroup goes away.
	ch, err = cg.OOMEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Dir(events)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, ch)
	if _, err := cg.OOMEvents(context.Background()); !errdefs.IsNotFound(err) {
		t.Errorf("OOMEvents on removed cgroup = %v", err)
	}
}

func TestOOMEventsV2NoMemoryController(t *testing.T) {
	h := fakeV2(t, "/c", nil)
	if err := os.Remove(filepath.Join(h.v2Root, "c", "memory.events")); err != nil {
		t.Fatal(err)
	}
	cg, _ := h.load("/c")
	if _, err := cg.OOMEvents(context.Background()); !errdefs.IsNotImplemented(err) {
		t.Errorf("OOMEvents without memory controller = %v", err)
	}
}

// TestOOMEventsV1 plays the kernel's part: it reads the eventfd number
// registered in cgroup.event_control, signals it, and bumps oom_kill.
func TestOOMEventsV1(t *testing.T) {
	shortRecheck(t)
	h := fakeV1(t, "/c", map[string]string{"memory/c/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"})
	cg, err := h.load("/c")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := cg.OOMEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reg := readFile(t, filepath.Join(h.v1Root, "memory/c/cgroup.event_control"))
	fields := strings.Fields(reg)
	if len(fields) != 2 {
		t.Fatalf("event_control = %q, want \"<eventfd> <oom_control fd>\"", reg)
	}
	efd, err := strconv.Atoi(fields[0])
	if err != nil {
		t.Fatal(err)
	}
	signal := func() {
		var b [8]byte
		binary.NativeEndian.PutUint64(b[:], 1)
		if _, err := unix.Write(efd, b[:]); err != nil {
			t.Fatalf("signal eventfd: %v", err)
		}
	}
	setKills := func(n int) {
		writeFiles(t, h.v1Root, map[string]string{"memory/c/memory.oom_control": fmt.Sprintf("oom_kill_disable 0\nunder_oom 0\noom_kill %d\n", n)})
	}

	setKills(2)
	signal()
	expectOOM(t, ch, 1)

	// Notified before the kill is counted: reported once it is.
	signal()
	time.Sleep(30 * time.Millisecond)
	setKills(4)
	expectOOM(t, ch, 2)

	cancel()
	expectClosed(t, ch)
}

func TestOOMEventsV1RemovedCgroup(t *testing.T) {
	shortRecheck(t)
	h := fakeV1(t, "/c", nil)
	cg, _ := h.load("/c")
	ch, err := cg.OOMEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(h.v1Root, "memory/c")); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, ch)
}

// A watch ended by its context (the container exited, as an OOM kill makes
// it) still reports the kills counted by then, notified or not.
func TestOOMEventsCountedAtEnd(t *testing.T) {
	h := fakeV1(t, "/c", map[string]string{"memory/c/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"})
	cg, _ := h.load("/c")
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := cg.OOMEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, h.v1Root, map[string]string{"memory/c/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"})
	cancel() // long before the 2 s recheck
	expectOOM(t, ch, 1)
	expectClosed(t, ch)
}

// OnOOM is the same watch with a callback: one call per kill, none after
// its context ends.
func TestOnOOM(t *testing.T) {
	shortRecheck(t)
	h := fakeV2(t, "/c", map[string]string{"memory.events": "oom 1\noom_kill 1\n"})
	cg, err := h.load("/c")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	kills := make(chan struct{}, 8)
	if err := cg.OnOOM(ctx, func() { kills <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, h.v2Root, map[string]string{"c/memory.events": "oom 3\noom_kill 3\n"})
	expectOOM(t, kills, 2)
	cancel()
	time.Sleep(20 * time.Millisecond)
	writeFiles(t, h.v2Root, map[string]string{"c/memory.events": "oom 4\noom_kill 4\n"})
	select {
	case <-kills:
		t.Fatal("a kill reported after the context ended")
	case <-time.After(200 * time.Millisecond):
	}
	if err := cg.OnOOM(context.Background(), func() {}); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(h.v2Root, "c")); err != nil {
		t.Fatal(err)
	}
	if err := cg.OnOOM(context.Background(), func() {}); !errdefs.IsNotFound(err) {
		t.Errorf("OnOOM on a removed cgroup = %v", err)
	}
}
