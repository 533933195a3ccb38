package stratovirt

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmtest"
	"github.com/magnetar-runtime/magnetar/hack/standins/stratovirt/guidebook"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenConfigs are the command lines pinned in testdata/<name>.golden.
func goldenConfigs() map[string]struct {
	cfg vm.Config
	cid uint32
} {
	tap := os.NewFile(0, "tap") // never used by Args, only counted
	return map[string]struct {
		cfg vm.Config
		cid uint32
	}{
		// what a pod gets where the host has no vhost-vsock: the virtio
		// console port, virtio-fs, two NICs, extra kernel args
		"console-share": {cfg: vm.Config{
			ID: "0123abcd", Dir: "/run/magnetar-vmm/0123abcd", Kernel: "/usr/share/magnetar/vmm/vmlinuz",
			Initrd: "/usr/share/magnetar/vmm/initramfs.cpio", KernelArgs: []string{"magnetar.log=debug"},
			VCPUs: 2, MemoryMiB: 512, Share: "/var/lib/magnetar/vmm/sandboxes/0123abcd/share", ShareTag: "magnetar",
			Agent: vm.AgentChannel{Kind: vm.ChannelSerial},
			NICs: []vm.NIC{{Tap: tap, TapName: "tap0", MAC: "02:42:ac:11:00:02", MTU: 1450},
				{Tap: tap, TapName: "tap1", MAC: "02:42:ac:11:00:03"}},
			Accel: AccelKVM,
		}},
		// vhost-vsock (its descriptor after the tap), no share
		"vsock": {cfg: vm.Config{
			ID: "feed", Dir: "/run/m/feed", Kernel: "/k", Initrd: "/i", VCPUs: 1, MemoryMiB: 256,
			Agent: vm.AgentChannel{Kind: vm.ChannelVsock, Port: 2048},
			NICs:  []vm.NIC{{Tap: tap, MAC: "02:00:00:00:00:01"}},
		}, cid: 12345},
	}
}

func TestArgsGolden(t *testing.T) {
	for name, c := range goldenConfigs() {
		t.Run(name, func(t *testing.T) {
			a, err := Args(&c.cfg, c.cid)
			if err != nil {
				t.Fatal(err)
			}
			vmtest.Golden(t, filepath.Join("testdata", name+".golden"), []byte(strings.Join(a, "\n")+"\n"), *update)
		})
	}
}

// TestArgsInGuidebook: every option, kind, device and property of every
// command line Args builds is config_guidebook.md's (its grammar, package
// guidebook), the machine type is one it lists, and the golden files hold
// nothing else.
func TestArgsInGuidebook(t *testing.T) {
	g := guidebook.Parse()
	for name, c := range goldenConfigs() {
		a, err := Args(&c.cfg, c.cid)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Check(a); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		b, err := os.ReadFile(filepath.Join("testdata", name+".golden"))
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Check(strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")); err != nil {
			t.Errorf("%s.golden: %v", name, err)
		}
	}
	// and the checker is not lenient: QEMU's command line is refused
	if err := g.Check([]string{"-name", "guest=x", "-machine", "microvm"}); err == nil {
		t.Error("the grammar takes QEMU's -name")
	}
}

func TestArgsRefuses(t *testing.T) {
	tap := os.NewFile(0, "tap")
	base := func() vm.Config {
		return vm.Config{ID: "x", Dir: "/run/x", Kernel: "/k", Initrd: "/i", VCPUs: 1, MemoryMiB: 256,
			Agent: vm.AgentChannel{Kind: vm.ChannelSerial}}
	}
	many := make([]vm.NIC, 11)
	for i := range many {
		many[i] = vm.NIC{Tap: tap, MAC: "02:00:00:00:00:01"}
	}
	for _, c := range []struct {
		name  string
		edit  func(*vm.Config)
		class func(error) bool
	}{
		{"no id", func(c *vm.Config) { c.ID = "" }, errdefs.IsInvalidArgument},
		{"comma in dir", func(c *vm.Config) { c.Dir = "/run/a,b" }, errdefs.IsInvalidArgument},
		{"= in dir", func(c *vm.Config) { c.Dir = "/run/a=b" }, errdefs.IsInvalidArgument},
		{"little memory", func(c *vm.Config) { c.MemoryMiB = 127 }, errdefs.IsInvalidArgument},
		{"many vcpus", func(c *vm.Config) { c.VCPUs = 255 }, errdefs.IsInvalidArgument},
		{"tag of 36", func(c *vm.Config) { c.Share, c.ShareTag = "/s", strings.Repeat("t", 36) }, errdefs.IsInvalidArgument},
		{"= in tag", func(c *vm.Config) { c.Share, c.ShareTag = "/s", "a=b" }, errdefs.IsInvalidArgument},
		{"12 devices", func(c *vm.Config) { c.NICs = many }, errdefs.IsInvalidArgument},
		{"hybrid vsock", func(c *vm.Config) { c.Agent.Kind = vm.ChannelHybridVsock }, errdefs.IsNotImplemented},
		{"no channel", func(c *vm.Config) { c.Agent.Kind = "" }, errdefs.IsInvalidArgument},
		{"vsock without cid", func(c *vm.Config) { c.Agent.Kind = vm.ChannelVsock }, errdefs.IsInvalidArgument},
		{"bad mac", func(c *vm.Config) { c.NICs = []vm.NIC{{Tap: tap, MAC: "02:00:00,x"}} }, errdefs.IsInvalidArgument},
	} {
		cfg := base()
		c.edit(&cfg)
		if _, err := Args(&cfg, 0); !c.class(err) {
			t.Errorf("%s: got %v", c.name, err)
		}
	}
	// ten NICs and the console port: eleven devices, the most there is
	cfg := base()
	cfg.NICs = many[:10]
	if _, err := Args(&cfg, 0); err != nil {
		t.Errorf("11 devices: %v", err)
	}
}

func TestAccel(t *testing.T) {
	for _, want := range []string{"", "auto", "kvm"} {
		if a, err := Accel(want); err != nil || a != "kvm" {
			t.Errorf("Accel(%q) = %q %v", want, a, err)
		}
	}
	for _, want := range []string{"tcg", "hvf"} {
		if _, err := Accel(want); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "kvm") {
			t.Errorf("Accel(%q): %v", want, err)
		}
	}
}
