package wasmsb

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/magnetar-runtime/magnetar/cmd/wasm-sandboxer/internal/wasi"
)

type countMod struct {
	wasi.Module
	digest string
	closed *atomic.Int32
}

func (m countMod) Digest() string { return m.digest }
func (m countMod) Close() error   { m.closed.Add(1); return nil }

func TestKeeper(t *testing.T) {
	var closed atomic.Int32
	k := newKeeper(50*time.Millisecond, 2)
	k.put("e", countMod{digest: "a", closed: &closed})
	k.put("e", countMod{digest: "a", closed: &closed}) // replaces the first
	if k.len() != 1 || closed.Load() != 1 {
		t.Fatalf("same digest: held %d, closed %d", k.len(), closed.Load())
	}
	k.put("e", countMod{digest: "b", closed: &closed})
	k.put("f", countMod{digest: "a", closed: &closed}) // another engine; evicts the oldest
	if k.len() != 2 || closed.Load() != 2 {
		t.Fatalf("bound: held %d, closed %d", k.len(), closed.Load())
	}
	deadline := time.Now().Add(2 * time.Second)
	for k.len() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if k.len() != 0 || closed.Load() != 4 {
		t.Fatalf("ttl: held %d, closed %d", k.len(), closed.Load())
	}
	off := newKeeper(0, 0)
	off.put("e", countMod{digest: "c", closed: &closed})
	if closed.Load() != 5 {
		t.Fatal("a keeper that is off must close at once")
	}
}
