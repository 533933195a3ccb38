package guest

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseCmdline(t *testing.T) {
	c, err := ParseCmdline("console=ttyS0 quiet magnetar.transport=vsock:1024 magnetar.share=9p:kshare magnetar.log=debug magnetar.typo=1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Transport.String() != "vsock:1024" || c.Share.String() != "9p:kshare" || c.LogLevel != "debug" || len(c.Unknown) != 1 {
		t.Fatalf("%+v", c)
	}
	c, err = ParseCmdline("console=hvc0")
	if err != nil || c.Transport.String() != "serial:magnetar.agent" || c.Share.String() != "virtiofs:magnetar" || c.LogLevel != "info" {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	c, err = ParseCmdline("magnetar.transport=serial:my.port magnetar.share=none")
	if err != nil || c.Transport.SerialName != "my.port" || c.Share.Kind != "none" {
		t.Fatalf("%+v %v", c, err)
	}
	c, err = ParseCmdline("magnetar.transport=console:hvc0")
	if err != nil || c.Transport.Kind != "console" || c.Transport.Console != "hvc0" || c.Transport.String() != "console:hvc0" {
		t.Fatalf("console: %+v %v", c, err)
	}
	for _, bad := range []string{"magnetar.transport=tcp:1", "magnetar.transport=vsock:x", "magnetar.transport=serial:../x",
		"magnetar.transport=console:ttyS0", "magnetar.transport=console:hvc8", "magnetar.transport=console:",
		"magnetar.share=nfs:x", "magnetar.share=virtiofs:", "magnetar.log=loud"} {
		c, err := ParseCmdline(bad)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v", bad, err)
		}
		if c.Transport.Kind == "" || c.Share.Kind == "" {
			t.Errorf("%s: no defaults to fall back on: %+v", bad, c)
		}
	}
}
