package main

import (
	"slices"
	"testing"
)

// Only the files of a hidden (half-deleted) task bundle of containerd's are
// taken out, only in a round that killed containerd or once taken out
// before; anything else of the id stays a leftover.
func TestDropContainerdBundles(t *testing.T) {
	r := &runner{work: "/w", name: "magnetar-runc", ctrdBundles: map[string]bool{}}
	bundle := "/w/state/io.containerd.runtime.v2.task/k8s.io/.abc"
	left := []string{
		"container abc (removed): file: " + bundle,
		"container abc (removed): file: " + bundle + "/config.json",
		"container abc (removed): file: /w/state/io.containerd.runtime.v2.task/k8s.io/abc/config.json",
		"container abc (removed): file: /w/lib/magnetar-runc/.abc",
		"container abc (removed): mount: " + bundle + "/rootfs",
	}
	keep := left[2:]
	if got := r.dropContainerdBundles(left); !slices.Equal(got, left) {
		t.Fatalf("no containerd kill this round: got %q, want all kept", got)
	}
	r.killedContainerd = true
	if got := r.dropContainerdBundles(left); !slices.Equal(got, keep) {
		t.Fatalf("containerd killed: got %q, want %q", got, keep)
	}
	r.killedContainerd = false
	if got := r.dropContainerdBundles(left); !slices.Equal(got, keep) {
		t.Fatalf("a later round: got %q, want %q", got, keep)
	}
	if !r.ctrdBundles[bundle] || len(r.ctrdBundles) != 1 {
		t.Errorf("counted apart: %v", r.ctrdBundles)
	}
}
