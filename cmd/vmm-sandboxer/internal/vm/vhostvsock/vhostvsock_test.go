package vhostvsock

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func TestClaimCID(t *testing.T) {
	used := map[uint32]bool{maxCID - 1: true, maxCID: true, minCID: true}
	var tried []uint32
	set := func(cid uint32) error {
		tried = append(tried, cid)
		if used[cid] {
			return unix.EADDRINUSE
		}
		return nil
	}
	// wraps from maxCID past the reserved CIDs
	cid, err := claimCID(maxCID-1, set)
	if err != nil || cid != minCID+1 {
		t.Fatalf("got %d %v after %v", cid, err, tried)
	}
	if len(tried) != 4 {
		t.Errorf("tried %v", tried)
	}
	// a start out of range begins at minCID
	if cid, err := claimCID(1, func(uint32) error { return nil }); err != nil || cid != minCID {
		t.Errorf("start 1: %d %v", cid, err)
	}
	// other errors end the search
	if _, err := claimCID(100, func(uint32) error { return unix.EBADF }); !errors.Is(err, unix.EBADF) {
		t.Errorf("EBADF: %v", err)
	}
	// all taken
	n := 0
	if _, err := claimCID(100, func(uint32) error { n++; return unix.EADDRINUSE }); !errdefs.IsUnavailable(err) || n != cidAttempts {
		t.Errorf("exhausted after %d: %v", n, err)
	}
}

func TestAllocCIDNoDevice(t *testing.T) {
	if _, _, err := AllocCID("/nonexistent/vhost-vsock"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("missing device: %v", err)
	}
}
