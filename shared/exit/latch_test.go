package exit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLatchFirstSetWins(t *testing.T) {
	var l Latch
	if l.IsSet() {
		t.Fatal("zero Latch is set")
	}
	select {
	case <-l.Done():
		t.Fatal("Done closed before Set")
	default:
	}
	at := time.Unix(100, 0)
	if !l.Set(3, at) {
		t.Fatal("first Set returned false")
	}
	if l.Set(4, time.Unix(200, 0)) {
		t.Fatal("second Set returned true")
	}
	<-l.Done()
	<-l.Exited()
	if code, got := l.ExitStatus(); code != 3 || !got.Equal(at) {
		t.Fatalf("ExitStatus = %d, %v; want 3, %v", code, got, at)
	}
}

func TestLatchZeroTimeIsNow(t *testing.T) {
	var l Latch
	before := time.Now()
	l.Set(0, time.Time{})
	if _, at := l.ExitStatus(); at.Before(before) {
		t.Fatalf("at = %v, before %v", at, before)
	}
}

func TestLatchConcurrent(t *testing.T) {
	var l Latch
	var wg sync.WaitGroup
	wins := make(chan uint32, 50)
	for i := range 50 {
		wg.Add(2)
		go func() { defer wg.Done(); <-l.Done() }()
		go func() {
			defer wg.Done()
			if l.Set(uint32(i), time.Time{}) {
				wins <- uint32(i)
			}
		}()
	}
	wg.Wait()
	close(wins)
	n := 0
	for w := range wins {
		n++
		if code, _ := l.ExitStatus(); code != w {
			t.Fatalf("winner %d but status %d", w, code)
		}
	}
	if n != 1 {
		t.Fatalf("%d Sets won, want 1", n)
	}
}

// Notify runs each function once, after Done, whether registered before
// the exit or after it.
func TestLatchNotify(t *testing.T) {
	var l Latch
	var n atomic.Int32
	before := make(chan struct{})
	l.Notify(func() {
		select {
		case <-l.Done():
		default:
			t.Error("notified before Done was closed")
		}
		n.Add(1)
		close(before)
	})
	if n.Load() != 0 {
		t.Fatal("notified before Set")
	}
	l.Set(3, time.Time{})
	l.Set(4, time.Time{})
	<-before
	after := make(chan struct{})
	l.Notify(func() { n.Add(1); close(after) })
	select {
	case <-after:
	case <-time.After(5 * time.Second):
		t.Fatal("Notify after the exit never ran")
	}
	if n.Load() != 2 {
		t.Fatalf("%d notifications, want 2", n.Load())
	}
}
