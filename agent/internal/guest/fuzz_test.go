package guest

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/shared/agentapi"
)

// FuzzParseCmdline: whatever the kernel command line holds, the agent gets
// a usable setting for each key (the default when its value is bad, with an
// invalid-argument error naming the key): a serial port or share tag that
// is one path element below /dev/virtio-ports, an hvc0-7 console, a vsock
// port other than 0, a known log level. What it accepts formats back to a
// command line that parses to the same settings.
func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{"", "console=hvc0 magnetar.transport=serial:magnetar.agent magnetar.share=virtiofs:magnetar",
		"magnetar.transport=vsock:1024 magnetar.log=debug", "magnetar.transport=console:hvc7", "magnetar.transport=console:hvc8",
		"magnetar.transport=serial:.. magnetar.share=9p:.", "magnetar.transport=serial:a/b", "magnetar.share=none magnetar.typo=1",
		`magnetar.transport="vsock:0"`, "magnetar.transport=vsock:4294967296", "magnetar.log=trace"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCmdline(s)
		if err != nil && (!errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "magnetar.")) {
			t.Fatalf("ParseCmdline(%q) = %v", s, err)
		}
		switch tr := c.Transport; tr.Kind {
		case "serial":
			if p := filepath.Join("/dev/virtio-ports", tr.SerialName); filepath.Dir(p) != "/dev/virtio-ports" || filepath.Base(p) != tr.SerialName {
				t.Fatalf("ParseCmdline(%q): serial port %q is at %s", s, tr.SerialName, p)
			}
		case "console":
			if !validConsole(tr.Console) {
				t.Fatalf("ParseCmdline(%q): console %q", s, tr.Console)
			}
		case "vsock":
			if tr.VsockPort == 0 {
				t.Fatalf("ParseCmdline(%q): vsock port 0", s)
			}
		default:
			t.Fatalf("ParseCmdline(%q): transport %+v", s, tr)
		}
		if sh := c.Share; sh.Kind != "none" && (!validTag(sh.Tag) || sh.Tag == "." || sh.Tag == "..") {
			t.Fatalf("ParseCmdline(%q): share %+v", s, sh)
		}
		switch c.LogLevel {
		case "debug", "info", "warn", "error":
		default:
			t.Fatalf("ParseCmdline(%q): log level %q", s, c.LogLevel)
		}
		line := agentapi.CmdlineTransport + "=" + c.Transport.String() + " " + agentapi.CmdlineShare + "=" + c.Share.String() + " " + agentapi.CmdlineLogLevel + "=" + c.LogLevel
		back, err := ParseCmdline(line)
		c.Unknown = nil
		if err != nil || !reflect.DeepEqual(back, c) {
			t.Fatalf("ParseCmdline(%q) = %+v, formatted %q, which parses to %+v, %v", s, c, line, back, err)
		}
	})
}
