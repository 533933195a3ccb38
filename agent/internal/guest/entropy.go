package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// randomDevice is the device AddEntropy's ioctls go to; tests point it at a
// file of their own.
var randomDevice = "/dev/random"

// randIoctl is ioctl(2) on fd with arg as its argument buffer (nil: none).
// A variable so that tests see the requests and their bytes without root
// and without touching the kernel's pool.
var randIoctl = func(fd int, req uint, arg []byte) error {
	var p unsafe.Pointer
	if len(arg) > 0 {
		p = unsafe.Pointer(&arg[0])
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(p))
	runtime.KeepAlive(arg)
	if errno != 0 {
		return errno
	}
	return nil
}

// randPoolInfo lays b out as struct rand_pool_info, RNDADDENTROPY's
// argument: int entropy_count (the bits credited: all of them, the host's
// bytes being random), int buf_size (bytes), then the bytes.
func randPoolInfo(b []byte) []byte {
	info := make([]byte, 8+len(b))
	binary.NativeEndian.PutUint32(info[0:], uint32(8*len(b)))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(b)))
	copy(info[8:], b)
	return info
}

// AddEntropy mixes b into the input pool and credits it (RNDADDENTROPY),
// then reseeds the CRNG from the pool (RNDRESEEDCRNG): without the reseed,
// getrandom and /dev/urandom would go on with the state the guest shares
// with every other one booted or restored from the same image until the
// kernel's next periodic reseed.
func (s *System) AddEntropy(b []byte) error {
	fd, err := unix.Open(randomDevice, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", randomDevice, err)
	}
	defer unix.Close(fd)
	if err := randIoctl(fd, unix.RNDADDENTROPY, randPoolInfo(b)); err != nil {
		return fmt.Errorf("RNDADDENTROPY on %s: %w", randomDevice, err)
	}
	if err := randIoctl(fd, unix.RNDRESEEDCRNG, nil); err != nil {
		// RNDRESEEDCRNG came with Linux 4.17 (before, random_ioctl answers
		// EINVAL to a request it does not know): an older guest kernel has
		// the bytes in its pool and mixes them in at its next reseed
		if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
			log.L.WithError(err).Warn("RNDRESEEDCRNG unsupported by the guest kernel (before 4.17?): the host's entropy reaches the CRNG at its next reseed")
			return nil
		}
		return fmt.Errorf("RNDRESEEDCRNG on %s: %w", randomDevice, err)
	}
	return nil
}
