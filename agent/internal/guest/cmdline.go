package guest

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

// Transport is where the agent serves.
type Transport struct {
	// Kind is "serial", "console" or "vsock".
	Kind string
	// SerialName is the virtio-serial port name (Kind "serial").
	SerialName string
	// Console is the virtio console port's tty, "hvc0" to "hvc7" (Kind
	// "console").
	Console string
	// VsockPort is the AF_VSOCK port (Kind "vsock").
	VsockPort uint32
}

func (t Transport) String() string {
	switch t.Kind {
	case "vsock":
		return fmt.Sprintf("vsock:%d", t.VsockPort)
	case "console":
		return "console:" + t.Console
	}
	return "serial:" + t.SerialName
}

// validConsole reports whether c names one of the hvc driver's ttys.
func validConsole(c string) bool {
	return len(c) == 4 && strings.HasPrefix(c, "hvc") && c[3] >= '0' && c[3] <= '7'
}

// Share is the host share to mount.
type Share struct {
	// Kind is "virtiofs", "9p" or "none".
	Kind string
	Tag  string
}

func (s Share) String() string {
	if s.Kind == "none" {
		return "none"
	}
	return s.Kind + ":" + s.Tag
}

// Cmdline is what the agent reads from /proc/cmdline.
type Cmdline struct {
	Transport Transport
	Share     Share
	LogLevel  string
	// Unknown lists magnetar.* keys the agent does not know (a typo?).
	Unknown []string
}

// DefaultCmdline is what an empty command line means.
func DefaultCmdline() Cmdline {
	return Cmdline{
		Transport: Transport{Kind: "serial", SerialName: agentapi.DefaultSerialPort},
		Share:     Share{Kind: "virtiofs", Tag: agentapi.DefaultShareTag},
		LogLevel:  "info",
	}
}

func validTag(t string) bool {
	// virtio-fs tags are at most 36 bytes; a serial port name is a file
	// name under /dev/virtio-ports: "." and ".." are not
	if t == "" || t == "." || t == ".." || len(t) > 36 {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// ParseCmdline reads the magnetar.* keys of a kernel command line. A bad
// value fails (with the defaults for everything in the result, so the
// caller can still serve); the other keys are ignored.
func ParseCmdline(s string) (Cmdline, error) {
	c := DefaultCmdline()
	var errs []string
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		v = strings.Trim(v, `"`)
		switch k {
		case agentapi.CmdlineTransport:
			kind, arg, _ := strings.Cut(v, ":")
			switch kind {
			case "serial":
				if !validTag(arg) {
					errs = append(errs, fmt.Sprintf("%s=%q: want serial:<port name>", k, v))
					continue
				}
				c.Transport = Transport{Kind: "serial", SerialName: arg}
			case "console":
				if !validConsole(arg) {
					errs = append(errs, fmt.Sprintf("%s=%q: want console:hvc<0-7>", k, v))
					continue
				}
				c.Transport = Transport{Kind: "console", Console: arg}
			case "vsock":
				p, err := strconv.ParseUint(arg, 10, 32)
				if err != nil || p == 0 {
					errs = append(errs, fmt.Sprintf("%s=%q: want vsock:<port 1-4294967295>", k, v))
					continue
				}
				c.Transport = Transport{Kind: "vsock", VsockPort: uint32(p)}
			default:
				errs = append(errs, fmt.Sprintf("%s=%q: want serial:<name>, console:hvc<n> or vsock:<port>", k, v))
			}
		case agentapi.CmdlineShare:
			kind, tag, _ := strings.Cut(v, ":")
			switch {
			case v == "none":
				c.Share = Share{Kind: "none"}
			case (kind == "virtiofs" || kind == "9p") && validTag(tag):
				c.Share = Share{Kind: kind, Tag: tag}
			default:
				errs = append(errs, fmt.Sprintf("%s=%q: want virtiofs:<tag>, 9p:<tag> or none", k, v))
			}
		case agentapi.CmdlineLogLevel:
			switch v {
			case "debug", "info", "warn", "error":
				c.LogLevel = v
			default:
				errs = append(errs, fmt.Sprintf("%s=%q: want debug, info, warn or error", k, v))
			}
		default:
			if strings.HasPrefix(k, "magnetar.") {
				c.Unknown = append(c.Unknown, k)
			}
		}
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("kernel command line: %s: %w", strings.Join(errs, "; "), errdefs.ErrInvalidArgument)
	}
	return c, nil
}
