package qemu

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenConfigs are the command lines pinned in testdata/<name>.golden.
func goldenConfigs() map[string]struct {
	cfg   vm.Config
	accel string
	tsc   int
	cid   uint32
} {
	tap := os.NewFile(0, "tap") // never used by Args, only counted
	return map[string]struct {
		cfg   vm.Config
		accel string
		tsc   int
		cid   uint32
	}{
		// the configuration of this machine kind: TCG with a bounded
		// buffer, virtio-serial, virtio-fs, two NICs, extra kernel args
		"serial-share-tcg": {cfg: vm.Config{
			ID: "0123abcd", Dir: "/run/magnetar-vmm/0123abcd", Kernel: "/var/lib/magnetar/vmlinuz",
			Initrd: "/var/lib/magnetar/initramfs.cpio", KernelArgs: []string{"magnetar.log=debug"},
			VCPUs: 2, MemoryMiB: 512, Share: "/run/magnetar-vmm/0123abcd/share", ShareTag: "magnetar",
			Agent: vm.AgentChannel{Kind: vm.ChannelSerial}, TCGBufferMiB: 64,
			NICs: []vm.NIC{{Tap: tap, TapName: "tap0", MAC: "02:42:ac:11:00:02", MTU: 1450},
				{Tap: tap, TapName: "tap1", MAC: "02:42:ac:11:00:03"}},
		}, accel: AccelTCG, tsc: 2445404},
		// KVM with vsock, no share, no NIC (no tsc_early_khz and no TCG
		// buffer under KVM)
		"vsock-kvm": {cfg: vm.Config{
			ID: "feed", Dir: "/run/m/feed", Kernel: "/k", Initrd: "/i", VCPUs: 1, MemoryMiB: 256, TCGBufferMiB: 64,
			Agent: vm.AgentChannel{Kind: vm.ChannelVsock, Port: 2048},
			NICs:  []vm.NIC{{Tap: tap, MAC: "02:00:00:00:00:01"}},
		}, accel: AccelKVM, tsc: 2445404, cid: 12345},
		// commas in paths are doubled inside option lists only
		"comma-paths": {cfg: vm.Config{
			ID: "a,b", Dir: "/run/m,x/a", Kernel: "/k,1", Initrd: "/i", VCPUs: 1, MemoryMiB: 128,
			Share: "/s", Agent: vm.AgentChannel{Kind: vm.ChannelSerial},
		}, accel: AccelTCG},
	}
}

func TestArgsGolden(t *testing.T) {
	for name, c := range goldenConfigs() {
		t.Run(name, func(t *testing.T) {
			a, err := Args(&c.cfg, c.accel, c.tsc, c.cid)
			if err != nil {
				t.Fatal(err)
			}
			vmtest.Golden(t, filepath.Join("testdata", name+".golden"), []byte(strings.Join(a, "\n")+"\n"), *update)
		})
	}
}

func TestArgsRefuses(t *testing.T) {
	tap := os.NewFile(0, "tap")
	base := func() vm.Config {
		return vm.Config{ID: "x", Dir: "/run/x", Kernel: "/k", Initrd: "/i", VCPUs: 1, MemoryMiB: 64,
			Agent: vm.AgentChannel{Kind: vm.ChannelSerial}}
	}
	for _, c := range []struct {
		name  string
		edit  func(*vm.Config)
		accel string
		class func(error) bool
	}{
		{"no id", func(c *vm.Config) { c.ID = "" }, AccelTCG, errdefs.IsInvalidArgument},
		{"relative dir", func(c *vm.Config) { c.Dir = "run/x" }, AccelTCG, errdefs.IsInvalidArgument},
		{"long dir", func(c *vm.Config) { c.Dir = "/" + strings.Repeat("d", 100) }, AccelTCG, errdefs.IsInvalidArgument},
		{"no kernel", func(c *vm.Config) { c.Kernel = "" }, AccelTCG, errdefs.IsInvalidArgument},
		{"no memory", func(c *vm.Config) { c.MemoryMiB = 0 }, AccelTCG, errdefs.IsInvalidArgument},
		{"relative share", func(c *vm.Config) { c.Share = "s" }, AccelTCG, errdefs.IsInvalidArgument},
		{"long tag", func(c *vm.Config) { c.Share, c.ShareTag = "/s", strings.Repeat("t", 37) }, AccelTCG, errdefs.IsInvalidArgument},
		{"hybrid vsock", func(c *vm.Config) { c.Agent.Kind = vm.ChannelHybridVsock }, AccelTCG, errdefs.IsNotImplemented},
		{"no channel", func(c *vm.Config) { c.Agent.Kind = "" }, AccelTCG, errdefs.IsInvalidArgument},
		{"vsock without cid", func(c *vm.Config) { c.Agent.Kind = vm.ChannelVsock }, AccelTCG, errdefs.IsInvalidArgument},
		{"nic without tap", func(c *vm.Config) { c.NICs = []vm.NIC{{MAC: "02:00:00:00:00:01"}} }, AccelTCG, errdefs.IsInvalidArgument},
		{"bad mac", func(c *vm.Config) { c.NICs = []vm.NIC{{Tap: tap, MAC: "02:00:00,mtu=1"}} }, AccelTCG, errdefs.IsInvalidArgument},
		{"auto accel", func(*vm.Config) {}, AccelAuto, errdefs.IsInvalidArgument},
		{"negative tcg buffer", func(c *vm.Config) { c.TCGBufferMiB = -1 }, AccelTCG, errdefs.IsInvalidArgument},
	} {
		cfg := base()
		c.edit(&cfg)
		if _, err := Args(&cfg, c.accel, 0, 0); !c.class(err) {
			t.Errorf("%s: got %v", c.name, err)
		}
	}
}
