package agentapi

import (
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
)

// The protocol version. The host refuses an agent of another Major; a newer
// Minor only adds fields or RPCs that an older peer ignores or answers
// Unimplemented.
//
// Minor 1: SetupRequest.entropy and Interface.set_hw_addr (a VM booted ahead
// of its pod). An agent of minor 0 ignores both, so a host that sends them
// checks the agent's Minor first.
const (
	Major   = 1
	Minor   = 1
	Version = "1.1.0"
)

// CheckVersion is the host's rule for an agent's Health answer.
func CheckVersion(r *HealthResponse) error {
	if r == nil {
		return fmt.Errorf("agent health: empty answer: %w", errdefs.ErrUnknown)
	}
	if r.GetMajor() != Major {
		return fmt.Errorf("agent speaks protocol %s (major %d), this host speaks %s (major %d): rebuild the guest image with a matching agent: %w",
			r.GetVersion(), r.GetMajor(), Version, Major, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// Kernel command line keys the agent reads (see agent/doc.go).
const (
	// CmdlineTransport: "serial:<virtio-serial port name>",
	// "console:<hvcN>" (a virtio console port: StratoVirt's microvm has no
	// other virtio-serial port) or "vsock:<port>".
	CmdlineTransport = "magnetar.transport"
	// CmdlineShare: "virtiofs:<tag>", "9p:<tag>" or "none".
	CmdlineShare = "magnetar.share"
	// CmdlineLogLevel: "debug", "info" (default), "warn", "error".
	CmdlineLogLevel = "magnetar.log"
)

// Defaults for the command line keys.
const (
	DefaultSerialPort = "magnetar.agent"
	// DefaultConsole is the tty of the first virtio console port.
	DefaultConsole   = "hvc0"
	DefaultVsockPort = 1024
	DefaultShareTag  = "magnetar"
	DefaultTransport = "serial:" + DefaultSerialPort
	DefaultShare     = "virtiofs:" + DefaultShareTag
)

// Guest paths of the contract between the host and the agent.
const (
	// ShareRoot is where the agent mounts the host share. Bundles (and
	// every bind-mount source of a container) must lie inside it.
	ShareRoot = "/run/magnetar/share"
	// IORoot holds the in-guest FIFOs of the stdio contract.
	IORoot = "/run/magnetar/io"
)

// Stream names for StdioPath.
const (
	Stdin  = "stdin"
	Stdout = "stdout"
	Stderr = "stderr"
)

// StdioPath is the in-guest path the host puts in Task.Create or Task.Exec
// (stdin, stdout, stderr fields) for a stream it will carry over the Streams
// service: IORoot/<container>/init/<stream> for the init process,
// IORoot/<container>/exec-<exec id>/<stream> for an exec.
func StdioPath(containerID, execID, stream string) string {
	p := "init"
	if execID != "" {
		p = "exec-" + execID
	}
	return path.Join(IORoot, containerID, p, stream)
}

// ParseStdioPath is StdioPath's inverse; it fails for anything StdioPath
// does not produce (ids are checked by the caller with sandbox.ValidateID).
func ParseStdioPath(p string) (containerID, execID, stream string, err error) {
	bad := func(why string) error {
		return fmt.Errorf("%q: %s (want %s/<container>/{init|exec-<id>}/{stdin|stdout|stderr}): %w", p, why, IORoot, errdefs.ErrInvalidArgument)
	}
	if path.Clean(p) != p || !strings.HasPrefix(p, IORoot+"/") {
		return "", "", "", bad("not a clean path under " + IORoot)
	}
	parts := strings.Split(strings.TrimPrefix(p, IORoot+"/"), "/")
	if len(parts) != 3 {
		return "", "", "", bad("wrong depth")
	}
	containerID, stream = parts[0], parts[2]
	switch {
	case parts[1] == "init":
	case strings.HasPrefix(parts[1], "exec-") && len(parts[1]) > len("exec-"):
		execID = strings.TrimPrefix(parts[1], "exec-")
	default:
		return "", "", "", bad("second element must be init or exec-<id>")
	}
	switch stream {
	case Stdin, Stdout, Stderr:
	default:
		return "", "", "", bad("unknown stream " + stream)
	}
	return containerID, execID, stream, nil
}
