package main

import (
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/magnetar-runtime/magnetar/shared/clhapi"
)

var update = flag.Bool("update", false, "rewrite testdata/qemu-args.golden")

// driverBody is the vm.create body the vmm sandboxer's driver sends (its
// golden file).
func driverBody(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../../cmd/vmm-sandboxer/internal/clh/testdata/vm-create.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestQEMUArgsGolden pins the QEMU command line the driver's vm.create body
// and two cold-added NICs turn into.
func TestQEMUArgsGolden(t *testing.T) {
	var cfg clhapi.VmConfig
	if err := json.Unmarshal(driverBody(t), &cfg); err != nil {
		t.Fatal(err)
	}
	var nets []netDev
	for _, f := range []string{"vm-add-net-0.json", "vm-add-net-1.json"} {
		b, err := os.ReadFile("../../../cmd/vmm-sandboxer/internal/clh/testdata/" + f)
		if err != nil {
			t.Fatal(err)
		}
		var n clhapi.NetConfig
		if err := json.Unmarshal(b, &n); err != nil {
			t.Fatal(err)
		}
		nets = append(nets, netDev{cfg: n, tap: os.Stdin})
	}
	args, port, err := qemuArgs(&cfg, nets, privatePaths("/run/magnetar/vmm/0123456789abcdef"), 2999999)
	if err != nil {
		t.Fatal(err)
	}
	if port != 1024 {
		t.Errorf("agent port %d, want 1024", port)
	}
	got := strings.Join(args, "\n") + "\n"
	if *update {
		os.WriteFile("testdata/qemu-args.golden", []byte(got), 0o644)
	}
	want, err := os.ReadFile("testdata/qemu-args.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("QEMU command line differs from testdata/qemu-args.golden (-update rewrites it):\n%s", got)
	}
}

func TestRewriteTransport(t *testing.T) {
	got, port := rewriteTransport("console=ttyS0 magnetar.transport=vsock:2048 quiet")
	if got != "console=ttyS0 magnetar.transport=serial:magnetar.agent quiet" || port != 2048 {
		t.Errorf("%q %d", got, port)
	}
	if got, port := rewriteTransport("console=ttyS0 magnetar.transport=serial:x"); port != 0 || got != "console=ttyS0 magnetar.transport=serial:x" {
		t.Errorf("no vsock transport: %q %d", got, port)
	}
}

func TestQEMUArgsRefuses(t *testing.T) {
	base := func() clhapi.VmConfig {
		var c clhapi.VmConfig
		json.Unmarshal(driverBody(t), &c)
		return c
	}
	for name, c := range map[string]struct {
		edit func(*clhapi.VmConfig)
		nets []netDev
		want string
	}{
		"no kernel":        {func(c *clhapi.VmConfig) { c.Payload.Kernel = nil }, nil, "payload.kernel"},
		"fs without share": {func(c *clhapi.VmConfig) { c.Memory.Shared = nil }, nil, "requires shared memory"},
		"odd memory":       {func(c *clhapi.VmConfig) { c.Memory.Size++ }, nil, "whole MiB"},
		"pty serial":       {func(c *clhapi.VmConfig) { c.Serial.Mode = clhapi.ConsoleModePty }, nil, "mode Pty not emulated"},
		"two ttys": {func(c *clhapi.VmConfig) {
			c.Serial.Mode, c.Console.Mode = clhapi.ConsoleModeTty, clhapi.ConsoleModeTty
		}, nil, "both on the terminal"},
		"net without tap": {func(*clhapi.VmConfig) {}, []netDev{{cfg: clhapi.NetConfig{Id: ptr("n")}}}, "neither a tap name nor a descriptor"},
		"multiqueue":      {func(*clhapi.VmConfig) {}, []netDev{{cfg: clhapi.NetConfig{Id: ptr("n"), NumQueues: ptr(4)}, tap: os.Stdin}}, "one queue pair"},
	} {
		c2 := base()
		c.edit(&c2)
		if _, _, err := qemuArgs(&c2, c.nets, privatePaths("/r"), 0); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}
