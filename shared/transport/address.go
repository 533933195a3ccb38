package transport

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// Protocols an Address may carry.
const (
	// ProtocolTTRPC is the only protocol containerd 2.4.2 uses for task endpoints.
	ProtocolTTRPC = "ttrpc"
	// ProtocolGRPC is accepted by ParseAddress for completeness.
	ProtocolGRPC = "grpc"
)

// Schemes an Address may carry.
const (
	// SchemeUnix is a unix socket served by the peer itself.
	SchemeUnix = "unix"
	// SchemeVsock is AF_VSOCK.
	SchemeVsock = "vsock"
	// SchemeHybridVsock is a port behind Cloud Hypervisor's or
	// Firecracker's vsock unix socket.
	SchemeHybridVsock = "hvsock"
	// SchemeSerial is the host-side unix socket of a QEMU virtio-serial
	// chardev. QEMU accepts on it before the guest has booted, so a
	// connection proves nothing about the peer. Only Magnetar's host and
	// agent use it: containerd cannot dial it.
	SchemeSerial = "serial"
)

// MaxUnixPathLen is the longest unix socket path, in bytes, that fits
// sockaddr_un.sun_path together with its terminating NUL.
const MaxUnixPathLen = 107

// Special vsock values that can be bound but never connected to.
const (
	vsockCIDAny  = 0xFFFFFFFF // VMADDR_CID_ANY
	vsockPortAny = 0xFFFFFFFF // VMADDR_PORT_ANY
)

// Address is a task API endpoint as containerd's Controller.Start returns it:
// "ttrpc+unix:///abs/path", "ttrpc+vsock://<cid>:<port>" or
// "ttrpc+hvsock:///abs/uds/path:<port>" (Cloud Hypervisor/Firecracker hybrid
// vsock); or, between the host and the agent only,
// "ttrpc+serial:///abs/path" (a QEMU virtio-serial chardev socket).
type Address struct {
	Protocol string // "ttrpc" or "grpc"
	Scheme   string // SchemeUnix, SchemeVsock, SchemeHybridVsock or SchemeSerial
	Path     string // unix, serial: socket path; hvsock: the VMM's vsock unix socket
	CID      uint32 // vsock only
	Port     uint32 // vsock and hvsock
}

// UnixAddress returns the ttrpc address of a unix socket.
func UnixAddress(path string) Address {
	return Address{Protocol: ProtocolTTRPC, Scheme: SchemeUnix, Path: path}
}

// VsockAddress returns the ttrpc address of an AF_VSOCK endpoint.
func VsockAddress(cid, port uint32) Address {
	return Address{Protocol: ProtocolTTRPC, Scheme: SchemeVsock, CID: cid, Port: port}
}

// HybridVsockAddress returns the ttrpc address of a port behind a hybrid vsock
// unix socket (Cloud Hypervisor's and Firecracker's --vsock socket).
func HybridVsockAddress(udsPath string, port uint32) Address {
	return Address{Protocol: ProtocolTTRPC, Scheme: SchemeHybridVsock, Path: udsPath, Port: port}
}

// SerialAddress returns the ttrpc address of the host-side unix socket of a
// QEMU virtio-serial chardev (-chardev socket,path=<path>,server=on).
func SerialAddress(path string) Address {
	return Address{Protocol: ProtocolTTRPC, Scheme: SchemeSerial, Path: path}
}

// ParseAddress parses "<protocol>+<scheme>://<endpoint>". Every error wraps
// errdefs.ErrInvalidArgument and says what is wrong.
func ParseAddress(s string) (Address, error) {
	head, rest, ok := strings.Cut(s, "://")
	if !ok {
		return Address{}, invalidf(s, `missing "://"`)
	}
	proto, scheme, ok := strings.Cut(head, "+")
	if !ok || proto == "" {
		return Address{}, invalidf(s, "missing protocol: want <ttrpc|grpc>+<unix|vsock|hvsock|serial>://")
	}
	a := Address{Protocol: proto, Scheme: scheme}
	switch scheme {
	case SchemeUnix, SchemeSerial:
		a.Path = rest
	case SchemeVsock:
		cid, port, ok := strings.Cut(rest, ":")
		if !ok {
			return Address{}, invalidf(s, "vsock endpoint must be <cid>:<port>")
		}
		var err error
		if a.CID, err = parseUint32(cid); err != nil {
			return Address{}, invalidf(s, "vsock cid %q: %v", cid, err)
		}
		if a.Port, err = parseUint32(port); err != nil {
			return Address{}, invalidf(s, "vsock port %q: %v", port, err)
		}
	case SchemeHybridVsock:
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			return Address{}, invalidf(s, "hvsock endpoint must be <socket path>:<port>")
		}
		a.Path = rest[:i]
		var err error
		if a.Port, err = parseUint32(rest[i+1:]); err != nil {
			return Address{}, invalidf(s, "hvsock port %q: %v", rest[i+1:], err)
		}
	}
	if err := a.validate(); err != nil {
		return Address{}, fmt.Errorf("transport address %q: %w", s, err)
	}
	return a, nil
}

// String formats a as ParseAddress accepts it. An empty Protocol is written
// as "ttrpc".
func (a Address) String() string {
	proto := a.Protocol
	if proto == "" {
		proto = ProtocolTTRPC
	}
	switch a.Scheme {
	case SchemeVsock:
		return fmt.Sprintf("%s+%s://%d:%d", proto, a.Scheme, a.CID, a.Port)
	case SchemeHybridVsock:
		return fmt.Sprintf("%s+%s://%s:%d", proto, a.Scheme, a.Path, a.Port)
	default:
		return fmt.Sprintf("%s+%s://%s", proto, a.Scheme, a.Path)
	}
}

// validate checks a as a connectable endpoint. Errors wrap
// errdefs.ErrInvalidArgument.
func (a Address) validate() error {
	switch a.Protocol {
	case ProtocolTTRPC, ProtocolGRPC, "":
	default:
		return fmt.Errorf("unsupported protocol %q (want ttrpc or grpc): %w", a.Protocol, errdefs.ErrInvalidArgument)
	}
	switch a.Scheme {
	case SchemeUnix, SchemeSerial:
		return checkSocketPath(a.Path)
	case SchemeVsock:
		if a.CID == vsockCIDAny {
			return fmt.Errorf("vsock cid %d is VMADDR_CID_ANY, which cannot be dialled: %w", a.CID, errdefs.ErrInvalidArgument)
		}
		if a.Port == vsockPortAny {
			return fmt.Errorf("vsock port %d is VMADDR_PORT_ANY, which cannot be dialled: %w", a.Port, errdefs.ErrInvalidArgument)
		}
		return nil
	case SchemeHybridVsock:
		if strings.Contains(a.Path, ":") {
			// containerd's dialer splits "<path>:<port>" at the first colon.
			return fmt.Errorf("hvsock socket path %q contains ':', which containerd cannot parse: %w", a.Path, errdefs.ErrInvalidArgument)
		}
		if a.Port == vsockPortAny {
			return fmt.Errorf("hvsock port %d is VMADDR_PORT_ANY, which cannot be dialled: %w", a.Port, errdefs.ErrInvalidArgument)
		}
		return checkSocketPath(a.Path)
	case "":
		return fmt.Errorf("missing scheme (want unix, vsock, hvsock or serial): %w", errdefs.ErrInvalidArgument)
	default:
		return fmt.Errorf("unsupported scheme %q (want unix, vsock, hvsock or serial): %w", a.Scheme, errdefs.ErrInvalidArgument)
	}
}

// checkSocketPath checks that p is an absolute unix socket path that fits
// sun_path.
func checkSocketPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty socket path: %w", errdefs.ErrInvalidArgument)
	case !filepath.IsAbs(p):
		return fmt.Errorf("socket path %q is not absolute: %w", p, errdefs.ErrInvalidArgument)
	}
	return checkSocketPathLen(p)
}

// checkSocketPathLen checks that p fits sun_path and has no NUL byte.
func checkSocketPathLen(p string) error {
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("socket path %q contains a NUL byte: %w", p, errdefs.ErrInvalidArgument)
	}
	if len(p) > MaxUnixPathLen {
		return fmt.Errorf("socket path %q is %d bytes, longer than the unix socket limit of %d: %w",
			p, len(p), MaxUnixPathLen, errdefs.ErrInvalidArgument)
	}
	return nil
}

func parseUint32(s string) (uint32, error) {
	if s == "" {
		return 0, fmt.Errorf("empty")
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok {
			err = ne.Err
		}
		return 0, fmt.Errorf("not a 32-bit unsigned decimal: %v", err)
	}
	return uint32(v), nil
}

func invalidf(s, format string, args ...any) error {
	return fmt.Errorf("transport address %q: %s: %w", s, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// VsockAddr is the net.Addr of an AF_VSOCK endpoint.
type VsockAddr struct {
	CID  uint32
	Port uint32
}

// Network returns "vsock".
func (a *VsockAddr) Network() string { return SchemeVsock }

// String returns "<cid>:<port>".
func (a *VsockAddr) String() string { return fmt.Sprintf("%d:%d", a.CID, a.Port) }

// fileAddr is the net.Addr of a character device or other file used as a
// stream.
type fileAddr struct {
	network, name string
}

func (a fileAddr) Network() string { return a.network }
func (a fileAddr) String() string  { return a.name }
