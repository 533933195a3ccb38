package guest

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

type ioctlCall struct {
	req uint
	arg []byte
}

// fakeRandom points AddEntropy at a file of the test's and records its
// ioctls, answering them with errs (in order; nil when run out). It checks
// that each ioctl goes to a write-only fd of that file.
func fakeRandom(t *testing.T, errs ...error) *[]ioctlCall {
	t.Helper()
	dev := filepath.Join(t.TempDir(), "random")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	oldDev, oldIoctl := randomDevice, randIoctl
	t.Cleanup(func() { randomDevice, randIoctl = oldDev, oldIoctl })
	var calls []ioctlCall
	randomDevice = dev
	randIoctl = func(fd int, req uint, arg []byte) error {
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_ACCMODE != unix.O_WRONLY {
			t.Errorf("ioctl %#x on fd %d: flags %#x, %v; want %s opened write-only", req, fd, fl, err, dev)
		}
		calls = append(calls, ioctlCall{req, bytes.Clone(arg)})
		if len(errs) == 0 {
			return nil
		}
		err := errs[0]
		errs = errs[1:]
		return err
	}
	return &calls
}

func TestAddEntropyAddsThePoolInfoThenReseeds(t *testing.T) {
	calls := fakeRandom(t)
	b := bytes.Repeat([]byte{0xde, 0xad, 0xbe}, 11) // 33 bytes: not a whole number of u32
	if err := (&System{}).AddEntropy(b); err != nil {
		t.Fatal(err)
	}
	// struct rand_pool_info: entropy_count 264 bits, buf_size 33, the bytes
	want := binary.NativeEndian.AppendUint32(nil, 8*33)
	want = binary.NativeEndian.AppendUint32(want, 33)
	want = append(want, b...)
	if len(*calls) != 2 {
		t.Fatalf("%d ioctls, want RNDADDENTROPY then RNDRESEEDCRNG: %+v", len(*calls), *calls)
	}
	if c := (*calls)[0]; c.req != 0x40085203 || !bytes.Equal(c.arg, want) {
		t.Errorf("first ioctl %#x %x, want RNDADDENTROPY %x", c.req, c.arg, want)
	}
	if c := (*calls)[1]; c.req != 0x5207 || c.arg != nil {
		t.Errorf("second ioctl %#x %x, want RNDRESEEDCRNG without an argument", c.req, c.arg)
	}
}

func TestAddEntropyFailsWhenTheBytesDoNotGoIn(t *testing.T) {
	calls := fakeRandom(t, unix.EPERM)
	err := (&System{}).AddEntropy(make([]byte, 32))
	if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "RNDADDENTROPY") {
		t.Fatalf("got %v, want the RNDADDENTROPY error", err)
	}
	if len(*calls) != 1 {
		t.Fatalf("reseeded after RNDADDENTROPY failed: %+v", *calls)
	}
	randomDevice = filepath.Join(t.TempDir(), "missing")
	if err := (&System{}).AddEntropy(make([]byte, 32)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("no device: got %v", err)
	}
}

// A kernel before 4.17 has no RNDRESEEDCRNG (its random_ioctl answers an
// unknown request with EINVAL; ENOTTY is the usual answer elsewhere): the
// bytes are in the pool, Setup goes on. Any other reseed failure fails it.
func TestAddEntropyToleratesAKernelWithoutReseed(t *testing.T) {
	for _, e := range []error{unix.ENOTTY, unix.EINVAL} {
		fakeRandom(t, nil, e)
		if err := (&System{}).AddEntropy(make([]byte, 32)); err != nil {
			t.Errorf("RNDRESEEDCRNG %v: got %v, want nil", e, err)
		}
	}
	fakeRandom(t, nil, unix.EPERM)
	if err := (&System{}).AddEntropy(make([]byte, 32)); !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "RNDRESEEDCRNG") {
		t.Fatalf("RNDRESEEDCRNG EPERM: got %v", err)
	}
}

// TestAddEntropyOnTheKernel (root only) hands the kernel real random bytes
// (so crediting them is honest) through the real ioctls: the request
// numbers and the struct layout are the kernel's.
func TestAddEntropyOnTheKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("RNDADDENTROPY needs CAP_SYS_ADMIN")
	}
	b := make([]byte, 64)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if err := (&System{}).AddEntropy(b); err != nil {
		t.Fatal(err)
	}
}
