// Package vhostvsock gives a VM a guest CID on the host's vhost-vsock
// device, for every VMM that takes the device's descriptor (QEMU's and
// StratoVirt's vhostfd=).
package vhostvsock

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"unsafe"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Device is the host's vhost-vsock device.
const Device = "/dev/vhost-vsock"

// vhostVsockSetGuestCID is VHOST_VSOCK_SET_GUEST_CID,
// _IOW(VHOST_VIRTIO=0xAF, 0x60, __u64).
const vhostVsockSetGuestCID = 0x4008AF60

// Guest CIDs are chosen in [minCID, maxCID]: 0-2 are reserved (hypervisor,
// local, host), and large CIDs have failed on older kernels and tools
// (kata#4131), so they stay within 31 bits.
const (
	minCID = 3
	maxCID = 1<<31 - 1
	// cidAttempts bounds the search: a host never has that many VMs in a
	// row of CIDs.
	cidAttempts = 4096
)

// AllocCID opens the vhost-vsock device and claims a free guest CID on it
// with VHOST_VSOCK_SET_GUEST_CID, trying CIDs upwards from a random start
// (wrapping) while they are in use (EADDRINUSE). The open device holds the
// CID: the VMM inherits it (vhostfd=) and sets the same CID again, which
// the kernel allows on the same device. The caller closes its copy once the
// VMM runs. A host without the device fails with errdefs.ErrFailedPrecondition.
func AllocCID(device string) (*os.File, uint32, error) {
	f, err := os.OpenFile(device, os.O_RDWR, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, fmt.Errorf("vsock agent channel: no %s on this host (modprobe vhost_vsock, or use the %q channel): %w",
				device, "serial", errdefs.ErrFailedPrecondition)
		}
		return nil, 0, fmt.Errorf("vsock agent channel: %w", err)
	}
	cid, err := claimCID(minCID+rand.Uint32N(maxCID-minCID+1), func(cid uint32) error { return setGuestCID(f, cid) })
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, cid, nil
}

// setGuestCID is the VHOST_VSOCK_SET_GUEST_CID ioctl (its argument is a
// pointer to a __u64).
func setGuestCID(f *os.File, cid uint32) error {
	c := uint64(cid)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), vhostVsockSetGuestCID, uintptr(unsafe.Pointer(&c)))
	if errno != 0 {
		return errno
	}
	return nil
}

// claimCID tries set for start, start+1, ... (wrapping from maxCID to
// minCID) while it fails with EADDRINUSE, at most cidAttempts times.
func claimCID(start uint32, set func(cid uint32) error) (uint32, error) {
	if start < minCID || start > maxCID {
		start = minCID
	}
	cid := start
	for i := 0; i < cidAttempts; i++ {
		err := set(cid)
		if err == nil {
			return cid, nil
		}
		if !errors.Is(err, unix.EADDRINUSE) {
			return 0, fmt.Errorf("vsock: set guest CID %d: %w", cid, err)
		}
		if cid == maxCID {
			cid = minCID
		} else {
			cid++
		}
	}
	return 0, fmt.Errorf("vsock: no free guest CID in %d tries from %d: %w", cidAttempts, start, errdefs.ErrUnavailable)
}
