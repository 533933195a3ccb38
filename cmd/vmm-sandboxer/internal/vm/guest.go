package vm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
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

// MaxSocketPath is the room for a path in a sockaddr_un.
const MaxSocketPath = 107

// MaxShareTag is virtio-fs's tag length (struct virtio_fs_config).
const MaxShareTag = 36

// Check is what every driver checks of c before it builds a command line:
// an id, an absolute run directory short enough for longestSocket (the
// longest socket name the driver puts there), a kernel and an initrd,
// positive vCPUs and memory, an absolute share, a share tag (tag, c's or
// the default the driver uses) of at most MaxShareTag bytes without a
// comma, NICs with a tap, a MAC and an MTU that is not negative, and no NUL
// byte in what goes on a command line.
// Errors wrap errdefs.ErrInvalidArgument and name the VMM and the VM.
// The agent channel and the VMM's own limits are the driver's to check.
func (c *Config) Check(vmm, longestSocket, tag string) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s vm %s: %s: %w", vmm, c.ID, fmt.Sprintf(format, a...), errdefs.ErrInvalidArgument)
	}
	for _, v := range append([]string{c.ID, c.Dir, c.Kernel, c.Initrd, c.Share, tag}, c.KernelArgs...) {
		if strings.IndexByte(v, 0) >= 0 {
			// a command line is C strings: exec refuses it
			return bad("%q contains a NUL byte", v)
		}
	}
	switch {
	case c.ID == "":
		return bad("no id")
	case !filepath.IsAbs(c.Dir):
		return bad("run directory %q is not absolute", c.Dir)
	case len(filepath.Join(c.Dir, longestSocket)) > MaxSocketPath:
		return bad("run directory %q is too long for unix sockets (%d bytes at most with %s)", c.Dir, MaxSocketPath, longestSocket)
	case c.Kernel == "" || c.Initrd == "":
		return bad("kernel and initrd are required")
	case c.VCPUs <= 0 || c.MemoryMiB <= 0:
		return bad("%d vCPUs and %d MiB: both must be positive", c.VCPUs, c.MemoryMiB)
	case c.Share != "" && !filepath.IsAbs(c.Share):
		return bad("share %q is not absolute", c.Share)
	case len(tag) > MaxShareTag || strings.Contains(tag, ","):
		return bad("share tag %q: at most %d bytes, no comma", tag, MaxShareTag)
	}
	for i, n := range c.NICs {
		if n.Tap == nil {
			return bad("nic %d (%s) has no tap", i, n.TapName)
		}
		if _, err := net.ParseMAC(n.MAC); err != nil || strings.Contains(n.MAC, ",") {
			return bad("nic %d (%s): MAC %q", i, n.TapName, n.MAC)
		}
		if n.MTU < 0 {
			return bad("nic %d (%s): MTU %d", i, n.TapName, n.MTU)
		}
	}
	return nil
}

// AgentCmdline is the kernel command line that tells the agent its
// transport and share: serial (agentapi.CmdlineTransport's value for the
// serial channel, e.g. "serial:magnetar.agent") or vsock:<VsockPort>, then
// ShareKernelArg.
func (c *Config) AgentCmdline(serial string) []string {
	var k []string
	switch c.Agent.Kind {
	case ChannelSerial:
		k = append(k, agentapi.CmdlineTransport+"="+serial)
	case ChannelVsock:
		k = append(k, agentapi.CmdlineTransport+"=vsock:"+strconv.FormatUint(uint64(c.VsockPort()), 10))
	}
	return append(k, c.ShareKernelArg())
}
