package vm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/containerd/errdefs"
)

// CheckGuest checks cfg's kernel and initrd before a driver starts anything:
// a missing file is errdefs.ErrNotFound; a kernel that is neither a bzImage
// ("HdrS" at 0x202) nor an ELF vmlinux (booted through PVH), or an empty or
// non-regular initrd, is errdefs.ErrInvalidArgument. Each error names the
// file. Whether a hypervisor boots both kernel formats is the driver's to
// check on top.
func CheckGuest(cfg *Config) error {
	if err := checkKernel(cfg.Kernel); err != nil {
		return err
	}
	return checkInitrd(cfg.Initrd)
}

func checkKernel(path string) error {
	hdr, err := readHead(path, 0x206)
	if err != nil {
		return fileError("kernel", path, err)
	}
	if bytes.HasPrefix(hdr, []byte("\x7fELF")) || (len(hdr) >= 0x206 && string(hdr[0x202:0x206]) == "HdrS") {
		return nil
	}
	return fmt.Errorf("kernel %s is neither a bzImage (no \"HdrS\" setup header) nor an ELF vmlinux: %w", path, errdefs.ErrInvalidArgument)
}

// readHead reads up to n bytes from the start of path.
func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	got, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:got], nil
}

func checkInitrd(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fileError("initrd", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 {
		return fmt.Errorf("initrd %s: not a non-empty regular file: %w", path, errdefs.ErrInvalidArgument)
	}
	return nil
}

func fileError(what, path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s %s: no such file: %w", what, path, errdefs.ErrNotFound)
	}
	return fmt.Errorf("%s %s: %w", what, path, err)
}
