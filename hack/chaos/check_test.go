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

// A panic is Go's report of one or a recovered one, not the word: a VM's
// kernel command line in a log line (panic=-1) is none.
func TestPanicked(t *testing.T) {
	for l, want := range map[string]bool{
		"panic: runtime error: invalid memory address or nil pointer dereference":                      true,
		"fatal error: concurrent map writes":                                                           true,
		`time="x" level=error msg="panic in handler: boom" method=/x`:                                  true,
		`time="x" level=warning msg="start failed" error="qemu ... -append console=hvc0 panic=-1 ..."`: false,
		"goroutine 1 [running]:": false,
	} {
		if got := panicked(l); got != want {
			t.Errorf("panicked(%q) = %v, want %v", l, got, want)
		}
	}
}
